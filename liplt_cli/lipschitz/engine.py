r"""The naive and LipLT bounds on a layer graph: global, per class and pairwise (the entry point).

Both methods share one structure (:mod:`liplt_cli.lipschitz.structure`) and differ only in the
maps whose norms they take:

* **naive** (eq. 11): :math:`N_k = \sum_s \|B_{k,s}\|\,\mathrm{Lip}_s\,N_{\mathrm{pre}(s)}` over
  the cut network;
* **LipLT** (eq. 16, generalised): :math:`m_k = \|A_{k,0}\| + \sum_j r_j \|A_{k,j}\|\, m_j` over the
  loop-transformed network.

For a scalar specification :math:`c` (row :math:`e_i` per class, :math:`e_i - e_j` per pair)
only the last row of the recursion changes: :math:`L_c = \|c^\top A_{\mathrm{out},0}\|_* +
\sum_j r_j \|c^\top A_{\mathrm{out},j}\|_* m_j`.  Those output terms are *exact*: the K rows of
every :math:`A_{\mathrm{out},s}` come from one batched adjoint pass (:mod:`.terms`).

Which rule makes the default sound
----------------------------------
Every inner term is either

1. *exact*: the map is made explicit (basis vectors pushed through the linear network from its
   narrower side, in float64) and its norm taken exactly (Gram eigenvalue / abs-sums), when its
   dense cost fits ``min(explicit_budget, DENSE_EXPLICIT_CAP)`` (:mod:`.explicit`); or, for ℓ2,
   from a Gram matrix built by operator products (on its narrow side, or through a narrow
   dominating activation) with a certified top eigenvalue (:mod:`.gram`), for the terms chosen
   by :mod:`.planner` in order of how much each lowers the final number, within the Gram budget;
2. an *upper bound*: the smallest of :math:`P_{k,s} = \|B_{k,s}\| + \sum_l \|B_{k,l}\| |c_l|
   P_{\mathrm{pre}(l),s}` (triangle inequality over the last activation on each path), built from
   per-segment norms that are themselves exact or upper bounds (SVD of dense layers, FFT bound of
   convolutions, absolute-value propagation for ℓ∞/ℓ1), of the split bound
   :math:`\|A_{k,l}\| |c_l| \|A_{\mathrm{pre}(l),s}\|` through a dominating activation with the
   best values of the two shorter maps (ℓ2, :mod:`.chains`), and for ℓ∞/ℓ1 of the
   absolute-value propagation of the whole map (:mod:`.structural`).

Power iteration is used only with ``fast=True`` and is then labelled *estimate* (the planner's
ranking uses estimates to *choose* terms, never as values).  Because every LipLT term is at most
its :math:`P` bound, and the :math:`P` recursion reproduces the naive bound exactly when
:math:`|c_j| + r_j = \mathrm{Lip}_j`, sound LipLT ≤ sound naive (Proposition 3); the final LipLT
number is additionally capped by naive so round-off cannot invert them.

Module layout: :mod:`.options` (settings), :mod:`.transform` (modes, slopes),
:mod:`.structure` (sources, targets, reach), :mod:`.propagation` (batched walks),
:mod:`.terms` (term table, output rows), :mod:`.explicit`, :mod:`.structural`, :mod:`.chains`
(dominators, split bounds), :mod:`.support` / :mod:`.gram` / :mod:`.banded` / :mod:`.eigen`
(exact norms from Gram matrices), :mod:`.planner` (where the budget goes), :mod:`.power`
(estimates), :mod:`.recursions`, this entry point, and :mod:`.training`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.chains import dominators
from liplt_cli.lipschitz.designed import DESIGNED, with_designed_terms
from liplt_cli.lipschitz.explicit import affordable, explicit_terms
from liplt_cli.lipschitz.norms import SAFETY
from liplt_cli.lipschitz.options import EngineOptions
from liplt_cli.lipschitz.planner import Planner
from liplt_cli.lipschitz.power import power_norms
from liplt_cli.lipschitz.recursions import Recursion, liplt, naive
from liplt_cli.lipschitz.result import BoundResult, Guarantee, MethodBound
from liplt_cli.lipschitz.structural import abs_propagation_terms, p_bounds, segment_bound
from liplt_cli.lipschitz.structure import CUT, LT, Structure, analyse
from liplt_cli.lipschitz.terms import Terms, count_labels, output_terms
from liplt_cli.lipschitz.transform import Mode
from liplt_cli.notes import warnings_in

Progress = Callable[[str, int, int], None]
Pairs = list[tuple[str, str]]
METHODS = ("naive", "liplt")


def _as_list(x: Any) -> list:
    return torch.as_tensor(x, dtype=torch.float64).detach().cpu().tolist()


def _fill_terms(
    structure: Structure, mode: Mode, pairs: Pairs, terms: Terms, opts: EngineOptions,
    progress: Progress | None, structural: Callable[[], dict[tuple[str, str], tuple[torch.Tensor, Guarantee]]],
) -> float | None:
    """Fill the norm terms of ``pairs``: power-iteration estimates (``fast``, ℓ2), or the sound
    chain -- ``structural()`` bounds, |A|·1 propagation (ℓ∞/ℓ1), explicit maps where affordable.
    Returns the last relative change of the power iteration (None when sound)."""
    if opts.fast and structure.p == 2:
        seed = opts.seed + (1 if mode == LT else 0)
        est, pstate = power_norms(structure, mode, pairs, iterations=opts.iterations,
                                  generator=torch.Generator().manual_seed(seed), progress=progress)
        for (k, s), v in est.items():
            terms.offer(mode, k, s, v, Guarantee.ESTIMATE)
        return pstate.last_relative_change
    if progress:
        progress(f"structural bounds ({mode.value})", 0, 1)
    for (k, s), (value, label) in structural().items():
        terms.offer(mode, k, s, value, label)
    if structure.p != 2:
        abs_propagation_terms(structure, mode, pairs, terms)
    if progress:
        progress(f"structural bounds ({mode.value})", 1, 1)
    pending = [
        (k, s) for k, s in pairs
        if terms.get(mode, k, s).guarantee is not Guarantee.EXACT and affordable(structure, k, s, opts)
    ]
    explicit_terms(structure, mode, pending, opts, terms, progress)
    return None


def _method_bound(
    method: str, rec: Recursion, labels: list[Guarantee], seconds: float, opts: EngineOptions,
    relative_change: float | None,
) -> MethodBound:
    """A :class:`MethodBound` with the safety margin applied to sound numbers."""
    guarantee = Guarantee.weakest(labels)
    scale = 1.0 + SAFETY if guarantee.sound else 1.0
    return MethodBound(
        method, float(rec.global_) * scale, [v * scale for v in _as_list(rec.per_class)],
        [[v * scale for v in row] for row in _as_list(rec.pairwise)], guarantee, count_labels(labels), seconds,
        opts.iterations if opts.fast else None, relative_change,
    )


class _Run:
    """One call of :func:`compute_bounds`: the structure, the shared term table, the options."""

    def __init__(self, structure: Structure, opts: EngineOptions, progress: Progress | None) -> None:
        self.structure = structure
        self.opts = opts
        self.progress = progress
        self.terms = Terms()
        self.inner = [k for k in structure.targets if k != structure.output]

    def pairs(self, mode: Mode) -> Pairs:
        return [(k, s) for k in self.inner for s in self.structure.sources_of(mode, k)]

    def naive(self) -> tuple[Recursion, list[Guarantee], float | None]:
        """The naive recursion (its segment terms are also what sound LipLT's P bounds use)."""
        structure, pairs = self.structure, self.pairs(CUT)
        op_norms: dict[str, tuple[torch.Tensor, Guarantee]] = {}
        change = _fill_terms(
            structure, CUT, pairs, self.terms, self.opts, self.progress,
            lambda: {(k, s): segment_bound(structure, k, s, op_norms) for k, s in pairs},
        )
        out = output_terms(structure, CUT)
        labels = self.terms.labels(CUT, pairs) + [Guarantee.EXACT] * len(out)
        return naive(structure, self.terms, out, self.inner), labels, change

    def liplt(self, cap: Recursion | None) -> tuple[Recursion, list[Guarantee], float | None]:
        """The LipLT recursion, capped by naive (``cap``) when sound (Proposition 3)."""
        structure, pairs = self.structure, self.pairs(LT)

        def structural() -> dict[tuple[str, str], tuple[torch.Tensor, Guarantee]]:
            P = p_bounds(structure, self.terms, self.inner)
            return {pair: (P[pair].value, P[pair].guarantee) for pair in pairs}

        change = _fill_terms(structure, LT, pairs, self.terms, self.opts, self.progress, structural)
        out = output_terms(structure, LT)
        if structure.p == 2 and not self.opts.fast and pairs:
            budget, max_side = self.opts.gram_limits(structure.graph.device.type)
            Planner(structure, dominators(structure, pairs), self.terms, out, self.inner, pairs, budget, max_side,
                    self.opts.seed, self.progress).run()
        rec = liplt(structure, self.terms, out, self.inner)
        labels = self.terms.labels(LT, pairs) + [Guarantee.EXACT] * len(out)
        if Guarantee.weakest(labels).sound and cap is not None:
            # Proposition 3 holds term by term; the cap only absorbs round-off.
            rec.global_ = torch.minimum(torch.as_tensor(rec.global_), torch.as_tensor(cap.global_))
            rec.per_class = torch.minimum(rec.per_class, cap.per_class)
            rec.pairwise = torch.minimum(rec.pairwise, cap.pairwise)
        return rec, labels, change


def compute_bounds(
    graph: LayerGraph,
    options: EngineOptions | None = None,
    *,
    methods: Sequence[str] = METHODS,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    model: str = "",
    designed_terms: bool = True,
    **settings: Any,
) -> BoundResult:
    """Naive and/or LipLT Lipschitz bounds of ``graph`` with the settings ``options``.

    Sound by default (every number exact or an upper bound, see the module docstring); with
    ``options.fast`` the inner ℓ2 terms are power-iteration *estimates* (labelled so).
    Computation runs on ``device`` (default: the graph's device), in float64 (sound) or float32
    (fast).  ``options`` is the only way settings arrive: a keyword such as ``norm="inf"`` is a
    :class:`ValueError` that names :class:`EngineOptions` (``EngineOptions(norm="inf")`` accepts the
    same values), so a setting can never be given twice or silently ignored.

    Proposition 2 blocks (:mod:`.designed`): with ``designed_terms`` (default), sound ℓ2 LipLT on a
    graph with blocks re-certified from their weights also uses each block's designed bound as a
    term, so LipLT ≤ the designed bound; method ``"designed"`` (if asked for and such blocks
    exist) is that product bound itself.
    """
    opts = _options(options, settings)
    for m in methods:
        if m not in METHODS + (DESIGNED,):
            raise ValueError(f"unknown method '{m}'; choose from {', '.join(METHODS + (DESIGNED,))}")
    # sound numbers are computed in float64; estimates (fast) in float32, like training
    g = graph.detached().to(device=device or graph.device, dtype=torch.float32 if opts.fast else torch.float64)
    run = _Run(analyse(g, opts.norm), opts, progress)
    results: dict[str, MethodBound] = {}
    with torch.no_grad():
        cap = None
        # Sound LipLT needs the naive segment norms (its P bounds and the Proposition 3 cap);
        # LipLT estimates (fast, ℓ2) do not.
        if "naive" in methods or not (opts.fast and opts.norm == 2):
            t0 = time.perf_counter()
            cap, labels, change = run.naive()
            if "naive" in methods:
                results["naive"] = _method_bound("naive", cap, labels, time.perf_counter() - t0, opts, change)
        if "liplt" in methods:
            t1 = time.perf_counter()
            rec, labels, change = run.liplt(cap)
            results["liplt"] = _method_bound("liplt", rec, labels, time.perf_counter() - t1, opts, change)
    if designed_terms and opts.norm == 2 and not opts.fast and ("liplt" in methods or DESIGNED in methods):
        results = with_designed_terms(g, results, opts, want_designed=DESIGNED in methods)
    return BoundResult(
        norm=opts.norm, methods={m: results[m] for m in methods if m in results}, device=str(g.device), model=model,
        settings={
            "fast": opts.fast, "iterations": opts.iterations if opts.fast else None,
            "explicit_budget": opts.explicit_budget, "explicit_max_side": opts.explicit_max_side,
        },
        notes=tuple(warnings_in(graph.notes)),
    )


def _options(options: EngineOptions | None, settings: dict[str, Any]) -> EngineOptions:
    """``options`` checked to be an :class:`EngineOptions` (default settings when ``None``).

    Keyword settings are refused with a :class:`ValueError` that shows the ``EngineOptions`` call
    to write instead (and, when ``options`` was given too, says the settings came twice).
    """
    if settings:
        given = ", ".join(f"{k}={v!r}" for k, v in sorted(settings.items()))
        twice = " (settings came both in options and as keywords: give them once, not both)" if options is not None else ""
        raise ValueError(
            f"compute_bounds takes its settings as one EngineOptions, not as keywords: "
            f"write compute_bounds(graph, EngineOptions({given})){twice}"
        )
    if options is None:
        return EngineOptions()
    if not isinstance(options, EngineOptions):
        hint = (f" (for the norm write EngineOptions(norm={options!r}))" if isinstance(options, (str, int, float))
                else "")
        raise ValueError(f"options must be an EngineOptions, got {type(options).__name__}{hint}")
    return options
