r"""The loop transformation's data: the linear networks (modes) and the slopes of nonlinear nodes.

Loop transformation (eq. 12) rewrites a nonlinear node j as :math:`\varphi_j(y) = C_j y +
\psi_j(y)`, :math:`\psi_j` being :math:`R_j`-Lipschitz.  The engine works on *linear* networks
obtained from the graph by giving each nonlinear node a linear part, one per :class:`Mode`:

* ``LT``: activation j acts as :math:`C_j` (loop-transformed network, Lemma 1), a Lipschitz block
  passes nothing;
* ``CUT``: every nonlinear node passes nothing (the segments of the naive bound, eq. 11);
* ``ABS_LT`` / ``ABS_CUT``: the same with every operator replaced by its entrywise absolute
  value (:math:`|A|\mathbf 1` bounds the ℓ∞/ℓ1 norms).

:class:`LoopTransform` is the **one place** where slope data reach the engine: the graph walks
ask it for the multiplier of a nonlinear node in a mode, the recursions for node-level
constants.  See its docstring for the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Mapping, Union

import torch

from liplt_cli.graph.walk import NodeRecords

if TYPE_CHECKING:  # pragma: no cover
    from liplt_cli.graph.graph import LayerGraph
    from liplt_cli.graph.nodes import ActivationNode, BlockNode, Node


class Mode(Enum):
    """A linear network derived from the graph (see the module docstring); ``value`` names it."""

    LT = "lt"
    CUT = "cut"
    ABS_LT = "abs_lt"
    ABS_CUT = "abs_cut"

    @property
    def absolute(self) -> bool:
        """Every operator is replaced by its entrywise absolute value."""
        return self in (Mode.ABS_LT, Mode.ABS_CUT)

    @property
    def cuts_activations(self) -> bool:
        """Activations pass nothing (the naive bound's segments)."""
        return self in (Mode.CUT, Mode.ABS_CUT)

    def to_absolute(self) -> "Mode":
        return {Mode.LT: Mode.ABS_LT, Mode.CUT: Mode.ABS_CUT}.get(self, self)


Multiplier = Union[float, torch.Tensor]


@dataclass(frozen=True)
class LoopTransform:
    r"""Slopes of the nonlinear nodes of one graph, and what the engine derives from them.

    Data, per nonlinear node j (a name of the graph):

    * ``centre[j]`` -- :math:`c_j = (\alpha_j+\beta_j)/2`, the linear part :math:`C_j` in ``LT``;
    * ``radius[j]`` -- :math:`r_j = (\beta_j-\alpha_j)/2`, the Lipschitz constant of :math:`\psi_j`;
    * ``lipschitz[j]`` -- :math:`\max(|\alpha_j|, |\beta_j|)`, the constant of :math:`\varphi_j`.

    A Lipschitz block (MaxPool) has no entry in ``centre`` (it passes nothing in any mode) and
    :math:`r_j = \mathrm{Lip}_j` = its ℓp constant.

    Contract (what the walks and recursions may rely on)
    ----------------------------------------------------
    ``multiplier(j, mode)`` → ``None`` or ``m``
        ``None``: node j passes nothing in ``mode`` (cut modes, blocks, and -- when
        ``prune_zero`` -- a node whose centres are all zero, so no zero maps are propagated).
        Otherwise the *diagonal* linear part of j in ``mode``: :math:`c_j` in ``LT``,
        :math:`|c_j|` in ``ABS_LT``.  Being diagonal, it is the same in the forward and the
        adjoint direction.  Today ``m`` is a Python float (one slope range per node).  It may
        be a tensor broadcastable against ``out_shape`` (one centre per neuron) or of shape
        ``(S, *out_shape)`` (per neuron and per sample); see :meth:`apply`.
    ``apply(j, mode, value, samples=None)`` → ``None`` or a tensor like ``value``
        ``value`` is a batch ``(rows, *out_shape)``; the result is the multiplier times the
        batch, in the same dtype.  ``samples`` (a LongTensor of length ``rows``) says which
        sample each row belongs to; it is used only when the multiplier has a sample axis.
        For a float multiplier the result is exactly ``m * value`` (the bits the engine pins).
    ``radius_bound(j)``, ``centre_bound(j)``, ``lipschitz_bound(j)`` → float
        Node-level numbers for the recursions: :math:`r_j`, :math:`|c_j|` and
        :math:`\mathrm{Lip}_j` today; with per-neuron (and per-sample) slopes, upper bounds
        over the node's neurons and samples (the largest radius, the largest :math:`|c|`, the
        largest Lipschitz constant), which keeps every recursion sound.  Recursions per sample
        would read one such number per sample instead.  Per-neuron radii that differ inside a
        node are then to enter the maps themselves (:math:`\|A_{k,j} R_j\|` with
        :math:`R_j / r_j` applied where vectors are injected at j), not these scalars.

    Nothing else in the engine reads slopes: the structure analysis decides which nodes pass
    in ``LT`` from ``multiplier`` alone.
    """

    centre: Mapping[str, Multiplier]
    radius: Mapping[str, Multiplier]
    lipschitz: Mapping[str, Multiplier]
    prune_zero: bool = True

    @staticmethod
    def of(graph: "LayerGraph", p: float, prune_zero: bool = True) -> "LoopTransform":
        """One slope range per node, from each activation's (α, β) and each block's ℓp constant."""
        walk = _NodeSlopes(graph, p).run()
        return LoopTransform(walk.centre, walk.radius, walk.lipschitz, prune_zero)

    # ------------------------------------------------------------------ for the walks
    def multiplier(self, node: str, mode: Mode) -> Multiplier | None:
        if mode.cuts_activations or node not in self.centre:
            return None
        c = self.centre[node]
        if self.prune_zero and _all_zero(c):
            return None
        return abs(c) if mode.absolute else c

    def apply(
        self, node: str, mode: Mode, value: torch.Tensor, samples: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        m = self.multiplier(node, mode)
        if m is None:
            return None
        if isinstance(m, torch.Tensor):
            m = m.to(dtype=value.dtype, device=value.device)
            if m.dim() == value.dim():  # a sample axis: pick each row's sample
                if samples is None:
                    raise ValueError(f"node '{node}' has per-sample slopes; the rows' sample index is needed")
                m = m[samples]
        return m * value

    # ------------------------------------------------------------------ for the recursions
    def radius_bound(self, node: str) -> float:
        return _largest(self.radius[node])

    def centre_bound(self, node: str) -> float:
        return _largest(abs(self.centre[node])) if node in self.centre else 0.0

    def lipschitz_bound(self, node: str) -> float:
        return _largest(self.lipschitz[node])


def _all_zero(m: Multiplier) -> bool:
    return bool((m == 0).all()) if isinstance(m, torch.Tensor) else m == 0.0


def _largest(m: Multiplier) -> float:
    return float(m.max()) if isinstance(m, torch.Tensor) else m


class _NodeSlopes(NodeRecords):
    """Reads (c_j, r_j, Lip_j) off every nonlinear node (see :meth:`LoopTransform.of`)."""

    def __init__(self, graph: "LayerGraph", p: float) -> None:
        super().__init__(graph)
        self.p = p
        self.centre: dict[str, float] = {}
        self.radius: dict[str, float] = {}
        self.lipschitz: dict[str, float] = {}

    def input(self, node: Node, *_: object) -> None:
        return None

    linear = sum = concat = input

    def activation(self, node: ActivationNode, *_: object) -> None:
        a = node.activation
        self.centre[node.name], self.radius[node.name], self.lipschitz[node.name] = a.center, a.radius, a.lipschitz

    def block(self, node: BlockNode, *_: object) -> None:
        self.lipschitz[node.name] = self.radius[node.name] = node.block.lipschitz(self.p)
