r"""Run several Lipschitz methods on a model and put them side by side (the paper's Table 2).

Methods (``COMPARE_METHODS``):

* ``naive`` -- product of norms (eq. 11), from :func:`liplt_cli.lipschitz.compute_bounds`;
* ``liplt`` -- loop transformation (eq. 16), same engine, sound;
* ``liplt-sn`` / ``liplt-aol`` / ``liplt-sll`` -- LipLT with the Theorem 2 refinement for ℓ2 and
  diagonal T chosen as SN (= LipLT), AOL or SLL (:mod:`liplt_cli.lipschitz.refine`);
* ``designed`` -- on models with Proposition 2 blocks re-certified from their weights
  (:mod:`liplt_cli.lipschitz.designed`): the product of the certified per-block √ρ_i and the
  norms between them; LipLT then also uses those terms, so LipLT ≤ designed.  Shown after
  ``liplt`` whenever ``liplt`` is compared and such blocks exist, even if not asked for;
* ``lipsdp`` -- LipSDP-Neuron through cvxpy (optional extra, small feed-forward nets only);
* ``lower`` -- empirical lower bound (largest Jacobian norm found), the bottom of the interval
  :math:`[\text{lower}, \text{best upper bound}]` that contains the true constant.

A method that does not apply (norm, structure, size, missing optional dependency) gives a row
labelled ``skipped`` with the reason, never an error.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

from liplt_cli.compare.result import SKIPPED, ComparisonResult, MethodRow, ModelComparison
from liplt_cli.errors import ArgumentError
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.lipsdp import DEFAULT_MAX_NEURONS as DEFAULT_LIPSDP_MAX
from liplt_cli.lipschitz.lipsdp import SkippedMethod, lipsdp_bounds
from liplt_cli.lipschitz.lower import LOWER_BOUND_LABEL, empirical_lower_bound
from liplt_cli.lipschitz.options import parse_norm
from liplt_cli.lipschitz.refine import refined_bounds
from liplt_cli.lipschitz.result import MethodBound

COMPARE_METHODS = ("naive", "liplt", "designed", "liplt-sn", "liplt-aol", "liplt-sll", "lipsdp", "lower")
DEFAULT_METHODS = ("naive", "liplt", "liplt-aol", "liplt-sll", "lipsdp", "lower")

Progress = Callable[[str, int, int], None]


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"naive,liplt"`` → ("naive", "liplt"); ``all`` → every method; unknown names are an error."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return COMPARE_METHODS
    unknown = [t for t in items if t not in COMPARE_METHODS]
    if unknown:
        raise ArgumentError(
            f"unknown method(s) {', '.join(repr(u) for u in unknown)}; choose from {', '.join(COMPARE_METHODS)} or all"
        )
    if not items:
        raise ArgumentError("no method given")
    return tuple(dict.fromkeys(items))


def _row_from_bound(mb: MethodBound, norm: float, guarantee: str | None = None) -> MethodRow:
    return MethodRow(
        method=mb.method,
        guarantee=guarantee or mb.guarantee.value,
        seconds=mb.seconds,
        global_=mb.global_,
        pairwise_mean=mb.pairwise_mean,
        sum_per_class_mean=mb.sum_per_class_mean,
        sqrt2_global=mb.sqrt2_global if norm == 2.0 else None,
        notes=tuple(mb.notes),
    )


def _skipped(s: SkippedMethod, seconds: float) -> MethodRow:
    return MethodRow(method=s.method, guarantee=SKIPPED, seconds=seconds, reason=s.reason)


def compare_graph(
    graph: LayerGraph,
    model: str = "",
    norm: float | str = 2.0,
    methods: Sequence[str] = DEFAULT_METHODS,
    device: str | None = None,
    lower_samples: int = 256,
    lower_steps: int = 25,
    seed: int = 0,
    progress: Progress | None = None,
    lipsdp_max_neurons: int = DEFAULT_LIPSDP_MAX,
) -> ModelComparison:
    """Every method of ``methods`` on ``graph``; rows in the order given, then gaps to the lower bound.

    ``progress(label, done, total)`` reports each method's steps, labelled ``"<model>: <method>: …"``.
    """
    methods = parse_methods(list(methods))
    norm = parse_norm(norm)

    def stage(method: str) -> Progress:
        def report(label: str, done: int, total: int) -> None:
            if progress is not None:
                progress(f"{model}: {method}: {label}", done, total)

        return report

    rows: dict[str, MethodRow] = {}
    if "liplt" in methods and "designed" not in methods:  # shown when the model has certified blocks
        at = methods.index("liplt") + 1
        methods = methods[:at] + ("designed",) + methods[at:]
        optional = {"designed"}
    else:
        optional = set()
    engine = [m for m in methods if m in ("naive", "liplt", "designed")]
    if engine:
        from liplt_cli.lipschitz import EngineOptions, compute_bounds

        start = time.perf_counter()
        result = compute_bounds(graph, EngineOptions(norm=norm), methods=tuple(engine), device=device, model=model,
                                progress=stage("/".join(m for m in engine if m not in optional)))
        if "designed" in optional and "designed" not in result.methods:
            methods = tuple(m for m in methods if m != "designed")
            engine.remove("designed")
        for m in engine:
            if m in result.methods:
                rows[m] = _row_from_bound(result.methods[m], norm)
            else:  # designed: no certified Proposition 2 block, or not ℓ2
                why = "ℓ2 only" if norm != 2.0 else "no Proposition 2 block certified from the weights"
                rows[m] = _skipped(SkippedMethod(m, why), time.perf_counter() - start)
    for m in methods:
        if m in rows:
            continue
        report = stage(m)
        start = time.perf_counter()
        if m.startswith("liplt-"):
            report("refined bound", 0, 1)
            res = refined_bounds(graph, m.split("-", 1)[1], norm=norm)
            report("refined bound", 1, 1)
        elif m == "lipsdp":
            res = lipsdp_bounds(graph, norm=norm, max_neurons=lipsdp_max_neurons, progress=report)
        elif m == "lower":
            g = graph if device is None else graph.to(device=device)
            low = empirical_lower_bound(g, norm=norm, samples=lower_samples, ascent_steps=lower_steps, seed=seed,
                                        progress=report)
            res = low.as_method_bound("lower")
        else:  # pragma: no cover - parse_methods guards the names
            raise ArgumentError(f"unknown method '{m}'")
        if isinstance(res, SkippedMethod):
            rows[m] = _skipped(res, time.perf_counter() - start)
        else:
            rows[m] = _row_from_bound(res, norm, LOWER_BOUND_LABEL if m == "lower" else None)
    lower = rows.get("lower")
    ordered = []
    for m in methods:
        r = rows[m]
        if lower is not None and m != "lower" and not r.skipped and lower.pairwise_mean and r.pairwise_mean is not None:
            gap = r.pairwise_mean / lower.pairwise_mean if lower.pairwise_mean > 0 else math.inf
            r = MethodRow(**{**r.__dict__, "gap": gap})
        ordered.append(r)
    return ModelComparison(model=model, num_classes=graph.num_classes, rows=tuple(ordered), notes=tuple(graph.notes))


def compare_models(
    graphs: Sequence[tuple[str, LayerGraph]],
    norm: float | str = 2.0,
    methods: Sequence[str] = DEFAULT_METHODS,
    device: str | None = None,
    lower_samples: int = 256,
    lower_steps: int = 25,
    seed: int = 0,
    progress: Progress | None = None,
    lipsdp_max_neurons: int = DEFAULT_LIPSDP_MAX,
) -> ComparisonResult:
    """:func:`compare_graph` on each ``(name, graph)``; one :class:`ModelComparison` per model."""
    methods = parse_methods(list(methods))
    norm = parse_norm(norm)
    models = tuple(
        compare_graph(g, name, norm, methods, device, lower_samples, lower_steps, seed, progress, lipsdp_max_neurons)
        for name, g in graphs
    )
    return ComparisonResult(
        norm=norm,
        device=device or "cpu",
        methods=methods,
        models=models,
        settings={
            "lower_samples": lower_samples,
            "lower_ascent_steps": lower_steps,
            "seed": seed,
            "lipsdp_max_neurons": lipsdp_max_neurons,
        },
    )
