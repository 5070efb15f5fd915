r"""Sound upper bounds on inner terms from the graph's structure (no explicit map needed).

* :func:`segment_bound`: :math:`\|B_{k,s}\|` from per-operator norms along the cut network;
* :func:`abs_propagation_terms`: for ℓ∞ / ℓ1, :math:`\max |A|\mathbf 1` / :math:`\max |A|^\top\mathbf 1`;
* :func:`p_bounds`: :math:`P_{k,s}`, the triangle-inequality bound of :math:`A_{k,s}` through
  the B terms, which reproduces the naive bound when :math:`|c_j| + r_j = \mathrm{Lip}_j`
  (the reason sound LipLT ≤ sound naive, Proposition 3).
"""

from __future__ import annotations

import math

import torch

from liplt_cli.graph.nodes import ConcatNode, LinearNode, Node, SumNode
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.norms import single_op_norm
from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import CUT, LT, Structure
from liplt_cli.lipschitz.terms import Term, Terms
from liplt_cli.lipschitz.transform import Mode

OpNorms = dict[str, tuple[torch.Tensor, Guarantee]]
# a bound on the map from the segment's start to a node, and the number of non-isometric
# operators on the way (None once the label cannot stay exact)
Segment = tuple[torch.Tensor, "int | None"]


class _SegmentWalk(GraphWalk):
    """Per-node bounds along the cut network from one source (nonlinear nodes pass nothing)."""

    action = "bounding a segment at"

    def __init__(self, structure: Structure, op_norms: OpNorms) -> None:
        super().__init__(structure.graph)
        self.p = structure.p
        self.op_norms = op_norms

    def input(self, node: Node) -> None:
        return None

    def activation(self, node: Node, x: Segment | None) -> None:
        return None

    block = activation

    def linear(self, node: LinearNode, x: Segment | None) -> Segment | None:
        if x is None:
            return None
        if node.name not in self.op_norms:
            self.op_norms[node.name] = single_op_norm(node.op, self.p)
        norm, label = self.op_norms[node.name]
        before = x[1]
        if node.op.kind in ("reshape", "permute"):
            count = before
        elif before is None or label is not Guarantee.EXACT:
            count = None
        else:
            count = before + 1
        return norm * x[0], count

    def sum(self, node: SumNode, *xs: Segment | None) -> Segment | None:
        if all(x is None for x in xs):
            return None
        return sum(abs(node.coefficient(i)) * x[0] for i, x in enumerate(xs) if x is not None), None

    def concat(self, node: ConcatNode, *xs: Segment | None) -> Segment | None:
        present = [x[0] for x in xs if x is not None]
        if not present:
            return None
        vals = torch.stack(present)
        if self.p == 2:
            return torch.sqrt((vals**2).sum()), None
        if math.isinf(self.p):
            return vals.max(), None
        return vals.sum(), None


def segment_bound(structure: Structure, k: str, s: str, op_norms: OpNorms) -> tuple[torch.Tensor, Guarantee]:
    """Upper bound on ‖B_{k,s}‖ from per-operator norms along the cut network from s to k.

    Linear nodes multiply by their operator norm, sums add ``|c_i|``-weighted bounds, concats
    combine them as the ℓp norm requires.  Exact when the path holds a single operator whose norm
    is exact (reshapes and permutations are isometries and do not count).  ``op_norms`` caches
    the per-operator norms across calls.
    """
    graph = structure.graph
    walk = _SegmentWalk(structure, op_norms)
    walk.env[s] = (torch.ones((), dtype=torch.float64, device=graph.device), 0)
    walk.run(start=graph.position(s) + 1, stop=graph.position(k) + 1)
    if k not in walk.env:
        return torch.zeros((), dtype=torch.float64, device=graph.device), Guarantee.EXACT
    bound, count = walk.env[k]
    return bound, Guarantee.EXACT if count is not None and count <= 1 else Guarantee.UPPER_BOUND


def abs_propagation_terms(structure: Structure, mode: Mode, pairs: list[tuple[str, str]], terms: Terms) -> None:
    """ℓ∞: max of |A|·1; ℓ1: max of |A|ᵀ·1 -- sound upper bounds (exact for one operator)."""
    graph = structure.graph
    dtype, device = graph.dtype, graph.device
    absolute = mode.to_absolute()
    out: dict[tuple[str, str], torch.Tensor] = {}

    def ones_at(name: str) -> torch.Tensor:
        return torch.ones((1, *graph.node(name).out_shape), dtype=dtype, device=device)

    if math.isinf(structure.p):  # rows of |A|: push ones forward from the source, read at the target
        forward_pass(structure, absolute, [((k, s), s, ones_at(s)) for k, s in pairs],
                     {(k, s): {k} for k, s in pairs}, lambda t, n, x: out.__setitem__(t, x.max()))
    else:  # columns of |A|: pull ones back from the target, read at the source
        adjoint_pass(structure, absolute, [((k, s), k, ones_at(k)) for k, s in pairs],
                     {(k, s): {s} for k, s in pairs}, lambda t, n, x: out.__setitem__(t, x.max()))
    for k, s in pairs:
        value = out.get((k, s), torch.zeros((), dtype=dtype, device=device))
        terms.offer(mode, k, s, value, Guarantee.UPPER_BOUND)


def p_bounds(structure: Structure, terms: Terms, inner_targets: list[str]) -> dict[tuple[str, str], Term]:
    """:math:`P_{k,s}` for every lt-reachable (k, s): the triangle-inequality bound of A via B.

    Every loop-transformed path from s to k either meets no activation (``B_{k,s}``) or has a
    last activation l after which it runs in the cut network: ``A_{k,s} = B_{k,s} +
    Σ_l B_{k,l} C_l A_{pre(l),s}``, so ``P_{k,s} = ‖B_{k,s}‖ + Σ_l ‖B_{k,l}‖ ‖C_l‖ P_{pre(l),s}``.
    Labelled exact only when it is a single exact B term.
    """
    P: dict[tuple[str, str], Term] = {}
    zero = torch.zeros((), dtype=structure.graph.dtype, device=structure.graph.device)
    transform = structure.transform
    for k in inner_targets:
        for s in structure.sources_of(LT, k):
            total, pieces, exact = zero, 0, False
            if structure.reaches(CUT, s, k):
                b = terms.get(CUT, k, s)
                total, pieces, exact = total + b.value, 1, b.guarantee is Guarantee.EXACT
            for l in structure.activations:
                c_norm = transform.centre_bound(l)
                if l == s or not structure.reaches(CUT, l, k) or c_norm == 0.0:
                    continue
                inner_p = P.get((structure.pre[l], s))
                if inner_p is not None and float(inner_p.value) > 0:
                    total = total + terms.get(CUT, k, l).value * c_norm * inner_p.value
                    pieces += 1
            P[(k, s)] = Term(total, Guarantee.EXACT if pieces == 1 and exact else Guarantee.UPPER_BOUND)
    return P
