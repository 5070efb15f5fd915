r"""The norm terms of the recursions, each with its guarantee label, and the exact output terms.

Inner terms :math:`\|A_{k,s}\|` (``Mode.LT``) and :math:`\|B_{k,s}\|` (``Mode.CUT``) are kept in
a :class:`Terms` table that keeps the best value offered: the smaller of two sound values, never
an estimate in place of a sound value.

Output terms: for a scalar specification :math:`c` (row :math:`e_i` per class,
:math:`e_i - e_j` per pair) the last row of the recursion needs :math:`\|c^\top A_{\mathrm{out},s}\|_*`,
which is *exact*: the K rows of every :math:`A_{\mathrm{out},s}` come from one batched adjoint
pass (:func:`output_rows`), and :class:`SpecTerms` holds their matrix, per-class and pairwise norms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from liplt_cli.lipschitz.norms import matrix_norm_explicit, pairwise_dual_norms, row_dual_norms
from liplt_cli.lipschitz.propagation import adjoint_pass
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.transform import Mode


@dataclass
class Term:
    value: torch.Tensor
    guarantee: Guarantee


class Terms:
    """Norm terms ‖A_{k,s}‖ (mode lt) and ‖B_{k,s}‖ (mode cut) with their labels."""

    def __init__(self) -> None:
        self.table: dict[tuple[Mode, str, str], Term] = {}

    def offer(self, mode: Mode, k: str, s: str, value: torch.Tensor, guarantee: Guarantee) -> None:
        """Keep the smaller of two sound values; an estimate never replaces a sound value."""
        key = (mode, k, s)
        old = self.table.get(key)
        if old is None:
            self.table[key] = Term(value, guarantee)
            return
        if guarantee.sound != old.guarantee.sound:
            if guarantee.sound:
                self.table[key] = Term(value, guarantee)
            return
        new_v, old_v = float(value), float(old.value)
        # within the certified eigenvalue gap of an exact value, a sound value is exact too
        tie = abs(new_v - old_v) <= 1e-5 * max(abs(new_v), abs(old_v))
        if tie:  # keep the smaller value, with the better label of the two
            label = Guarantee.EXACT if Guarantee.EXACT in (guarantee, old.guarantee) else old.guarantee
            self.table[key] = Term(value if new_v < old_v else old.value, label)
        elif new_v < old_v:
            self.table[key] = Term(value, guarantee)

    def get(self, mode: Mode, k: str, s: str) -> Term:
        return self.table[(mode, k, s)]

    def labels(self, mode: Mode, pairs: list[tuple[str, str]]) -> list[Guarantee]:
        return [self.get(mode, k, s).guarantee for k, s in pairs]


def count_labels(labels: list[Guarantee]) -> dict[str, int]:
    """How many terms carry each guarantee, by label value."""
    return {g.value: sum(1 for x in labels if x is g) for g in Guarantee}


# --------------------------------------------------------------------------- output rows
def output_rows(structure: Structure, mode: Mode) -> dict[str, torch.Tensor]:
    """Explicit rows of :math:`A_{\\mathrm{out},s}` (mode lt) or :math:`B_{\\mathrm{out},s}` (cut), K × d_s."""
    graph = structure.graph
    out_shape = graph.node(structure.output).out_shape
    k = math.prod(out_shape)
    eye = torch.eye(k, dtype=graph.dtype, device=graph.device).reshape(k, *out_shape)
    sources = structure.sources_of(mode, structure.output)
    rows: dict[str, torch.Tensor] = {}
    adjoint_pass(
        structure, mode, [("out", structure.output, eye)], {"out": set(sources)},
        lambda t, n, x: rows.__setitem__(n, x.reshape(k, -1)),
    )
    for s in sources:
        rows.setdefault(s, torch.zeros((k, structure.dim(s)), dtype=graph.dtype, device=graph.device))
    return rows


@dataclass
class SpecTerms:
    """Output-side terms for one source: matrix norm, per-class and pairwise dual norms."""

    matrix: torch.Tensor
    per_class: torch.Tensor
    pairwise: torch.Tensor


def spec_terms(rows: torch.Tensor, p: float) -> SpecTerms:
    return SpecTerms(matrix_norm_explicit(rows, p), row_dual_norms(rows, p), pairwise_dual_norms(rows, p))


def output_terms(structure: Structure, mode: Mode) -> dict[str, SpecTerms]:
    """Every output term of ``mode``, by source (all exact)."""
    return {s: spec_terms(r, structure.p) for s, r in output_rows(structure, mode).items()}
