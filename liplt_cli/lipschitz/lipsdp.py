r"""LipSDP-Neuron (Fazlyab et al. 2019, Theorem 1 of the paper) for feed-forward graphs, ℓ2 only.

For a chain :math:`x_{k+1} = \phi_k(W_k x_k)`, :math:`k = 0..\ell-1`, with output
:math:`z = W_\ell x_\ell`, stack :math:`\mathbf{x} = (x_0, \dots, x_\ell)` and let
:math:`A = [\,\mathrm{blkdiag}(W_0, \dots, W_{\ell-1})\;\; 0\,]`, :math:`B = [\,0\;\; I_n\,]`
(n = number of hidden neurons).  Each neuron's activation is slope-restricted in
:math:`[\alpha_i, \beta_i]`, which gives, for every diagonal :math:`T \succeq 0`, the quadratic
constraint of eq. (7).  If

.. math::
   M(\rho, T) = \begin{bmatrix} A \\ B \end{bmatrix}^{\!\top}
   \begin{bmatrix} -2\,\mathrm{diag}(\alpha\beta) T & \mathrm{diag}(\alpha+\beta) T \\
                   \mathrm{diag}(\alpha+\beta) T & -2T \end{bmatrix}
   \begin{bmatrix} A \\ B \end{bmatrix}
   + \mathrm{diag}(-\rho I_{n_0}, 0, \dots, 0, W_\ell^\top C^\top C W_\ell) \preceq 0

then :math:`\sqrt\rho` bounds the ℓ2 Lipschitz constant of :math:`x \mapsto C z(x)`.  ``C = I``
gives the global constant, ``C = e_i^\top`` the per-class and ``C = (e_i - e_j)^\top`` the pairwise
ones (one SDP per row).  The theorem holds for α < 0 as well (footnote 3 of the paper).

Soundness of the reported number: the SDP is solved with the strict margin
:math:`M \preceq -\varepsilon I`; then, with the solver's T clipped to :math:`T \ge 0`, the
smallest valid :math:`\rho` for that T is recomputed in float64 from the Schur complement
(:math:`\rho = \lambda_{\max}(N_{11} - N_{12} N_{22}^{-1} N_{21})`, valid because
:math:`N_{22} \prec 0` is checked), a relative margin of 1e-8 is added, and the LMI is re-checked
with a float64 eigenvalue computation.  Only a value that passes that check is labelled
``upper bound``; anything else (solver not optimal, check failed) is labelled ``estimate``.

Input-dimension reduction (exact): with the thin SVD :math:`W_0 = U S V^\top`, the network
:math:`f(x) = g(W_0 x)` and :math:`x' \mapsto g(U S x')` have the same ℓ2 Lipschitz constant
(:math:`V^\top` maps onto :math:`\mathbb{R}^r` and :math:`V` is an isometry back), so the SDP
uses :math:`n_0 = \mathrm{rank}(W_0)`.

cvxpy (with Clarabel or SCS) is an optional dependency: ``pip install liplt[lipsdp]``.  When it
is missing, the norm is not 2, the graph is not a plain chain, or it is too large, the result
is *skipped* with a reason.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from liplt_cli.errors import LipltError
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, LinearNode, Node
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.options import parse_norm
from liplt_cli.lipschitz.result import Guarantee, MethodBound

DEFAULT_MAX_NEURONS = 150
DEFAULT_MAX_SPECS = 100
CERTIFICATE_MARGIN = 1e-8
STRICTNESS = 1e-5
# loose solver tolerances are fine: the certificate recomputes the best ρ for the returned T
SOLVER_OPTIONS: dict[str, dict[str, Any]] = {"SCS": {"eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20000}}
# when the certificate fails at those tolerances, the SDP is solved once more with these
RETRY_OPTIONS: dict[str, dict[str, Any]] = {"SCS": {"eps_abs": 1e-8, "eps_rel": 1e-8, "max_iters": 100000}}


class NotApplicable(Exception):
    """The graph is not a feed-forward chain LipSDP handles (message says why)."""


@dataclass(frozen=True)
class FeedForward:
    """A feed-forward chain as dense float64 matrices: ``weights[k]`` is W_k (out × in)."""

    weights: list[np.ndarray]
    alpha: list[float]  # per activation layer
    beta: list[float]
    names: list[str]  # activation node names

    @property
    def hidden(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]


class _Chain(GraphWalk):
    """Reads ``W_0, φ_0, W_1, …, W_ℓ`` off a chain graph: the value at a node is the dense map
    from the last activation (or the input) to it, as a batch of identity columns pushed through."""

    action = "reading the feed-forward chain at"
    passthrough = (LipltError, NotApplicable)

    def __init__(self, graph: LayerGraph, max_entries: int) -> None:
        super().__init__(graph)
        self.max_entries = max_entries
        self.prev = graph.nodes[0].name
        self.weights: list[np.ndarray] = []
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.names: list[str] = []

    def _follow(self, node: Node) -> None:
        if len(node.inputs) != 1 or node.inputs[0] != self.prev:
            raise NotApplicable(f"node '{node.name}' is not part of a plain chain (residual or branching graph)")
        self.prev = node.name

    @staticmethod
    def _identity(shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        return torch.eye(n, dtype=torch.float64).reshape(n, *shape)

    def input(self, node: Node) -> torch.Tensor:
        return self._identity(node.out_shape)

    def linear(self, node: LinearNode, cur: torch.Tensor) -> torch.Tensor:
        self._follow(node)
        out = math.prod(node.out_shape)
        if cur.shape[0] * out > self.max_entries:
            raise NotApplicable(f"node '{node.name}' gives a {out}×{cur.shape[0]} matrix, too large for LipSDP")
        return node.op.linear(cur)

    def activation(self, node: ActivationNode, cur: torch.Tensor) -> torch.Tensor:
        self._follow(node)
        self.weights.append(cur.reshape(cur.shape[0], -1).T.contiguous().numpy())
        self.alpha.append(node.activation.alpha)
        self.beta.append(node.activation.beta)
        self.names.append(node.name)
        return self._identity(node.out_shape)

    def sum(self, node: Node, *_: Any) -> None:
        self._follow(node)
        raise NotApplicable(f"node '{node.name}' ({type(node).__name__}) is not linear or an elementwise activation")

    concat = block = sum


def feedforward_chain(graph: LayerGraph, max_entries: int = 20_000_000) -> FeedForward:
    """Extract ``W_0, φ_0, W_1, …, W_ℓ`` from a chain graph by pushing identities through the ops.

    Raises :class:`NotApplicable` for residual/concat/pooling graphs or too-large matrices.
    """
    g = graph.detached().to(dtype=torch.float64)
    n_in = math.prod(g.input_shape)
    if n_in * n_in > max_entries:
        raise NotApplicable(f"input has {n_in} entries, too many for dense matrices")
    chain = _Chain(g, max_entries).run()
    if chain.prev != g.output:
        raise NotApplicable("the output is not the end of the chain")
    cur = chain.env[g.output]
    chain.weights.append(cur.reshape(cur.shape[0], -1).T.contiguous().numpy())
    return FeedForward(chain.weights, chain.alpha, chain.beta, chain.names)


def _reduce_input(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Replace W_0 (n1 × n0) by U S (n1 × r): same ℓ2 Lipschitz constant (see module docstring)."""
    w0 = weights[0]
    if len(weights) == 1 or w0.shape[1] <= w0.shape[0]:
        return weights
    u, s, _ = np.linalg.svd(w0, full_matrices=False)
    r = int((s > s[0] * 1e-13).sum()) if s.size and s[0] > 0 else 1
    return [u[:, :r] * s[:r]] + weights[1:]


@dataclass(frozen=True)
class _Problem:
    n0: int
    sizes: list[int]
    a: np.ndarray  # (n, n0 + n)
    b: np.ndarray  # (n, n0 + n)
    ab: np.ndarray  # per-neuron α·β
    apb: np.ndarray  # per-neuron α+β
    last: np.ndarray  # W_ℓ (K × n_ℓ)

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def n_matrix(self, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        """N(T) = quadratic-constraint part + output term, i.e. M(ρ, T) + ρ E_0."""
        a, b = self.a, self.b
        cross = a.T @ ((self.apb * t)[:, None] * b)
        m = -2 * a.T @ ((self.ab * t)[:, None] * a) + cross + cross.T - 2 * b.T @ (t[:, None] * b)
        out = c @ self.last
        m[-self.sizes[-1]:, -self.sizes[-1]:] += out.T @ out
        return m


def _problem(ff: FeedForward) -> _Problem:
    weights = _reduce_input(ff.weights)
    n0 = weights[0].shape[1]
    sizes = [w.shape[0] for w in weights[:-1]]
    n = sum(sizes)
    a = np.zeros((n, n0 + n))
    row, col = 0, 0
    widths = [n0] + sizes
    for k, w in enumerate(weights[:-1]):
        a[row:row + w.shape[0], col:col + widths[k]] = w
        row += w.shape[0]
        col += widths[k]
    b = np.hstack([np.zeros((n, n0)), np.eye(n)])
    al = np.concatenate([np.full(s, ff.alpha[k]) for k, s in enumerate(sizes)])
    be = np.concatenate([np.full(s, ff.beta[k]) for k, s in enumerate(sizes)])
    return _Problem(n0, sizes, a, b, al * be, al + be, weights[-1])


@dataclass(frozen=True)
class SpecSolution:
    value: float
    certified: bool
    status: str
    note: str = ""


def _certify(prob: _Problem, t: np.ndarray, c: np.ndarray) -> tuple[float, bool, str]:
    """Smallest ρ valid for this T (Schur complement) + margin, re-checked; returns (√ρ, ok, note)."""
    t = np.clip(t, 0.0, None)
    nm = prob.n_matrix(t, c)
    n0 = prob.n0
    n22 = nm[n0:, n0:]
    lam22 = float(np.linalg.eigvalsh(n22).max()) if n22.size else -1.0
    if lam22 >= 0:
        return math.nan, False, f"hidden block not negative definite (λ_max = {lam22:.3g})"
    schur = nm[:n0, :n0] - nm[:n0, n0:] @ np.linalg.solve(n22, nm[n0:, :n0])
    rho = max(float(np.linalg.eigvalsh((schur + schur.T) / 2).max()), 0.0)
    rho += CERTIFICATE_MARGIN * max(rho, float(np.abs(nm).max()), 1e-30)
    full = nm.copy()
    full[:n0, :n0] -= rho * np.eye(n0)
    lam = float(np.linalg.eigvalsh(full).max())
    if lam > 0:
        return math.sqrt(rho), False, f"float64 re-check failed (λ_max = {lam:.3g})"
    return math.sqrt(rho), True, f"LMI re-checked in float64 (λ_max = {lam:.2g})"


class _Solver:
    """One cvxpy problem per network, re-solved for each spec row (the row enters as a parameter).

    The output term :math:`W_\ell^\top c^\top c W_\ell` is a cvxpy ``Parameter`` placed in the
    last diagonal block, so the problem is compiled once (DPP) and only re-solved per row.
    """

    def __init__(self, prob: _Problem, solver: str):
        import cvxpy as cp

        self.prob = prob
        self.solver = solver
        n = prob.n
        nl = prob.sizes[-1]
        dim = prob.n0 + n
        self.t = cp.Variable(n, nonneg=True)
        self.rho = cp.Variable(nonneg=True)
        self.out = cp.Parameter((nl, nl), PSD=True)
        a, b = prob.a, prob.b
        cross = a.T @ cp.diag(cp.multiply(prob.apb, self.t)) @ b
        m = -2 * (a.T @ cp.diag(cp.multiply(prob.ab, self.t)) @ a) + cross + cross.T - 2 * (b.T @ cp.diag(self.t) @ b)
        e0 = np.zeros((dim, dim))
        e0[: prob.n0, : prob.n0] = np.eye(prob.n0)
        sel = np.zeros((dim, nl))
        sel[-nl:, :] = np.eye(nl)
        # the strict margin is relative to the largest output term of any row (‖W_ℓ‖² · 2)
        scale = max(1.0, 2.0 * float(np.linalg.norm(prob.last, 2)) ** 2)
        lmi = m - self.rho * e0 + sel @ self.out @ sel.T
        self.problem = cp.Problem(cp.Minimize(self.rho), [(lmi + lmi.T) / 2 << -STRICTNESS * scale * np.eye(dim)])

    def __call__(self, c: np.ndarray) -> SpecSolution:
        first = self.solve(c, SOLVER_OPTIONS.get(self.solver, {}))
        if first.certified or self.solver not in RETRY_OPTIONS:
            return first
        second = self.solve(c, RETRY_OPTIONS[self.solver])
        return second if second.certified or not math.isfinite(first.value) else first

    def solve(self, c: np.ndarray, options: dict[str, Any]) -> SpecSolution:
        out = c @ self.prob.last
        self.out.value = (out.T @ out + (out.T @ out).T) / 2
        try:
            self.problem.solve(solver=self.solver, **options)
        except Exception as exc:  # solver failure: reported, not raised
            return SpecSolution(math.nan, False, "error", f"{self.solver} failed: {exc}")
        status = str(self.problem.status)
        if self.t.value is None or self.rho.value is None:
            return SpecSolution(math.nan, False, status, f"{self.solver} returned no solution ({status})")
        value, ok, note = _certify(self.prob, np.asarray(self.t.value, dtype=np.float64), c)
        if not math.isfinite(value):
            return SpecSolution(math.sqrt(max(float(self.rho.value), 0.0)), False, status, note)
        return SpecSolution(value, ok and status in ("optimal", "optimal_inaccurate"), status, note)


def cvxpy_available() -> bool:
    return importlib.util.find_spec("cvxpy") is not None


def _pick_solver() -> str | None:
    import cvxpy as cp

    installed = cp.installed_solvers()
    for name in ("SCS", "CLARABEL"):
        if name in installed:
            return name
    return None


def lipsdp_bounds(
    graph: LayerGraph,
    norm: float | str = 2.0,
    specs: tuple[str, ...] = ("global", "per_class", "pairwise"),
    max_neurons: int = DEFAULT_MAX_NEURONS,
    solver: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MethodBound | SkippedMethod:
    """LipSDP-Neuron upper bounds (ℓ2): global, per-class and pairwise, one SDP per spec row.

    ``progress(label, done, total)`` is called after each SDP.

    Returns a :class:`MethodBound` (method ``"lipsdp"``) or a :class:`SkippedMethod` saying why
    it did not run (cvxpy missing, norm ≠ 2, not a feed-forward chain, too many neurons).
    """
    start = time.perf_counter()
    if parse_norm(norm) != 2.0:
        return SkippedMethod("lipsdp", "LipSDP bounds the ℓ2 norm only")
    if not cvxpy_available():
        return SkippedMethod("lipsdp", "cvxpy is not installed (pip install 'liplt[lipsdp]')")
    try:
        ff = feedforward_chain(graph)
    except NotApplicable as exc:
        return SkippedMethod("lipsdp", f"not a feed-forward chain: {exc}")
    if not ff.names:
        return SkippedMethod("lipsdp", "the model has no activation (a linear model's constant is exact elsewhere)")
    prob = _problem(ff)
    if prob.n0 + prob.n > max_neurons:
        return SkippedMethod(
            "lipsdp",
            f"too large: {prob.n} hidden neurons + {prob.n0} input directions (the rank of the first layer, which "
            f"reads {ff.weights[0].shape[1]} inputs) = {prob.n + prob.n0} > {max_neurons} (SDP size grows as its square)",
        )
    chosen = solver or _pick_solver()
    if chosen is None:
        return SkippedMethod("lipsdp", "no SDP solver for cvxpy (install clarabel or scs)")
    k = prob.last.shape[0]
    rows: list[tuple[str, int, int, np.ndarray]] = []
    eye = np.eye(k)
    if "global" in specs:
        rows.append(("global", 0, 0, eye))
    if "per_class" in specs:
        rows.extend(("class", i, i, eye[i : i + 1]) for i in range(k))
    if "pairwise" in specs:
        rows.extend(("pair", i, j, eye[i : i + 1] - eye[j : j + 1]) for i in range(k) for j in range(i + 1, k))
    if len(rows) > DEFAULT_MAX_SPECS + 1 + k:
        return SkippedMethod("lipsdp", f"{len(rows)} SDPs (one per class pair) are too many; use fewer classes")
    nan = math.nan
    global_ = nan
    per_class = [nan] * k
    pairwise = [[0.0 if i == j else nan for j in range(k)] for i in range(k)]
    certified = 0
    notes: list[str] = []
    solve = _Solver(prob, chosen)
    for done, (kind, i, j, c) in enumerate(rows, start=1):
        sol = solve(c)
        if progress is not None:
            progress("SDPs", done, len(rows))
        certified += sol.certified
        if not sol.certified and sol.note:
            notes.append(f"{kind} {i},{j}: {sol.note} (status {sol.status})")
        if kind == "global":
            global_ = sol.value
        elif kind == "class":
            per_class[i] = sol.value
        else:
            pairwise[i][j] = pairwise[j][i] = sol.value
    uncertified = len(rows) - certified
    guarantee = Guarantee.UPPER_BOUND if uncertified == 0 else Guarantee.ESTIMATE
    notes.insert(
        0,
        f"LipSDP-Neuron via cvxpy/{chosen}: {len(rows)} SDPs, {prob.n} neurons, input reduced to "
        f"rank {prob.n0}; each √ρ re-certified in float64 with relative margin {CERTIFICATE_MARGIN:g}",
    )
    return MethodBound(
        method="lipsdp",
        global_=global_,
        per_class=per_class,
        pairwise=pairwise,
        guarantee=guarantee,
        term_counts={"exact": 0, "upper bound": certified, "estimate": uncertified},
        seconds=time.perf_counter() - start,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class SkippedMethod:
    """A method that did not run on this model, with the reason."""

    method: str
    reason: str
    skipped: bool = field(default=True, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "skipped": True, "reason": self.reason}
