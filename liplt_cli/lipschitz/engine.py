r"""The naive and LipLT bounds on a layer graph: global, per class and pairwise.

Both methods share one structure (:mod:`liplt_cli.lipschitz.structure`) and differ only in the
maps whose norms they take:

* **naive** (eq. 11): :math:`N_k = \sum_s \|B_{k,s}\|\,\mathrm{Lip}_s\,N_{\mathrm{pre}(s)}` over
  the cut network;
* **LipLT** (eq. 16, generalised): :math:`m_k = \|A_{k,0}\| + \sum_j r_j \|A_{k,j}\|\, m_j` over the
  loop-transformed network.

For a scalar specification :math:`c` (row :math:`e_i` per class, :math:`e_i - e_j` per pair)
only the last row of the recursion changes: :math:`L_c = \|c^\top A_{\mathrm{out},0}\|_* +
\sum_j r_j \|c^\top A_{\mathrm{out},j}\|_* m_j`.  Those output terms are *exact*: the K rows of
every :math:`A_{\mathrm{out},s}` come from one batched adjoint pass.

Which rule makes the default sound
----------------------------------
Every inner term is either

1. *exact*: the map is made explicit (basis vectors pushed through the linear network from its
   narrower side, in float64) and its norm taken exactly (Gram eigenvalue / abs-sums), when the
   cost fits ``explicit_budget``; or
2. an *upper bound*: :math:`P_{k,s} = \|B_{k,s}\| + \sum_l \|B_{k,l}\| |c_l| P_{\mathrm{pre}(l),s}`
   (triangle inequality over the last activation on each path), built from per-segment norms that
   are themselves exact or upper bounds (SVD of dense layers, FFT bound of convolutions,
   absolute-value propagation for ℓ∞/ℓ1), and for ℓ∞/ℓ1 the absolute-value propagation of the
   whole map; the smaller of the available bounds is used.

Power iteration is used only with ``fast=True`` and is then labelled *estimate*.  Because every
LipLT term is at most its :math:`P` bound, and the :math:`P` recursion reproduces the naive bound
exactly when :math:`|c_j| + r_j = \mathrm{Lip}_j`, sound LipLT ≤ sound naive (Proposition 3); the
final LipLT number is additionally capped by naive so round-off cannot invert them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, ConcatNode, LinearNode, SumNode
from liplt_cli.lipschitz.norms import (
    SAFETY,
    matrix_norm_explicit,
    pairwise_dual_norms,
    row_dual_norms,
    single_op_norm,
)
from liplt_cli.lipschitz.power import PowerState, power_norms
from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.result import BoundResult, Guarantee, MethodBound
from liplt_cli.lipschitz.structure import CUT, LT, Structure, analyse

Progress = Callable[[str, int, int], None]
METHODS = ("naive", "liplt")


@dataclass(frozen=True)
class EngineOptions:
    """Settings of :func:`compute_bounds`.

    ``explicit_budget``: largest ``min(d_k, d_s)² · max(d_k, d_s)`` (≈ flops of the Gram
    product) for which a map is made explicit and its norm taken exactly; ``explicit_max_side``:
    largest narrow side made explicit; ``chunk``: basis vectors per propagation batch.
    """

    norm: float = 2.0
    fast: bool = False
    iterations: int = 100
    tolerance: float = 1e-6
    explicit_budget: float = 4e10
    explicit_max_side: int = 4096
    chunk: int = 512
    seed: int = 0


@dataclass
class _Term:
    value: torch.Tensor
    guarantee: Guarantee


class _Terms:
    """Norm terms ‖A_{k,s}‖ (mode lt) and ‖B_{k,s}‖ (mode cut) with their labels."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str, str], _Term] = {}

    def offer(self, mode: str, k: str, s: str, value: torch.Tensor, guarantee: Guarantee) -> None:
        """Keep the smaller of two sound values; an estimate never replaces a sound value."""
        key = (mode, k, s)
        old = self.table.get(key)
        if old is None:
            self.table[key] = _Term(value, guarantee)
            return
        if guarantee.sound != old.guarantee.sound:
            if guarantee.sound:
                self.table[key] = _Term(value, guarantee)
            return
        new_v, old_v = float(value), float(old.value)
        # within the certified eigenvalue gap of an exact value, a sound value is exact too
        tie = abs(new_v - old_v) <= 1e-5 * max(abs(new_v), abs(old_v))
        if tie:  # keep the smaller value, with the better label of the two
            label = Guarantee.EXACT if Guarantee.EXACT in (guarantee, old.guarantee) else old.guarantee
            self.table[key] = _Term(value if new_v < old_v else old.value, label)
        elif new_v < old_v:
            self.table[key] = _Term(value, guarantee)

    def get(self, mode: str, k: str, s: str) -> _Term:
        return self.table[(mode, k, s)]


# --------------------------------------------------------------------------- explicit maps
def _basis_chunks(shape: tuple[int, ...], chunk: int, dtype, device):
    n = math.prod(shape)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = torch.zeros((stop - start, n), dtype=dtype, device=device)
        block[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        yield block.reshape(stop - start, *shape)


def _explicit_cost(d_small: int, d_large: int) -> float:
    return float(d_small) ** 2 * d_large


def _explicit_terms(
    structure: Structure, mode: str, pairs: list[tuple[str, str]], options: EngineOptions, terms: _Terms,
    progress: Progress | None,
) -> None:
    """Exact norms of the maps in ``pairs`` by building them from their narrower side."""
    graph = structure.graph
    dtype, device = graph.dtype, graph.device
    by_source: dict[str, list[str]] = {}
    by_target: dict[str, list[str]] = {}
    for k, s in pairs:
        if structure.dim(s) <= structure.dim(k):
            by_source.setdefault(s, []).append(k)
        else:
            by_target.setdefault(k, []).append(s)
    # From the narrow side: basis vectors pushed forward from a source give Aᵀ (columns),
    # basis rows pulled back from a target give A (rows).  Key order of ``terms`` is (k, s).
    jobs = [(s, ks, forward_pass, True) for s, ks in by_source.items()]
    jobs += [(k, ss, adjoint_pass, False) for k, ss in by_target.items()]
    p = structure.p
    for done, (start, ends, propagate, columns) in enumerate(jobs, start=1):
        parts: dict[str, list[torch.Tensor]] = {e: [] for e in ends}
        for block in _basis_chunks(graph.node(start).out_shape, options.chunk, dtype, device):
            propagate(
                structure, mode, [(start, start, block)], {start: set(ends)},
                lambda t, n, x: parts[n].append(x.reshape(x.shape[0], -1)),
            )
        for e in ends:
            if parts[e]:
                stacked = torch.cat(parts[e], dim=0)
                value = matrix_norm_explicit(stacked.T if columns else stacked, p)
            else:
                value = torch.zeros((), dtype=dtype, device=device)
            k, s = (e, start) if columns else (start, e)
            terms.offer(mode, k, s, value, Guarantee.EXACT)
        if progress:
            progress(f"explicit maps ({mode})", done, len(jobs))


def _affordable(structure: Structure, k: str, s: str, options: EngineOptions) -> bool:
    a, b = sorted((structure.dim(k), structure.dim(s)))
    return a <= options.explicit_max_side and _explicit_cost(a, b) <= options.explicit_budget


# --------------------------------------------------------------------------- structural bounds
def _segment_bound(
    structure: Structure, k: str, s: str, op_norms: dict[str, tuple[torch.Tensor, Guarantee]]
) -> tuple[torch.Tensor, Guarantee]:
    """Upper bound on ‖B_{k,s}‖ from per-operator norms along the cut network from s to k.

    Linear nodes multiply by their operator norm, sums add ``|c_i|``-weighted bounds, concats
    combine them as the ℓp norm requires.  Exact when the path holds a single operator whose norm
    is exact (reshapes and permutations are isometries and do not count).  ``op_norms`` caches
    the per-operator norms across calls.
    """
    graph = structure.graph
    p = structure.p
    bound: dict[str, torch.Tensor] = {s: torch.ones((), dtype=torch.float64, device=graph.device)}
    # number of non-isometric operators on the path, or None once a label cannot stay exact
    exact_ops: dict[str, int | None] = {s: 0}
    for node in graph.nodes[graph.position(s) + 1 : graph.position(k) + 1]:
        ins = [i for i in node.inputs if i in bound]
        if not ins:
            continue
        if isinstance(node, LinearNode):
            if node.name not in op_norms:
                op_norms[node.name] = single_op_norm(node.op, p)
            norm, label = op_norms[node.name]
            bound[node.name] = norm * bound[ins[0]]
            before = exact_ops[ins[0]]
            if node.op.kind in ("reshape", "permute"):
                exact_ops[node.name] = before
            elif before is None or label is not Guarantee.EXACT:
                exact_ops[node.name] = None
            else:
                exact_ops[node.name] = before + 1
        elif isinstance(node, SumNode):
            bound[node.name] = sum(
                abs(node.coefficient(idx)) * bound[inp] for idx, inp in enumerate(node.inputs) if inp in bound
            )
            exact_ops[node.name] = None
        elif isinstance(node, ConcatNode):
            vals = torch.stack([bound[i] for i in ins])
            if p == 2:
                bound[node.name] = torch.sqrt((vals**2).sum())
            elif math.isinf(p):
                bound[node.name] = vals.max()
            else:
                bound[node.name] = vals.sum()
            exact_ops[node.name] = None
        # nonlinear nodes are cut: nothing passes
    if k not in bound:
        return torch.zeros((), dtype=torch.float64, device=graph.device), Guarantee.EXACT
    count = exact_ops[k]
    return bound[k], Guarantee.EXACT if count is not None and count <= 1 else Guarantee.UPPER_BOUND


def _abs_propagation_terms(
    structure: Structure, mode: str, pairs: list[tuple[str, str]], terms: _Terms
) -> None:
    """ℓ∞: max of |A|·1; ℓ1: max of |A|ᵀ·1 -- sound upper bounds (exact for one operator)."""
    graph = structure.graph
    dtype, device = graph.dtype, graph.device
    abs_mode = "abs_" + mode
    if math.isinf(structure.p):
        reads: dict[tuple[str, str], set[str]] = {(k, s): {k} for k, s in pairs}
        out: dict[tuple[str, str], torch.Tensor] = {}
        forward_pass(
            structure, abs_mode,
            [((k, s), s, torch.ones((1, *graph.node(s).out_shape), dtype=dtype, device=device)) for k, s in pairs],
            reads, lambda t, n, x: out.__setitem__(t, x.max()),
        )
    else:
        reads = {(k, s): {s} for k, s in pairs}
        out = {}
        adjoint_pass(
            structure, abs_mode,
            [((k, s), k, torch.ones((1, *graph.node(k).out_shape), dtype=dtype, device=device)) for k, s in pairs],
            reads, lambda t, n, x: out.__setitem__(t, x.max()),
        )
    for k, s in pairs:
        value = out.get((k, s), torch.zeros((), dtype=dtype, device=device))
        terms.offer(mode, k, s, value, Guarantee.UPPER_BOUND)


def _p_bounds(
    structure: Structure, terms: _Terms, inner_targets: list[str]
) -> dict[tuple[str, str], _Term]:
    """:math:`P_{k,s}` for every lt-reachable (k, s): the triangle-inequality bound of A via B.

    Every loop-transformed path from s to k either meets no activation (``B_{k,s}``) or has a
    last activation l after which it runs in the cut network: ``A_{k,s} = B_{k,s} +
    Σ_l B_{k,l} c_l A_{pre(l),s}``.  Labelled exact only when it is a single exact B term.
    """
    P: dict[tuple[str, str], _Term] = {}
    zero = torch.zeros((), dtype=structure.graph.dtype, device=structure.graph.device)
    activations = [j for j in structure.nonlinear if isinstance(structure.graph.node(j), ActivationNode)]
    for k in inner_targets:
        for s in structure.sources_of(LT, k):
            total, pieces, exact = zero, 0, False
            if structure.reaches(CUT, s, k):
                b = terms.get(CUT, k, s)
                total, pieces, exact = total + b.value, 1, b.guarantee is Guarantee.EXACT
            for l in activations:
                if l == s or not structure.reaches(CUT, l, k) or structure.center[l] == 0.0:
                    continue
                inner_p = P.get((structure.pre[l], s))
                if inner_p is not None and float(inner_p.value) > 0:
                    total = total + terms.get(CUT, k, l).value * abs(structure.center[l]) * inner_p.value
                    pieces += 1
            P[(k, s)] = _Term(total, Guarantee.EXACT if pieces == 1 and exact else Guarantee.UPPER_BOUND)
    return P


# --------------------------------------------------------------------------- output rows
def _output_rows(structure: Structure, mode: str) -> dict[str, torch.Tensor]:
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
class _SpecTerms:
    """Output-side terms for one source: matrix norm, per-class and pairwise dual norms."""

    matrix: torch.Tensor
    per_class: torch.Tensor
    pairwise: torch.Tensor


def _spec_terms(rows: torch.Tensor, p: float) -> _SpecTerms:
    return _SpecTerms(matrix_norm_explicit(rows, p), row_dual_norms(rows, p), pairwise_dual_norms(rows, p))


# --------------------------------------------------------------------------- recursions
def _naive(structure: Structure, terms: _Terms, out_terms: dict[str, _SpecTerms], inner: list[str]):
    """N_k for inner targets and the naive global / per-class / pairwise numbers."""
    lip_in = {s: (1.0 if s == structure.input else structure.lip[s]) for s in structure.sources}
    N: dict[str, torch.Tensor] = {}

    def upstream(s: str) -> torch.Tensor | float:
        return 1.0 if s == structure.input else N[structure.pre[s]]

    for k in inner:
        N[k] = sum(
            (terms.get(CUT, k, s).value * lip_in[s] * upstream(s) for s in structure.sources_of(CUT, k)),
            torch.zeros((), dtype=structure.graph.dtype, device=structure.graph.device),
        )
    glob = per = pair = 0
    for s, t in out_terms.items():
        factor = lip_in[s] * upstream(s)
        glob = glob + t.matrix * factor
        per = per + t.per_class * factor
        pair = pair + t.pairwise * factor
    return N, glob, per, pair


def _liplt(structure: Structure, terms: _Terms, out_terms: dict[str, _SpecTerms], inner: list[str]):
    """m_k (eq. 16 on the DAG) for inner targets, then the output row of the recursion."""
    m: dict[str, torch.Tensor] = {}
    inp = structure.input
    for k in inner:
        total = terms.get(LT, k, inp).value if structure.reaches(LT, inp, k) else 0.0
        for j in structure.sources_of(LT, k):
            if j == inp:
                continue
            total = total + structure.radius[j] * terms.get(LT, k, j).value * m[structure.pre[j]]
        m[k] = torch.as_tensor(total, dtype=structure.graph.dtype, device=structure.graph.device)
    glob = per = pair = 0
    for s, t in out_terms.items():
        factor = 1.0 if s == inp else structure.radius[s] * m[structure.pre[s]]
        glob = glob + t.matrix * factor
        per = per + t.per_class * factor
        pair = pair + t.pairwise * factor
    return m, glob, per, pair


def _count(labels: list[Guarantee]) -> dict[str, int]:
    return {g.value: sum(1 for x in labels if x is g) for g in Guarantee}


def _as_list(x) -> list:
    return torch.as_tensor(x, dtype=torch.float64).detach().cpu().tolist()


def _fill_terms(
    structure: Structure, mode: str, pairs: list[tuple[str, str]], terms: _Terms, opts: EngineOptions,
    fast: bool, progress: Progress | None, structural,
) -> float | None:
    """Fill the norm terms of ``pairs``: power-iteration estimates (``fast``, ℓ2), or the sound
    chain -- ``structural()`` bounds, |A|·1 propagation (ℓ∞/ℓ1), explicit maps where affordable.
    Returns the last relative change of the power iteration (None when sound)."""
    if fast and structure.p == 2:
        seed = opts.seed + (1 if mode == LT else 0)
        est, pstate = power_norms(structure, mode, pairs, iterations=opts.iterations,
                                  generator=torch.Generator().manual_seed(seed), progress=progress)
        for (k, s), v in est.items():
            terms.offer(mode, k, s, v, Guarantee.ESTIMATE)
        return pstate.last_relative_change
    for (k, s), (value, label) in structural().items():
        terms.offer(mode, k, s, value, label)
    if structure.p != 2:
        _abs_propagation_terms(structure, mode, pairs, terms)
    pending = [
        (k, s) for k, s in pairs
        if terms.get(mode, k, s).guarantee is not Guarantee.EXACT and _affordable(structure, k, s, opts)
    ]
    _explicit_terms(structure, mode, pending, opts, terms, progress)
    return None


def _method_bound(
    method: str, glob, per, pair, labels: list[Guarantee], seconds: float, opts: EngineOptions,
    relative_change: float | None,
) -> MethodBound:
    """A :class:`MethodBound` with the safety margin applied to sound numbers."""
    guarantee = Guarantee.weakest(labels)
    scale = 1.0 + SAFETY if guarantee.sound else 1.0
    return MethodBound(
        method, float(glob) * scale, [v * scale for v in _as_list(per)],
        [[v * scale for v in row] for row in _as_list(pair)], guarantee, _count(labels), seconds,
        opts.iterations if opts.fast else None, relative_change,
    )


# --------------------------------------------------------------------------- entry point
def compute_bounds(
    graph: LayerGraph,
    norm: float = 2.0,
    methods: Sequence[str] = METHODS,
    fast: bool = False,
    iterations: int = 100,
    device: str | torch.device | None = None,
    options: EngineOptions | None = None,
    progress: Progress | None = None,
    model: str = "",
) -> BoundResult:
    """Naive and/or LipLT Lipschitz bounds of ``graph`` for input norm ``norm`` ∈ {2, ∞, 1}.

    Sound by default (every number exact or an upper bound, see the module docstring); with
    ``fast=True`` the inner ℓ2 terms are power-iteration *estimates* (labelled so).  Computation
    runs on ``device`` (default: the graph's device), in float64 (sound) or float32 (fast).
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method '{m}'; choose from {', '.join(METHODS)}")
    if norm not in (1.0, 2.0) and not math.isinf(norm):
        raise ValueError(f"unsupported norm {norm}; use 2, inf or 1")
    if options is None:
        opts = EngineOptions(norm=norm, fast=fast, iterations=iterations)
    else:  # explicit options win, except that fast=True or a norm given here always applies
        opts = replace(options, norm=norm, fast=fast or options.fast)
    fast = opts.fast
    # sound numbers are computed in float64; estimates (fast) in float32, like training
    g = graph.detached().to(device=device or graph.device, dtype=torch.float32 if fast else torch.float64)
    structure = analyse(g, norm)
    inner = [k for k in structure.targets if k != structure.output]
    timings: dict[str, float] = {}
    results: dict[str, MethodBound] = {}

    with torch.no_grad():
        # ------------------------------------------------------------ naive
        # Sound LipLT needs the naive segment norms (its P bounds and the Proposition 3 cap);
        # LipLT estimates (fast, ℓ2) do not.
        t0 = time.perf_counter()
        terms = _Terms()
        op_norms: dict[str, tuple[torch.Tensor, Guarantee]] = {}
        cut_pairs = [(k, s) for k in inner for s in structure.sources_of(CUT, k)]
        if "naive" in methods or not (fast and norm == 2):
            cut_change = _fill_terms(
                structure, CUT, cut_pairs, terms, opts, fast, progress,
                lambda: {(k, s): _segment_bound(structure, k, s, op_norms) for k, s in cut_pairs},
            )
            cut_out = {s: _spec_terms(r, norm) for s, r in _output_rows(structure, CUT).items()}
            _, n_glob, n_per, n_pair = _naive(structure, terms, cut_out, inner)
            naive_labels = [terms.get(CUT, k, s).guarantee for k, s in cut_pairs] + [Guarantee.EXACT] * len(cut_out)
            timings["naive"] = time.perf_counter() - t0
            if "naive" in methods:
                results["naive"] = _method_bound(
                    "naive", n_glob, n_per, n_pair, naive_labels, timings["naive"], opts, cut_change
                )

        # ------------------------------------------------------------ LipLT
        if "liplt" in methods:
            t1 = time.perf_counter()
            lt_pairs = [(k, s) for k in inner for s in structure.sources_of(LT, k)]

            def p_bounds():
                P = _p_bounds(structure, terms, inner)
                return {pair: (P[pair].value, P[pair].guarantee) for pair in lt_pairs}

            lt_change = _fill_terms(structure, LT, lt_pairs, terms, opts, fast, progress, p_bounds)
            lt_out = {s: _spec_terms(r, norm) for s, r in _output_rows(structure, LT).items()}
            _, l_glob, l_per, l_pair = _liplt(structure, terms, lt_out, inner)
            labels = [terms.get(LT, k, s).guarantee for k, s in lt_pairs] + [Guarantee.EXACT] * len(lt_out)
            if Guarantee.weakest(labels).sound:
                # Proposition 3 holds term by term; the cap only absorbs round-off.
                l_glob = torch.minimum(torch.as_tensor(l_glob), torch.as_tensor(n_glob))
                l_per = torch.minimum(l_per, n_per)
                l_pair = torch.minimum(l_pair, n_pair)
            timings["liplt"] = time.perf_counter() - t1
            results["liplt"] = _method_bound("liplt", l_glob, l_per, l_pair, labels, timings["liplt"], opts, lt_change)
    ordered = {m: results[m] for m in methods}
    return BoundResult(
        norm=norm, methods=ordered, device=str(g.device), model=model,
        settings={
            "fast": fast, "iterations": opts.iterations if fast else None,
            "explicit_budget": opts.explicit_budget, "explicit_max_side": opts.explicit_max_side,
        },
    )


# --------------------------------------------------------------------------- training
def pairwise_bound_tensor(
    graph: LayerGraph,
    method: str = "liplt",
    norm: float = 2.0,
    state: PowerState | None = None,
    iterations: int = 5,
    through_iterations: bool = False,
) -> tuple[torch.Tensor, PowerState]:
    """K×K pairwise constants :math:`L_{ij}`, differentiable in the graph's weights (CRM, eq. 5–6).

    Inner norms are warm-started power iterations (estimates, as in the paper's training);
    output rows are exact.  ``state`` carries the vectors between calls.  Only ℓ2 is supported.
    ``through_iterations``: differentiate through this call's iterations too (the reference
    training code's gradient; see :mod:`liplt_cli.lipschitz.power`), not only the last product.
    """
    if norm != 2:
        raise ValueError("training bounds are implemented for the ℓ2 norm")
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'")
    structure = analyse(graph, norm)
    inner = [k for k in structure.targets if k != structure.output]
    mode = LT if method == "liplt" else CUT
    pairs = [(k, s) for k in inner for s in structure.sources_of(mode, k)]
    est, state = power_norms(
        structure, mode, pairs, state=state, iterations=iterations, with_grad=True, through_iterations=through_iterations
    )
    terms = _Terms()
    for (k, s), v in est.items():
        terms.table[(mode, k, s)] = _Term(v, Guarantee.ESTIMATE)
    rows = _output_rows(structure, mode)
    zero = torch.zeros((), dtype=graph.dtype, device=graph.device)
    out_terms = {s: _SpecTerms(zero, zero, pairwise_dual_norms(r, norm)) for s, r in rows.items()}
    if method == "liplt":
        *_, pair = _liplt(structure, terms, out_terms, inner)
    else:
        *_, pair = _naive(structure, terms, out_terms, inner)
    return pair, state
