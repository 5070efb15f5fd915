r"""Dominating activations of the inner maps, and the split bound they give.

An activation :math:`l` *dominates* the map :math:`A_{k,s}` when every path of the loop-transformed
network from source :math:`s` to target :math:`k` runs through :math:`l` (in a feed-forward chain,
every activation between them does).  Injections at :math:`s` then reach :math:`k` only through
:math:`l`'s output, which the loop-transformed network scales by :math:`C_l = \mathrm{diag}(c_l)`:

.. math:: A_{k,s} = A_{k,l}\, C_l\, A_{\mathrm{pre}(l),s}

(:math:`A_{k,l}` maps an injection at :math:`l`'s output to :math:`k`, :math:`A_{\mathrm{pre}(l),s}`
maps :math:`s` to :math:`l`'s input).  Sub-multiplicativity gives the **split bound**

.. math:: \|A_{k,s}\| \le \|A_{k,l}\|\, \|C_l\|\, \|A_{\mathrm{pre}(l),s}\|,
          \qquad \|C_l\| = \max_i |c_{l,i}|,

valid with any sound values (exact or upper bounds) of the two shorter maps: once those are exact,
it is far tighter than the triangle-inequality bound :math:`P_{k,s}` built from per-segment norms.
The factorisation is also what makes :func:`~.gram.bottleneck_norm` exact through a narrow
dominator.  A dominator is found, not assumed: :math:`l` dominates :math:`(k, s)` when :math:`s`
reaches :math:`k` in the loop-transformed network but not once :math:`l` passes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import LT, Structure, _Reach
from liplt_cli.lipschitz.terms import Terms

Pair = tuple[str, str]

IMPROVEMENT = 1e-9
"""Relative improvement below which a split bound is not offered (round-off, not information)."""


@dataclass(frozen=True)
class Dominators:
    """For each inner pair ``(k, s)`` of the loop-transformed network, its dominating activations."""

    of: dict[Pair, tuple[str, ...]]


def dominators(structure: Structure, pairs: list[Pair]) -> Dominators:
    """The activations that every loop-transformed path of each pair in ``pairs`` runs through."""
    transform = structure.transform
    found: dict[Pair, list[str]] = {pair: [] for pair in pairs}
    for l in structure.activations:
        if transform.multiplier(l, LT) is None:
            continue
        cut = replace(transform, centre={name: c for name, c in transform.centre.items() if name != l})
        reached = _Reach(structure.graph, cut, LT).run().reached
        pre = structure.pre[l]
        for k, s in pairs:
            if s == l or k == pre or not structure.reaches(LT, s, k):
                continue
            if s not in reached.get(k, ()) and structure.reaches(LT, l, k) and structure.reaches(LT, s, pre):
                found[(k, s)].append(l)
    return Dominators({pair: tuple(ls) for pair, ls in found.items()})


def split_bounds(structure: Structure, doms: Dominators, terms: Terms, pairs: list[Pair]) -> int:
    """Offer the split bound to every pair of ``pairs`` that is not exact, shortest maps first (so
    that a split can use the splits of its pieces).  Returns how many terms got tighter."""
    graph = structure.graph
    transform = structure.transform
    order = sorted(pairs, key=lambda pair: graph.position(pair[0]) - graph.position(pair[1]))
    improved = 0
    for k, s in order:
        current = terms.get(LT, k, s)
        if current.guarantee is Guarantee.EXACT:
            continue
        best = None
        for l in doms.of.get((k, s), ()):
            value = terms.get(LT, k, l).value * transform.centre_bound(l) * terms.get(LT, structure.pre[l], s).value
            if best is None or float(value) < float(best):
                best = value
        if best is not None and float(best) < float(current.value) * (1 - IMPROVEMENT):
            terms.offer(LT, k, s, torch.as_tensor(best), Guarantee.UPPER_BOUND)
            improved += 1
    return improved
