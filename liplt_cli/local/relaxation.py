r"""Linear relaxations of the activations on their intervals, and back-substitution to the input.

**Relaxation around the centre.**  For a neuron with pre-activation interval :math:`[l, u]` on
the ball and value :math:`y_x` at the centre x, a relaxation is two slopes and two offsets with

.. math:: s_L\,(y - y_x) + o_L \;\le\; \varphi(y) - \varphi(y_x) \;\le\; s_U\,(y - y_x) + o_U
          \qquad \forall y \in [l, u].

* ReLU / LeakyReLU (slopes :math:`\kappa_1` left of 0, :math:`\kappa_2` right): on a stable
  interval φ is linear (:math:`s = \kappa`, both offsets :math:`\kappa y_x - \varphi(y_x)`, zero
  for a centre on the same side).  On :math:`l < 0 < u` the convex case
  (:math:`\kappa_1 \le \kappa_2`) takes the chord :math:`\varphi(l) + k(y - l)`,
  :math:`k = (\kappa_2 u - \kappa_1 l)/(u - l)`, as the upper line (φ is below its chords) and the
  tangent :math:`t\,y` with :math:`t = \kappa_2` if :math:`u \ge -l` else :math:`\kappa_1` (the
  choice of CROWN, Zhang et al. 2018) as the lower line (φ is above its tangents); the concave
  case swaps them.
* Any other activation: the chord slope s clamped into the proven slope range
  :math:`[\alpha_i, \beta_i]` of φ over :math:`[l, u]`; with :math:`a = \mathrm{clip}(y_x, l, u)`,
  :math:`\varphi(y) - \varphi(a) - s(y - a) = \psi(y) - \psi(a)` for :math:`\psi = \varphi - s\,y`,
  whose derivative lies in :math:`[\alpha_i - s, \beta_i - s]`, so by the mean value theorem it
  lies in :math:`[\alpha_i - s, \beta_i - s]\cdot[l - a, u - a]` (interval product); both lines
  have slope s.

**Back-substitution** (:func:`relaxed_lower_bounds`).  For a row :math:`\lambda` at node k,
:math:`\lambda^\top(y_k(x') - y_k(x))` is pulled back through the graph: linear nodes by their
adjoint (offsets cancel in the difference), sums and concatenations by their structure; at an
activation with cotangent v the lower line is used where :math:`v_i \ge 0` and the upper line
where :math:`v_i < 0`, which gives :math:`v^\top \Delta\varphi \ge (v \odot s)^\top \Delta y +
\sum_i v_i o_i` and the pull-back continues with :math:`v \odot s`; a Lipschitz block passes
nothing and contributes :math:`\min(v^\top(\underline z - z_x), v^\top(\overline z - z_x))`
entrywise from its output box; at the input the ball's :meth:`~liplt_cli.local.ball.Ball.min_linear`
closes the bound.  The result is a lower bound of :math:`\lambda^\top(y_k(x') - y_k(x))` over
the ball, for every row at once (CROWN's bound, written around x so that no bias is needed).

Round-off: every row also accumulates the magnitudes it combined (:math:`\sum |v_i|(|o_i| +
|s_i|(|l_i| + |u_i|))` and the input term); the bound is lowered by
:data:`~liplt_cli.lipschitz.norms.SAFETY` times that mass, the engine's relative margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, LinearNode, Node, SumNode
from liplt_cli.graph.slopes import Activation
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.norms import SAFETY
from liplt_cli.local.ball import Ball


@dataclass(frozen=True, eq=False)
class Relaxation:
    """Per-neuron lines of one activation node for a batch of samples (tensors ``(S, *shape)``)."""

    lower_slope: torch.Tensor
    lower_offset: torch.Tensor
    upper_slope: torch.Tensor
    upper_offset: torch.Tensor
    scale: torch.Tensor  # magnitude of the numbers combined per neuron (for the round-off margin)


def _two_piece(activation: Activation) -> tuple[float, float] | None:
    if activation.key == "relu":
        return 0.0, 1.0
    if activation.key == "leaky_relu":
        return float(dict(activation.params).get("negative_slope", 0.01)), 1.0
    return None


def relax(
    activation: Activation, lo: torch.Tensor, hi: torch.Tensor, y_x: torch.Tensor, phi_x: torch.Tensor,
    slopes: tuple[torch.Tensor, torch.Tensor],
) -> Relaxation:
    """The relaxation of every neuron (module docstring) from its interval ``[lo, hi]``, its
    centre value ``y_x`` and ``phi_x = φ(y_x)``, and its proven slope range ``slopes``."""
    pieces = _two_piece(activation)
    scale = lo.abs() + hi.abs() + y_x.abs() + phi_x.abs()
    if pieces is not None:
        return _relax_two_piece(pieces, lo, hi, y_x, phi_x, scale)
    a, b = slopes
    width = hi - lo
    f_lo, f_hi = activation(lo), activation(hi)
    chord = torch.where(width > 0, (f_hi - f_lo) / width.clamp_min(1e-300), 0.5 * (a + b))
    s = torch.minimum(torch.maximum(chord, a), b)
    anchor = torch.minimum(torch.maximum(y_x, lo), hi)
    d_lo, d_hi = lo - anchor, hi - anchor  # d_lo ≤ 0 ≤ d_hi
    g_lo, g_hi = a - s, b - s  # g_lo ≤ 0 ≤ g_hi
    products = torch.stack([g_lo * d_lo, g_lo * d_hi, g_hi * d_lo, g_hi * d_hi])
    base = activation(anchor) - phi_x - s * (anchor - y_x)
    return Relaxation(s, base + products.min(0).values, s, base + products.max(0).values,
                      scale + (a.abs() + b.abs()) * scale)


def _relax_two_piece(pieces: tuple[float, float], lo: torch.Tensor, hi: torch.Tensor, y_x: torch.Tensor,
                     phi_x: torch.Tensor, scale: torch.Tensor) -> Relaxation:
    k1, k2 = pieces
    left = torch.full_like(lo, k1)
    right = torch.full_like(lo, k2)
    width = (hi - lo).clamp_min(1e-300)
    chord = (k2 * hi - k1 * lo) / width
    tangent = torch.where(hi >= -lo, right, left)
    chord_offset = k1 * lo + chord * (y_x - lo) - phi_x  # chord line at y_x minus φ(y_x)
    tangent_offset = tangent * y_x - phi_x
    crossing = (lo < 0) & (hi > 0)
    stable = torch.where(lo >= 0, right, left)
    stable_offset = stable * y_x - phi_x
    if k1 <= k2:  # convex: chord above, tangent below
        ls, lo_off, us, up_off = tangent, tangent_offset, chord, chord_offset
    else:  # concave
        ls, lo_off, us, up_off = chord, chord_offset, tangent, tangent_offset
    return Relaxation(
        torch.where(crossing, ls, stable), torch.where(crossing, lo_off, stable_offset),
        torch.where(crossing, us, stable), torch.where(crossing, up_off, stable_offset),
        scale * (1 + abs(k1) + abs(k2)),
    )


class _Backsubstitution(GraphWalk):
    """Reverse walk carrying rows (cotangents) ``(R, *shape)`` from a target node to the input."""

    reverse = True
    action = "back-substituting through"

    def __init__(self, graph: LayerGraph, samples: torch.Tensor, relaxations: dict[str, Relaxation],
                 block_boxes: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], ball: Ball) -> None:
        super().__init__(graph)
        self.samples = samples
        self.relaxations = relaxations
        self.block_boxes = block_boxes
        self.ball = ball
        rows = samples.shape[0]
        self.goal: torch.Tensor | None = None
        self.offset = torch.zeros(rows, dtype=ball.centre.dtype, device=ball.centre.device)
        self.mass = torch.zeros_like(self.offset)

    def _sum_rows(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1).sum(dim=1)

    def input(self, node: Node, v: torch.Tensor) -> tuple[()]:
        needed = None if self.goal is None else self.goal - self.offset
        bound = self.ball.min_linear(v, self.samples, needed)
        self.offset = self.offset + bound
        self.mass = self.mass + bound.abs()
        return ()

    def linear(self, node: LinearNode, v: torch.Tensor) -> tuple[torch.Tensor]:
        return (node.op.adjoint(v),)

    def sum(self, node: SumNode, v: torch.Tensor) -> list[torch.Tensor]:
        return [v if node.coefficient(i) == 1 else node.coefficient(i) * v for i in range(len(node.inputs))]

    def concat(self, node: ConcatNode, v: torch.Tensor) -> list[torch.Tensor]:
        sizes = [self.graph.node(i).out_shape[node.dim] for i in node.inputs]
        return list(torch.split(v, sizes, dim=node.dim + 1))

    def activation(self, node: ActivationNode, v: torch.Tensor) -> tuple[torch.Tensor]:
        r = self.relaxations[node.name]
        s = self.samples
        positive = v >= 0
        slope = torch.where(positive, r.lower_slope[s], r.upper_slope[s])
        offset = torch.where(positive, r.lower_offset[s], r.upper_offset[s])
        self.offset = self.offset + self._sum_rows(v * offset)
        self.mass = self.mass + self._sum_rows(v.abs() * r.scale[s])
        return (v * slope,)

    def block(self, node: BlockNode, v: torch.Tensor) -> tuple[None]:
        lo, hi, at_x = self.block_boxes[node.name]
        s = self.samples
        d_lo, d_hi = lo[s] - at_x[s], hi[s] - at_x[s]
        self.offset = self.offset + self._sum_rows(torch.minimum(v * d_lo, v * d_hi))
        self.mass = self.mass + self._sum_rows(v.abs() * (lo[s].abs() + hi[s].abs() + at_x[s].abs()))
        return (None,)


def relaxed_lower_bounds(
    graph: LayerGraph, target: str, rows: torch.Tensor, samples: torch.Tensor, relaxations: dict[str, Relaxation],
    block_boxes: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], ball: Ball,
    goal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lower bounds of :math:`\\lambda^\\top (y_k(x') - y_k(x_s))` over the ball of each row's sample.

    ``rows`` ``(R, *shape of target)``: the :math:`\\lambda`; ``samples`` ``(R,)``: their samples.
    Every activation and block between the input and ``target`` must have its relaxation /
    output box (``block_boxes[name] = (lo, hi, value at x)``).  Includes the round-off margin.
    ``goal`` ``(R,)`` (optional): the value each bound must exceed to decide something for the
    caller; the input step then spends its costly bound only on rows it could decide
    (:meth:`~liplt_cli.local.ball.Ball.min_linear`).  The result is a lower bound either way.
    """
    walk = _Backsubstitution(graph, samples, relaxations, block_boxes, ball)
    walk.goal = goal
    walk.env[target] = rows
    walk.run(start=graph.position(target))
    return walk.offset - SAFETY * walk.mass
