r"""Sound per-neuron intervals on the ball, layer by layer, and the local recursion that uses them.

One forward walk over the graph (:class:`~liplt_cli.graph.walk.GraphWalk`) carries, for a batch
of samples, a box ``(lo, hi)`` per node that contains every value the node takes on the region
:math:`\mathcal B_s` (:mod:`liplt_cli.local.ball`):

1. **interval propagation** (:mod:`liplt_cli.local.ibp`) from the box of the region: linear
   nodes, sums, concatenations, activations and blocks by their sound images;
2. at every activation node j, the box of its pre-activation :math:`y = y_{\mathrm{pre}(j)}` is
   then **tightened** on the neurons whose slope range is not yet a single point
   (*candidates*; for ReLU the neurons whose interval contains 0):

   a. *linear relaxations back-substituted to the input* (:mod:`liplt_cli.local.relaxation`):
      :math:`y_i(x') - y_i(x) \ge \mathrm{lb}(e_i)` and :math:`\le -\mathrm{lb}(-e_i)` through the
      relaxations of every earlier activation, concretised over the region;
   b. *Lipschitz intervals* :math:`y_i(x) \pm \varepsilon\lambda_i`, with :math:`\lambda_i` the
      per-neuron local constant of the recursion (:mod:`liplt_cli.local.engine`), pulled back
      through the loop-transformed network with the local slopes of the earlier layers;

   each is a sound enclosure, so their intersection with the propagated box is too;
3. the slope range of the activation on the final box (:func:`~liplt_cli.graph.slopes.slope_range`,
   proven for smooth activations), its relaxation (for later layers), its :math:`m_j` (the local
   recursion, from the rows of step 2b), and the activation's image (step 1 continues).

Intervals are computed in topological order, so every earlier node is final when a later one is
tightened.  Lipschitz blocks (MaxPool) keep their propagated boxes and enter the relaxations by
their output box and the recursion with :math:`c = 0`, :math:`r = \mathrm{Lip}_p`.

Costs: the rows of step 2 are those of candidate / unstable neurons only, so a layer's cost grows
with its unstable neurons, not its width; rows are processed in groups of whole samples of at
most ``options.chunk`` values per pulled-back map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from liplt_cli.graph.evaluate import Evaluation
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, InputNode, LinearNode, Node, SumNode
from liplt_cli.graph.slopes import slope_range
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.norms import SAFETY
from liplt_cli.local.ball import Ball
from liplt_cli.local.engine import LocalConstants, LocalLipLT, one_hot_rows
from liplt_cli.local.ibp import activation_image, block_image, linear_image, sum_image
from liplt_cli.local.relaxation import Relaxation, relax, relaxed_lower_bounds

Box = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LocalOptions:
    """Settings of the local analysis.

    ``relaxations``: tighten intervals (and bound margins) by linear relaxations back-substituted
    to the input (default on); ``lipschitz``: run the local LipLT recursion -- Lipschitz intervals
    and local constants of the margins (default on; without it only the relaxations prove
    anything); ``budget``: largest per-sample cost (≈ flops,
    ``min(U,d)²·max(U,d)``) of an exact ℓ2 norm of a local map, beyond which a sound upper bound
    is used; ``chunk``: values per group of pulled-back rows (memory); ``focused_dual``: compute
    the ℓ2-ball ∩ box dual bound (:mod:`liplt_cli.local.ball`) only for rows whose sign it could
    still decide (faster, but the intervals of neurons left unstable are wider: on the MNIST MLP
    of the benchmark it halves the time at ε = 0.3 and certifies fewer points; off by default).
    """

    relaxations: bool = True
    lipschitz: bool = True
    budget: float = 2e8
    chunk: int = 1 << 23
    focused_dual: bool = False


class _Values(Evaluation):
    """The model at the centres, keeping every node's value."""

    def __init__(self, graph: LayerGraph, x: torch.Tensor) -> None:
        super().__init__(graph, x)
        self.values: dict[str, torch.Tensor] = {}

    def emit(self, pos: int, node: Node, value: torch.Tensor) -> torch.Tensor:
        self.values[node.name] = value
        return value


@dataclass
class BallAnalysis:
    """Everything the local analysis proved about one batch of balls (mutable while it runs).

    ``values``: node values at the centres; ``boxes``: final boxes of the pre-activations (by
    activation / block node name); ``slopes``: per-neuron slope ranges of every activation;
    ``relaxations``, ``block_boxes``: what back-substitution needs; ``lt``: the local recursion,
    with :math:`m_j` for every nonlinear node; ``unstable``: unstable neurons per sample and node.
    """

    graph: LayerGraph
    ball: Ball
    values: dict[str, torch.Tensor]
    lt: LocalLipLT
    boxes: dict[str, Box] = field(default_factory=dict)
    slopes: dict[str, Box] = field(default_factory=dict)
    relaxations: dict[str, Relaxation] = field(default_factory=dict)
    block_boxes: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def logits(self) -> torch.Tensor:
        return self.values[self.graph.output].reshape(self.ball.samples, -1)

    def unstable_counts(self) -> dict[str, torch.Tensor]:
        """Unstable neurons per activation node and sample."""
        return {j: u.reshape(u.shape[0], -1).sum(dim=1) for j, u in self.lt.unstable.items()
                if self.graph.node(j).kind == "activation"}

    def output_constants(self) -> LocalConstants:
        return self.lt.output_constants()

    def relaxed_lower_bounds(self, target: str, rows: torch.Tensor, samples: torch.Tensor,
                             goal: torch.Tensor | None = None) -> torch.Tensor:
        """Lower bounds of :math:`\\lambda^\\top (y_t(x') - y_t(x))` on the region, one per row
        (``goal``: see :func:`~liplt_cli.local.relaxation.relaxed_lower_bounds`)."""
        return relaxed_lower_bounds(self.graph, target, rows, samples, self.relaxations, self.block_boxes, self.ball,
                                    goal)


def _groups(samples: torch.Tensor, count: int, max_rows: int) -> Iterator[slice]:
    """Contiguous slices of rows (sorted by sample) holding whole samples, ≤ ``max_rows`` when possible."""
    sizes = torch.bincount(samples, minlength=count).tolist()
    start = stop = 0
    for size in sizes:
        if stop > start and stop - start + size > max_rows:
            yield slice(start, stop)
            start = stop
        stop += size
    if stop > start:
        yield slice(start, stop)


class _BallWalk(GraphWalk):
    """The forward walk of the module docstring; its result is a :class:`BallAnalysis`."""

    action = "bounding on the ball"

    def __init__(self, analysis: BallAnalysis, options: LocalOptions, progress: Callable[[str], None] | None) -> None:
        super().__init__(analysis.graph)
        self.a = analysis
        self.options = options
        self.progress = progress

    # -------------------------------------------------------------- interval propagation
    def input(self, node: InputNode) -> Box:
        return self.a.ball.box()

    def linear(self, node: LinearNode, x: Box) -> Box:
        return linear_image(node.op, *x)

    def sum(self, node: SumNode, *xs: Box) -> Box:
        return sum_image([node.coefficient(i) for i in range(len(xs))], list(xs))

    def concat(self, node: ConcatNode, *xs: Box) -> Box:
        return torch.cat([x[0] for x in xs], dim=node.dim + 1), torch.cat([x[1] for x in xs], dim=node.dim + 1)

    def block(self, node: BlockNode, x: Box) -> Box:
        a = self.a
        a.boxes[node.name] = x
        if self.options.lipschitz:
            self._inner(node.name, torch.ones_like(x[0], dtype=torch.bool))
        a.lt.set_block(node.name)
        lo, hi = block_image(node.block, *x)
        a.block_boxes[node.name] = (lo, hi, a.values[node.name])
        return lo, hi

    def activation(self, node: ActivationNode, x: Box) -> Box:
        a, act = self.a, node.activation
        pre = node.inputs[0]
        y_x = a.values[pre]
        lo, hi = x
        alpha, beta = slope_range(act, lo, hi)
        if self.options.relaxations:
            lo, hi = self._relaxation_box(pre, y_x, lo, hi, beta > alpha)
            alpha, beta = slope_range(act, lo, hi)
        unstable = beta > alpha
        reads_and_samples = self._inner(node.name, unstable) if self.options.lipschitz else None
        if reads_and_samples is not None:
            lo, hi = self._lipschitz_box(y_x, lo, hi, *reads_and_samples)
            alpha, beta = slope_range(act, lo, hi)
        a.boxes[node.name] = (lo, hi)
        a.slopes[node.name] = (alpha, beta)
        a.lt.set_slopes(node.name, alpha, beta)
        a.relaxations[node.name] = relax(act, lo, hi, y_x, a.values[node.name], (alpha, beta))
        if self.progress:
            self.progress(node.name)
        return activation_image(act, lo, hi, (alpha, beta))

    # -------------------------------------------------------------- tightening
    def _max_rows(self, width: int) -> int:
        return max(1, self.options.chunk // max(1, width))

    def _relaxation_box(self, pre: str, y_x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                        candidates: torch.Tensor) -> Box:
        """Intersect the box with the back-substituted linear relaxations on the candidate neurons."""
        a = self.a
        rows, samples = one_hot_rows(candidates)
        if rows.shape[0] == 0:
            return lo, hi
        width = math.prod(a.graph.input_shape) + sum(math.prod(a.graph.node(n).out_shape) for n in a.relaxations)
        s_all, n_all = candidates.reshape(candidates.shape[0], -1).nonzero(as_tuple=True)
        centre_all = y_x.reshape(y_x.shape[0], -1)[s_all, n_all]
        lower = torch.empty(rows.shape[0], dtype=lo.dtype, device=lo.device)
        upper = torch.empty_like(lower)
        for part in _groups(samples, a.ball.samples, self._max_rows(2 * width)):
            r, s = rows[part], samples[part]
            goal = None
            if self.options.focused_dual:  # the sign of y_i is what decides: y_x + lower > 0, y_x + upper < 0
                c = centre_all[part]
                goal = torch.cat([-c, c])
            both = a.relaxed_lower_bounds(pre, torch.cat([r, -r]), torch.cat([s, s]), goal)
            lower[part], upper[part] = both[: r.shape[0]], -both[r.shape[0]:]
        flat_lo, flat_hi = lo.reshape(lo.shape[0], -1).clone(), hi.reshape(hi.shape[0], -1).clone()
        flat_y = y_x.reshape(y_x.shape[0], -1)
        s_idx, n_idx = candidates.reshape(candidates.shape[0], -1).nonzero(as_tuple=True)
        centre = flat_y[s_idx, n_idx]
        flat_lo[s_idx, n_idx] = torch.maximum(flat_lo[s_idx, n_idx], centre + lower)
        flat_hi[s_idx, n_idx] = torch.minimum(flat_hi[s_idx, n_idx], centre + upper)
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)

    def _inner(self, node: str, unstable: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor] | None:
        """Pull the unstable rows of ``pre(node)`` back through the local LT network; set :math:`m_j`.

        Returns the per-row constants λ with the rows' samples and neuron indices (for the
        Lipschitz intervals), or ``None`` when no neuron is unstable.
        """
        a = self.a
        lt = a.lt
        pre = lt.pre(node)
        rows, samples = one_hot_rows(unstable)
        if rows.shape[0] == 0:
            lt.m[node] = torch.zeros(a.ball.samples, dtype=torch.float64, device=a.ball.centre.device)
            return None
        width = sum(math.prod(a.graph.node(s).out_shape) for s in lt.sources(pre))
        lam = torch.empty(rows.shape[0], dtype=torch.float64, device=rows.device)
        m = None
        for part in _groups(samples, a.ball.samples, self._max_rows(width)):
            reads = lt.pull_back(pre, rows[part], samples[part])
            lam[part] = lt.row_constants(reads, samples[part])
            value = lt.inner(node, reads, samples[part])
            m = value if m is None else m + value
        lt.m[node] = m
        _, index = unstable.reshape(unstable.shape[0], -1).nonzero(as_tuple=True)
        return lam, samples, index

    def _lipschitz_box(self, y_x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, lam: torch.Tensor,
                       samples: torch.Tensor, index: torch.Tensor) -> Box:
        """Intersect the box with :math:`y_i(x) \\pm \\varepsilon \\lambda_i` (widened by the safety margin)."""
        eps = self.a.ball.radius[samples]
        flat_y = y_x.reshape(y_x.shape[0], -1)[samples, index]
        half = eps * lam * (1 + SAFETY) + SAFETY * flat_y.abs()
        flat_lo, flat_hi = lo.reshape(lo.shape[0], -1).clone(), hi.reshape(hi.shape[0], -1).clone()
        flat_lo[samples, index] = torch.maximum(flat_lo[samples, index], flat_y - half)
        flat_hi[samples, index] = torch.minimum(flat_hi[samples, index], flat_y + half)
        return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)


def analyse_ball(graph: LayerGraph, ball: Ball, options: LocalOptions = LocalOptions(),
                 progress: Callable[[str], None] | None = None) -> BallAnalysis:
    """Sound boxes of every pre-activation on each sample's region, slopes, relaxations and the
    local recursion's :math:`m_j` (see the module docstring).  ``graph`` must be float64."""
    with torch.no_grad():
        values = _Values(graph, ball.centre).run().values
        analysis = BallAnalysis(graph, ball, values, LocalLipLT(graph, ball.p, ball.samples, options.budget))
        _BallWalk(analysis, options, progress).run()
    return analysis
