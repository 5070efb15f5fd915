r"""The two recursions over the targets of a :class:`Structure`, and their output row.

* naive (eq. 11): :math:`N_k = \sum_s \|B_{k,s}\|\,\mathrm{Lip}_s\,N_{\mathrm{pre}(s)}`;
* LipLT (eq. 16 on the DAG): :math:`m_k = \|A_{k,0}\| + \sum_j r_j \|A_{k,j}\|\, m_{\mathrm{pre}(j)}`.

The output row replaces the inner norm by the exact output terms (:class:`SpecTerms`), giving
the global, per-class and pairwise numbers at once.  Node constants (``Lip_s``, ``r_j``) come
from the structure's :class:`~liplt_cli.lipschitz.transform.LoopTransform`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from liplt_cli.lipschitz.structure import CUT, LT, Structure
from liplt_cli.lipschitz.terms import SpecTerms, Terms


@dataclass
class Recursion:
    """The inner constants by target, and the output numbers (global, per class, pairwise)."""

    inner: dict[str, torch.Tensor]
    global_: Any
    per_class: Any
    pairwise: Any


def _output_row(out_terms: dict[str, SpecTerms], factor: dict[str, Any], inner: dict[str, torch.Tensor]) -> Recursion:
    glob = per = pair = 0
    for s, t in out_terms.items():
        glob = glob + t.matrix * factor[s]
        per = per + t.per_class * factor[s]
        pair = pair + t.pairwise * factor[s]
    return Recursion(inner, glob, per, pair)


def naive(structure: Structure, terms: Terms, out_terms: dict[str, SpecTerms], inner: list[str]) -> Recursion:
    """N_k for inner targets and the naive global / per-class / pairwise numbers."""
    transform = structure.transform
    lip_in = {s: (1.0 if s == structure.input else transform.lipschitz_bound(s)) for s in structure.sources}
    N: dict[str, torch.Tensor] = {}

    def upstream(s: str) -> torch.Tensor | float:
        return 1.0 if s == structure.input else N[structure.pre[s]]

    for k in inner:
        N[k] = sum(
            (terms.get(CUT, k, s).value * lip_in[s] * upstream(s) for s in structure.sources_of(CUT, k)),
            torch.zeros((), dtype=structure.graph.dtype, device=structure.graph.device),
        )
    return _output_row(out_terms, {s: lip_in[s] * upstream(s) for s in out_terms}, N)


def liplt(structure: Structure, terms: Terms, out_terms: dict[str, SpecTerms], inner: list[str]) -> Recursion:
    """m_k (eq. 16 on the DAG) for inner targets, then the output row of the recursion."""
    transform = structure.transform
    m: dict[str, torch.Tensor] = {}
    inp = structure.input
    for k in inner:
        total = terms.get(LT, k, inp).value if structure.reaches(LT, inp, k) else 0.0
        for j in structure.sources_of(LT, k):
            if j == inp:
                continue
            total = total + transform.radius_bound(j) * terms.get(LT, k, j).value * m[structure.pre[j]]
        m[k] = torch.as_tensor(total, dtype=structure.graph.dtype, device=structure.graph.device)
    factor = {s: 1.0 if s == inp else transform.radius_bound(s) * m[structure.pre[s]] for s in out_terms}
    return _output_row(out_terms, factor, m)
