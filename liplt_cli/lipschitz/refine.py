r"""LipLT with the Theorem 2 refinement (ℓ2): diagonal :math:`T \succeq G^\top G` chosen as SN, AOL or SLL.

One residual layer (eq. 8, loop-transformed as eq. 12): :math:`h(x) = \hat H x + G\psi(Wx)`,
:math:`\psi` elementwise and :math:`r`-Lipschitz, :math:`r = (\beta-\alpha)/2`.  For any diagonal
:math:`T \succeq G^\top G`,

.. math::
   \|G(\psi(Wx)-\psi(Wx'))\|_2^2 \le \sum_i T_{ii} (\psi_i - \psi_i')^2
   \le r^2 \|T^{1/2} W (x - x')\|_2^2,

so :math:`L_{\text{LT-SDP}}(T) = \|\hat H\| + r\,\|W^\top T W\|^{1/2}` (Theorem 2).  Choices of T:

* **SN**: :math:`T = \|G\|^2 I` -- gives back plain LipLT (eq. 13) exactly;
* **AOL**: :math:`T_{ii} = \sum_j |G^\top G|_{ij}` (diagonal dominance);
* **SLL**: :math:`T_{ii} = \sum_j |G^\top G|_{ij}\, q_j / q_i` (Gershgorin with weights q > 0).
  We take :math:`q_i = \rho_i`, the ℓ2 norm of row i of the linear part of the map into the
  neuron (:math:`W` for one layer): that q minimises the Frobenius surrogate
  :math:`\sum_i T_{ii}\rho_i^2 \ge \|T^{1/2}W\|^2` (each pair i, j contributes
  :math:`|M_{ij}|(q_j\rho_i^2/q_i + q_i\rho_j^2/q_j) \ge 2|M_{ij}|\rho_i\rho_j`, with equality at
  :math:`q \propto \rho`).  Zero rows get a tiny positive q.

Multi-layer graphs (eq. 15/16 on a DAG).  Every target (pre-activation or output) satisfies
:math:`y_k = A_{k,0}x_0 + \sum_j A_{k,j}\psi_j(y_j)`.  For each term, with diagonal
:math:`T \succeq A_{k,j}^\top A_{k,j}` and :math:`D = T^{1/2}`,
:math:`\mathrm{Lip}(x_0 \mapsto A_{k,j}\psi_j(y_j)) \le r_j\,\mathrm{Lip}(x_0 \mapsto D y_j)`, and
``Lip(D y_j)`` is bounded by the smaller of two sound bounds:

* :math:`\|D\|\,\hat m_j`, and
* one level of expansion: :math:`\|D A_{j,0}\| + \sum_i r_i \|D A_{j,i}\|\, \hat m_i`,

where :math:`\hat m` are the refined constants of the earlier targets (any Lipschitz constants of
:math:`x_0 \mapsto y_i` may be used).  For the first activation (:math:`y_0 = W_0 x_0`) the expansion
is exactly Theorem 2's :math:`\|W^\top T W\|^{1/2}`.  With :math:`T = T_{SN}`, :math:`D = \|A_{k,j}\| I`
and both bounds equal :math:`\|A_{k,j}\|\,\hat m_j`, so by induction the refined recursion equals
plain LipLT (eq. 16) at every target.  Deeper refinements (re-expanding :math:`D y_i` along every
path, or optimising T by an SDP) are sound too but not done here: their cost grows with the number
of paths.

Scope: ℓ2 only; elementwise activations only (a MaxPool block has no diagonal-T bound); all maps
are made dense in float64, so the graph must be small (``max_neurons``).  Otherwise the result is
*skipped* with the reason.  Every norm is an exact float64 spectral norm with the engine's
relative safety margin, so the numbers are sound upper bounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.lipsdp import SkippedMethod
from liplt_cli.lipschitz.norms import SAFETY
from liplt_cli.lipschitz.options import parse_norm
from liplt_cli.lipschitz.propagation import forward_pass
from liplt_cli.lipschitz.result import Guarantee, MethodBound
from liplt_cli.lipschitz.structure import LT, analyse
from liplt_cli.lipschitz.transform import LoopTransform

T_CHOICES = ("sn", "aol", "sll")
DEFAULT_MAX_NEURONS = 4096


class NotApplicable(Exception):
    """The refinement does not apply to this graph (message says why)."""


@dataclass(frozen=True)
class LoopMaps:
    """Dense maps of the loop-transformed network: ``maps[(target, source)]`` (n_target × n_source).

    ``sources`` = input then activation nodes (topological order); ``pre[j]`` = the node feeding
    activation j (its target); ``radius[j]`` = (β_j − α_j)/2.
    """

    input: str
    output: str
    activations: tuple[str, ...]
    pre: dict[str, str]
    radius: dict[str, float]
    maps: dict[tuple[str, str], torch.Tensor]

    def get(self, target: str, source: str) -> torch.Tensor | None:
        return self.maps.get((target, source))


def loop_maps(graph: LayerGraph, max_neurons: int = DEFAULT_MAX_NEURONS) -> LoopMaps:
    """Push identity matrices from the input and from each activation output through the
    loop-transformed (linear) network and record the maps into every target (float64).

    Unlike the engine, an activation with centre 0 passes (zero) maps here: the map into a target
    that only such activations connect to a source is recorded, as a zero matrix.
    """
    g = graph.detached().to(dtype=torch.float64)
    structure = analyse(g, 2.0, LoopTransform.of(g, 2.0, prune_zero=False))
    blocks = [j for j in structure.nonlinear if j not in structure.activations]
    if blocks:
        node = g.node(blocks[0])
        raise NotApplicable(f"node '{node.name}' ({node.describe()}) is not elementwise; Theorem 2 needs a diagonal T")
    total = sum(structure.dim(a) for a in structure.activations) + structure.dim(structure.input)
    if total > max_neurons:
        raise NotApplicable(f"{total} neurons (with the input) > {max_neurons}: dense maps would be too large")
    maps: dict[tuple[str, str], torch.Tensor] = {}
    for source in structure.sources:
        n = structure.dim(source)
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *g.node(source).out_shape)
        later = {t for t in structure.targets if structure.pos(t) > structure.pos(source)}
        forward_pass(
            structure, LT, [(source, source, eye)], {source: later},
            lambda tag, t, x: maps.__setitem__((t, tag), x.reshape(x.shape[0], -1).T.contiguous()),
        )
    radius = {j: structure.transform.radius_bound(j) for j in structure.activations}
    return LoopMaps(structure.input, structure.output, structure.activations, structure.pre, radius, maps)


# ------------------------------------------------------------------------------ diagonal T
def diagonal_t(gmat: torch.Tensor, choice: str, rho: torch.Tensor | None = None) -> torch.Tensor:
    r"""Diagonal of a T with :math:`T \succeq G^\top G` (``gmat`` is G, rows × n)."""
    if choice == "sn":
        s = _norm(gmat)
        return torch.full((gmat.shape[1],), s**2, dtype=gmat.dtype)
    m = (gmat.T @ gmat).abs()
    if choice == "aol":
        return m.sum(dim=1)
    if choice == "sll":
        if rho is None:
            return m.sum(dim=1)
        q = rho + 1e-12 * float(rho.max().clamp_min(1e-300))
        return (m @ q) / q
    raise ValueError(f"unknown T choice '{choice}' (choose from {', '.join(T_CHOICES)})")


def _top_eig(sym: torch.Tensor) -> float:
    """Largest eigenvalue of a small symmetric float64 matrix (LAPACK through numpy)."""
    return float(np.linalg.eigvalsh(sym.detach().cpu().numpy())[-1])


def _norm(mat: torch.Tensor) -> float:
    """‖A‖₂ (exact, float64) from the Gram matrix of A's smaller side, with the safety margin."""
    if mat.numel() == 0:
        return 0.0
    gram = mat @ mat.T if mat.shape[0] <= mat.shape[1] else mat.T @ mat
    return math.sqrt(max(_top_eig(gram), 0.0)) * (1 + SAFETY)


def _scaled_norm(d: torch.Tensor, gram: torch.Tensor) -> float:
    """‖diag(d) A‖₂ from the Gram matrix A Aᵀ: √λ_max(D A Aᵀ D) (exact, float64)."""
    if gram.numel() == 0:
        return 0.0
    return math.sqrt(max(_top_eig(d[:, None] * gram * d[None, :]), 0.0)) * (1 + SAFETY)


class _Refiner:
    """The refined recursion for one T choice (see module docstring)."""

    def __init__(self, lm: LoopMaps, choice: str):
        self.lm = lm
        self.choice = choice
        self.m: dict[str, float] = {}  # refined constant of x0 ↦ y_pre(j), per activation j
        self.rho: dict[str, torch.Tensor] = {}  # row norms of A_{pre(j),0}
        self._grams: dict[tuple[str, str], torch.Tensor] = {}
        for j in lm.activations:
            self.m[j] = self.target_bound(lm.pre[j])
            a0 = lm.get(lm.pre[j], lm.input)
            self.rho[j] = a0.norm(dim=1) if a0 is not None else None  # type: ignore[assignment]

    def gram(self, target: str, source: str) -> torch.Tensor | None:
        key = (target, source)
        if key not in self._grams:
            a = self.lm.get(target, source)
            if a is None:
                return None
            self._grams[key] = a @ a.T
        return self._grams[key]

    def weighted_lip(self, j: str, d: torch.Tensor) -> float:
        """Bound on Lip(x0 ↦ D y_{pre(j)}) for D = diag(d) ≥ 0."""
        lm = self.lm
        simple = float(d.max()) * (1 + SAFETY) * self.m[j] if d.numel() else 0.0
        k = lm.pre[j]
        g0 = self.gram(k, lm.input)
        expanded = _scaled_norm(d, g0) if g0 is not None else 0.0
        for i in lm.activations:
            gki = self.gram(k, i) if i != j else None
            if gki is None:
                continue
            expanded += lm.radius[i] * _scaled_norm(d, gki) * self.m[i]
        return min(simple, expanded)

    def term(self, gmat: torch.Tensor, j: str) -> float:
        """Bound on Lip(x0 ↦ G ψ_j(y_j)) / r_j."""
        if self.choice == "sn":
            return _norm(gmat) * self.m[j]
        t = diagonal_t(gmat, self.choice, self.rho.get(j))
        return self.weighted_lip(j, t.clamp_min(0).sqrt())

    def spec_bound(self, target: str, row: torch.Tensor | None = None) -> float:
        """Refined Lipschitz bound of x0 ↦ row·y_target (row None: the whole vector y_target)."""
        lm = self.lm
        a0 = lm.get(target, lm.input)
        total = 0.0
        if a0 is not None:
            total += _norm(a0 if row is None else row[None, :] @ a0)
        for j in lm.activations:
            a = lm.get(target, j)
            if a is None or lm.radius[j] == 0:
                continue
            total += lm.radius[j] * self.term(a if row is None else row[None, :] @ a, j)
        return total

    target_bound = spec_bound


def refined_bounds(
    graph: LayerGraph,
    choice: str = "aol",
    norm: float | str = 2.0,
    specs: tuple[str, ...] = ("global", "per_class", "pairwise"),
    max_neurons: int = DEFAULT_MAX_NEURONS,
) -> MethodBound | SkippedMethod:
    """LipLT with the Theorem 2 refinement for T = ``choice`` ∈ {sn, aol, sll} (ℓ2 only).

    Returns a :class:`MethodBound` named ``liplt-<choice>`` (guarantee ``upper bound``), or a
    :class:`SkippedMethod` with the reason (norm ≠ 2, MaxPool blocks, too many neurons).
    """
    name = f"liplt-{choice}"
    if choice not in T_CHOICES:
        raise ValueError(f"unknown T choice '{choice}' (choose from {', '.join(T_CHOICES)})")
    if parse_norm(norm) != 2.0:
        return SkippedMethod(name, "the Theorem 2 refinement is for the ℓ2 norm only")
    start = time.perf_counter()
    try:
        lm = loop_maps(graph, max_neurons=max_neurons)
    except NotApplicable as exc:
        return SkippedMethod(name, str(exc))
    ref = _Refiner(lm, choice)
    k = graph.num_classes
    eye = torch.eye(k, dtype=torch.float64)
    nan = math.nan
    global_ = ref.spec_bound(lm.output) if "global" in specs else nan
    per_class = [ref.spec_bound(lm.output, eye[i]) for i in range(k)] if "per_class" in specs else [nan] * k
    pairwise = [[0.0 if i == j else nan for j in range(k)] for i in range(k)]
    if "pairwise" in specs:
        for i in range(k):
            for j in range(i + 1, k):
                pairwise[i][j] = pairwise[j][i] = ref.spec_bound(lm.output, eye[i] - eye[j])
    note = {
        "sn": "T = ‖G‖²I (equals plain LipLT, eq. 16)",
        "aol": "T_ii = Σ_j |GᵀG|_ij (AOL)",
        "sll": "T_ii = Σ_j |GᵀG|_ij q_j/q_i, q = row norms of the map into each neuron (SLL)",
    }[choice]
    return MethodBound(
        method=name,
        global_=global_,
        per_class=per_class,
        pairwise=pairwise,
        guarantee=Guarantee.UPPER_BOUND,
        term_counts={"exact": len(lm.maps), "upper bound": 0, "estimate": 0},
        seconds=time.perf_counter() - start,
        notes=(f"Theorem 2 refinement, {note}; dense float64 maps, exact spectral norms",),
    )
