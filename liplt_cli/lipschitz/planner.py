r"""Where the exact-norm budget goes: the terms whose exactness lowers the final number most.

The LipLT numbers are a fixed, monotone function of the inner terms :math:`\|A_{k,s}\|` (eq. 16 and
its output row).  After the structural bounds and the dense explicit maps, the terms that are
still upper bounds are ranked by the **gain** of making each exact,

.. math:: \text{gain}_{k,s} = \frac{\partial F}{\partial \|A_{k,s}\|}\,(U_{k,s} - E_{k,s}),

the sensitivity of :math:`F = L/L^{(0)} + \bar L_{ij}/\bar L_{ij}^{(0)}` (global and mean pairwise
numbers, each relative to its value before this step) times the slack between the current upper
bound :math:`U` and a power-iteration estimate :math:`E \le \|A_{k,s}\|` (from below, so the slack
is never underestimated).  The budget is spent in order of gain per multiply-add (the greedy
order for a budget; with equal costs, the order of gain): the term with the best ratio that the
remaining budget affords is made exact (:mod:`.gram`: Gram matrix on its narrow side, or through a
narrow dominator), the split bounds (:mod:`.chains`) and the sensitivities are recomputed, and so
on until the budget or the gains run out.  Only the *choice* of terms rests on estimates; every
number that enters the bound is exact or a proven upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from liplt_cli.lipschitz.chains import Dominators, split_bounds
from liplt_cli.lipschitz.gram import GramBuilder, bottleneck_norm
from liplt_cli.lipschitz.power import power_norms
from liplt_cli.lipschitz.recursions import liplt
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import LT, Structure
from liplt_cli.lipschitz.support import GramSide
from liplt_cli.lipschitz.terms import SpecTerms, Term, Terms

Pair = tuple[str, str]
Progress = Callable[[str, int, int], None]

ESTIMATE_ITERATIONS = 30
NEGLIGIBLE_GAIN = 1e-6


@dataclass(frozen=True)
class Job:
    """One way of making ``pair`` exact, and its cost in multiply-adds."""

    pair: Pair
    cost: float
    narrow: GramSide | None = None  # Gram matrix on the narrow side of the map itself
    dominator: str | None = None  # or through this narrow dominating activation


def sensitivities(structure: Structure, terms: Terms, out_terms: dict[str, SpecTerms], inner: list[str],
                  pairs: list[Pair]) -> dict[Pair, float]:
    """:math:`\\partial F / \\partial \\|A_{k,s}\\|` for every pair (see the module docstring)."""
    leaves = {pair: terms.get(LT, *pair).value.detach().clone().requires_grad_(True) for pair in pairs}
    probe = Terms()
    probe.table = dict(terms.table)
    for (k, s), leaf in leaves.items():
        probe.table[(LT, k, s)] = Term(leaf, terms.get(LT, k, s).guarantee)
    with torch.enable_grad():
        rec = liplt(structure, probe, out_terms, inner)
        glob = torch.as_tensor(rec.global_)
        pw = torch.as_tensor(rec.pairwise)
        kk = pw.shape[0] if pw.dim() == 2 else 1
        mean = pw.sum() / max(1, kk * (kk - 1))
        objective = glob / glob.detach().clamp_min(1e-300) + mean / mean.detach().clamp_min(1e-300)
        if not objective.requires_grad:
            return {pair: 0.0 for pair in pairs}
        grads = torch.autograd.grad(objective, list(leaves.values()), allow_unused=True)
    return {pair: float(g) if g is not None else 0.0 for pair, g in zip(leaves, grads)}


class Planner:
    """Spends ``budget`` multiply-adds on exact norms of the loop-transformed inner terms."""

    def __init__(self, structure: Structure, doms: Dominators, terms: Terms, out_terms: dict[str, SpecTerms],
                 inner: list[str], pairs: list[Pair], budget: float, max_side: int, seed: int = 0,
                 progress: Progress | None = None) -> None:
        self.structure = structure
        self.doms = doms
        self.terms = terms
        self.out_terms = out_terms
        self.inner = inner
        self.pairs = pairs
        self.budget = budget
        self.max_side = max_side
        self.seed = seed
        self.progress = progress
        self.builder = GramBuilder(structure)
        self.attempted: set[Pair] = set()
        self.spent = 0.0

    # ------------------------------------------------------------------ jobs
    def sides(self, pair: Pair) -> list[GramSide]:
        """Gram matrices of the map itself that fit: on its narrow side, and on the other side
        too when it is no wider (equal widths: whichever is already built costs less)."""
        k, s = pair
        dk, ds = self.structure.dim(k), self.structure.dim(s)
        out = []
        if dk <= ds and dk <= self.max_side:
            out.append(GramSide(LT, k, s, True))
        if ds <= dk and ds <= self.max_side:
            out.append(GramSide(LT, s, k, False))
        return out

    def bottleneck_sides(self, pair: Pair, l: str) -> tuple[GramSide, GramSide]:
        k, s = pair
        return GramSide(LT, l, k, False), GramSide(LT, self.structure.pre[l], s, True)

    def job(self, pair: Pair) -> Job | None:
        """The cheapest exact method for ``pair`` (``None`` if none fits in memory)."""
        b = self.builder
        options: list[Job] = []
        for side in self.sides(pair):
            options.append(Job(pair, b.gram_cost(side) + b.certificate_cost(side), narrow=side))
        for l in self.doms.of.get(pair, ()):
            if self.structure.dim(l) > self.max_side:
                continue
            options.append(Job(pair, b.bottleneck_cost(*self.bottleneck_sides(pair, l)), dominator=l))
        return min(options, key=lambda j: j.cost) if options else None

    def run_job(self, job: Job) -> None:
        """Run ``job`` once (whatever its outcome, the pair is not tried again)."""
        self.attempted.add(job.pair)
        b = self.builder
        if job.narrow is not None:
            cert = b.norm(job.narrow)
        else:
            left, right = self.bottleneck_sides(job.pair, job.dominator)
            centre = self.structure.transform.multiplier(job.dominator, LT)
            k, s = job.pair
            whole = GramSide(LT, k, s, True) if self.structure.dim(k) <= self.structure.dim(s) else GramSide(LT, s, k, False)
            cert = bottleneck_norm(b, left, right, centre, whole)
        if cert is None:  # no certificate (a Ritz value far off): the term keeps its bound
            return
        label = Guarantee.EXACT if cert.exact else Guarantee.UPPER_BOUND
        value = torch.tensor(cert.value, dtype=self.structure.graph.dtype, device=self.structure.graph.device)
        self.terms.offer(LT, job.pair[0], job.pair[1], value, label)

    # ------------------------------------------------------------------ estimates
    def estimates(self, pairs: list[Pair]) -> dict[Pair, float]:
        """Power-iteration estimates (from below) of the pairs' norms (on the builder's
        single-precision copy)."""
        if not pairs:
            return {}
        est, _ = power_norms(self.builder.single, LT, pairs, iterations=ESTIMATE_ITERATIONS,
                             generator=torch.Generator().manual_seed(self.seed + 7))
        # float32 round-off could lift an estimate a hair above the norm: it only ranks terms
        return {pair: float(v) for pair, v in est.items()}

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        split_bounds(self.structure, self.doms, self.terms, self.pairs)
        if self.budget <= 0:
            return
        open_pairs = [p for p in self.pairs if self.terms.get(LT, *p).guarantee is not Guarantee.EXACT]
        est = self.estimates(open_pairs)
        done = 0
        while True:
            open_pairs = [
                p for p in open_pairs
                if self.terms.get(LT, *p).guarantee is not Guarantee.EXACT and p not in self.attempted
            ]
            if not open_pairs:
                break
            sens = sensitivities(self.structure, self.terms, self.out_terms, self.inner, self.pairs)
            ranked = []
            for pair in open_pairs:
                job = self.job(pair)  # costs change as Gram matrices get built
                if job is None:
                    continue
                gain = sens.get(pair, 0.0) * (float(self.terms.get(LT, *pair).value) - est.get(pair, 0.0))
                ranked.append((gain, job))
            ranked.sort(key=lambda gj: -gj[0] / max(gj[1].cost, 1.0))
            # an unlimited budget makes every term exact, whatever its gain
            floor = -math.inf if math.isinf(self.budget) else NEGLIGIBLE_GAIN
            chosen = next((job for gain, job in ranked if gain > floor and self.spent + job.cost <= self.budget), None)
            if chosen is None:
                break
            if self.progress:
                self.progress("exact norms by gain", done, done + len(ranked))
            self.run_job(chosen)
            self.spent += chosen.cost
            done += 1
            split_bounds(self.structure, self.doms, self.terms, self.pairs)
