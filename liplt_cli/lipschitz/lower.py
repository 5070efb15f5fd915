r"""Empirical *lower* bounds on Lipschitz constants: the largest Jacobian norm found.

For a function :math:`f` that is differentiable at :math:`x`, every Lipschitz constant of
:math:`f` from :math:`\ell_p` to :math:`\ell_p` is at least the operator norm of its Jacobian
:math:`\|J_f(x)\|_{p\to p}`, and for a scalar map :math:`x \mapsto c^\top f(x)` at least the dual
norm :math:`\|J_f(x)^\top c\|_{p^*}` (:math:`1/p + 1/p^* = 1`).  So the largest such norm found
at any point is a **lower bound** on the true constant -- an *estimate* from below, never a
guarantee that an upper bound holds.  Together with a sound upper bound (naive, LipLT, LipSDP)
it gives the interval in which the true constant lies.

Specs (the rows :math:`c`):

* ``global`` -- the logit map :math:`x \mapsto z(x)`: :math:`\|J\|_{2\to2}` = largest singular
  value; :math:`\|J\|_{\infty\to\infty}` = largest row :math:`\ell_1` sum;
  :math:`\|J\|_{1\to1}` = largest column :math:`\ell_1` sum;
* ``per_class`` -- :math:`c = e_i` (the :math:`L_i` of Table 2);
* ``pairwise`` -- :math:`c = e_i - e_j` (the :math:`L_{ij}` of eq. 4).

Search: ``samples`` random points (uniform in a box, or standard normal), then for each spec its
best point is refined by ``ascent_steps`` steps of gradient *ascent* on the norm (double
back-propagation) combined with random perturbations that are kept only when they improve the
norm.  For ReLU networks the Jacobian is piecewise constant, so the gradient of its norm is zero
almost everywhere; the random perturbations (with a step size that shrinks when no candidate
improves) are what moves the search between linear regions there.

Points are drawn from continuous distributions, so with probability one the network is
differentiable at each of them (kinks of ReLU / MaxPool ties have measure zero) and autograd's
Jacobian is the true derivative.  Computation is in float64 by default.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from liplt_cli.errors import ArgumentError
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.norms import dual_exponent
from liplt_cli.lipschitz.result import Guarantee, MethodBound, norm_name

LOWER_BOUND_LABEL = "estimate (lower bound)"
DEFAULT_SAMPLES = 256
DEFAULT_ASCENT_STEPS = 25
DEFAULT_BATCH = 64
DEFAULT_CANDIDATES = 3

Spec = Literal["global", "per_class", "pairwise", "all"]


@dataclass(frozen=True)
class LowerBoundResult:
    """Largest Jacobian norms found (lower bounds on the Lipschitz constants).

    ``global_`` is ``None`` unless the global spec was asked for; ``per_class`` / ``pairwise``
    are ``None`` unless asked for (``pairwise[i][j]`` symmetric, zero diagonal).
    """

    norm: float
    global_: float | None
    per_class: list[float] | None
    pairwise: list[list[float]] | None
    samples: int
    ascent_steps: int
    seconds: float
    domain: str
    label: str = LOWER_BOUND_LABEL
    notes: tuple[str, ...] = field(default=())

    @property
    def num_classes(self) -> int | None:
        if self.per_class is not None:
            return len(self.per_class)
        return len(self.pairwise) if self.pairwise is not None else None

    @property
    def pairwise_mean(self) -> float | None:
        if self.pairwise is None:
            return None
        k = len(self.pairwise)
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        return sum(self.pairwise[i][j] for i, j in pairs) / max(len(pairs), 1)

    def as_method_bound(self, method: str = "lower") -> MethodBound:
        """The result as a :class:`MethodBound` (label ``estimate``; missing specs as NaN)."""
        k = self.num_classes or 0
        nan = float("nan")
        return MethodBound(
            method=method,
            global_=self.global_ if self.global_ is not None else nan,
            per_class=list(self.per_class) if self.per_class is not None else [nan] * k,
            pairwise=[list(r) for r in self.pairwise] if self.pairwise is not None else [[nan] * k for _ in range(k)],
            guarantee=Guarantee.ESTIMATE,
            term_counts={"exact": 0, "upper bound": 0, "estimate": 0},
            seconds=self.seconds,
            iterations=self.ascent_steps,
            notes=(f"{self.label}: largest Jacobian norm over {self.samples} samples ({self.domain}) "
                   f"+ {self.ascent_steps} ascent steps",) + self.notes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": norm_name(self.norm),
            "label": self.label,
            "global": self.global_,
            "per_class": self.per_class,
            "pairwise": self.pairwise,
            "pairwise_mean": self.pairwise_mean,
            "samples": self.samples,
            "ascent_steps": self.ascent_steps,
            "domain": self.domain,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------- norms
def _dual(p: float) -> float:
    if p not in (1.0, 2.0) and not math.isinf(p):
        raise ArgumentError(f"norm must be 2, inf or 1, got {p}")
    return dual_exponent(p)


def _vector_norm(v: torch.Tensor, q: float) -> torch.Tensor:
    return torch.linalg.vector_norm(v, ord=q, dim=-1)


def _operator_norm(jac: torch.Tensor, p: float) -> torch.Tensor:
    """‖J‖_{p→p} of a batch of Jacobians ``(B, K, n)``."""
    if p == 2.0:  # largest singular value from the small K×K Gram matrix J Jᵀ
        gram = jac @ jac.transpose(-1, -2)
        return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()
    if math.isinf(p):
        return jac.abs().sum(-1).amax(-1)
    return jac.abs().sum(-2).amax(-1)


def _spec_rows(k: int, spec: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, list[tuple[str, int, int]]]:
    """Rows c (S × K) for the scalar specs and their labels ("class", i, i) / ("pair", i, j)."""
    rows: list[torch.Tensor] = []
    labels: list[tuple[str, int, int]] = []
    eye = torch.eye(k, dtype=dtype, device=device)
    if spec in ("per_class", "all"):
        for i in range(k):
            rows.append(eye[i])
            labels.append(("class", i, i))
    if spec in ("pairwise", "all"):
        for i in range(k):
            for j in range(i + 1, k):
                rows.append(eye[i] - eye[j])
                labels.append(("pair", i, j))
    if not rows:
        return torch.zeros(0, k, dtype=dtype, device=device), labels
    return torch.stack(rows), labels


# ------------------------------------------------------------------------------------ jacobians
def jacobians(graph: LayerGraph, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Jacobians of the logits at each sample of ``x`` ``(B, *input_shape)``: shape ``(B, K, n)``.

    One forward pass and K vector-Jacobian products (rows e_k), batched over the samples.
    With ``create_graph`` the result is differentiable in ``x`` (for gradient ascent).
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    out = graph.evaluate(x).reshape(x.shape[0], -1)
    rows = []
    for k in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=True, create_graph=create_graph)
        rows.append(g.reshape(x.shape[0], -1))
    return torch.stack(rows, dim=1)


class _Objectives:
    """All requested norms of a batch of Jacobians: column 0 global (if asked), then specs."""

    def __init__(self, p: float, k: int, spec: str, dtype: torch.dtype, device: torch.device):
        self.p = p
        self.q = _dual(p)
        self.with_global = spec in ("global", "all")
        self.rows, self.labels = _spec_rows(k, spec, dtype, device)

    @property
    def count(self) -> int:
        return int(self.with_global) + self.rows.shape[0]

    def __call__(self, jac: torch.Tensor) -> torch.Tensor:
        cols = []
        if self.with_global:
            cols.append(_operator_norm(jac, self.p).unsqueeze(-1))
        if self.rows.shape[0]:
            grads = torch.einsum("sk,bkn->bsn", self.rows, jac)
            cols.append(_vector_norm(grads, self.q))
        return torch.cat(cols, dim=-1)  # (B, count)

    def own(self, jac: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Objective ``which[b]`` of sample b only: ``(B,)`` (cheaper than all of them)."""
        out = jac.new_zeros(jac.shape[0])
        offset = int(self.with_global)
        is_global = which < offset
        if is_global.any():
            out = out.index_put((is_global.nonzero().squeeze(-1),), _operator_norm(jac[is_global], self.p))
        spec = ~is_global
        if spec.any():
            idx = spec.nonzero().squeeze(-1)
            rows = self.rows[which[idx] - offset]  # (b, K)
            grads = torch.einsum("bk,bkn->bn", rows, jac[idx])
            out = out.index_put((idx,), _vector_norm(grads, self.q))
        return out


def _draw(n: int, shape: tuple[int, ...], box: tuple[float, float] | None, gen: torch.Generator, dtype, device) -> torch.Tensor:
    if box is None:
        return torch.randn(n, *shape, generator=gen, dtype=dtype).to(device)
    lo, hi = box
    return (lo + (hi - lo) * torch.rand(n, *shape, generator=gen, dtype=dtype)).to(device)


def empirical_lower_bound(
    graph: LayerGraph,
    norm: float = 2.0,
    spec: Spec = "all",
    samples: int = DEFAULT_SAMPLES,
    ascent_steps: int = DEFAULT_ASCENT_STEPS,
    seed: int = 0,
    box: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = DEFAULT_BATCH,
    candidates: int = DEFAULT_CANDIDATES,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[str, int, int], None] | None = None,
) -> LowerBoundResult:
    r"""Largest Jacobian norm found by sampling then ascent: a lower bound on Lipschitz constants.

    Args:
        graph: the model.
        norm: input (and output) norm p ∈ {2, inf, 1}.
        spec: ``"global"`` (:math:`\|J\|_{p\to p}`), ``"per_class"`` (:math:`\|J^\top e_i\|_{p^*}`),
            ``"pairwise"`` (:math:`\|J^\top (e_i - e_j)\|_{p^*}`) or ``"all"``.
        samples: random starting points (uniform in ``box``, or N(0, I) when ``box`` is None).
        ascent_steps: refinement steps per spec (gradient ascent + kept random perturbations).
        seed: seed of the random generator (results are reproducible).
        box: sampling box ``(lo, hi)`` for every input coordinate, or ``None`` for N(0, 1).
        batch_size: samples per Jacobian batch.
        candidates: random perturbations tried per spec per ascent step.
        dtype: dtype of the search; the reported norms are recomputed in float64 at the best
            points found, so round-off of the search does not enter the numbers.
        progress: called as ``progress(label, done, total)`` after each sample batch and each
            ascent step.

    Returns:
        :class:`LowerBoundResult` labelled ``"estimate (lower bound)"``.
    """
    if spec not in ("global", "per_class", "pairwise", "all"):
        raise ArgumentError(f"unknown spec '{spec}' (choose global, per_class, pairwise or all)")
    p = float(norm)
    _dual(p)
    if samples < 1:
        raise ArgumentError("samples must be at least 1")
    start = time.perf_counter()
    g = graph.detached().to(dtype=dtype)
    device = g.device
    shape = g.input_shape
    k = g.num_classes
    objectives = _Objectives(p, k, spec, dtype, device)
    gen = torch.Generator().manual_seed(seed)

    # 1. sampling: best value and point per objective
    best_val = torch.full((objectives.count,), -1.0, dtype=dtype, device=device)
    best_x = torch.zeros(objectives.count, *shape, dtype=dtype, device=device)
    steps = math.ceil(samples / batch_size) + ascent_steps
    reported = 0
    done = 0
    while done < samples:
        n = min(batch_size, samples - done)
        x = _draw(n, shape, box, gen, dtype, device)
        with torch.enable_grad():
            vals = objectives(jacobians(g, x)).detach()  # (n, S)
        v, idx = vals.max(dim=0)
        better = v > best_val
        best_val = torch.where(better, v, best_val)
        best_x[better] = x[idx[better]].detach()
        done += n
        reported += 1
        if progress is not None:
            progress("sampling", reported, steps)

    # 2. ascent: one point per objective, each scored on its own objective
    scale = torch.full((objectives.count,), 0.1 * (box[1] - box[0]) if box else 0.1, dtype=dtype, device=device)
    cols = torch.arange(objectives.count, device=device)
    flat = math.prod(shape)

    def own_values(x: torch.Tensor, which: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return objectives.own(jacobians(g, x, create_graph=create_graph), which)

    use_gradient = True  # switched off when the norm's gradient is zero (piecewise-linear nets)
    for _ in range(ascent_steps):
        grad = None
        if use_gradient:
            x = best_x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                vals = own_values(x, cols, create_graph=True)
                grad = torch.autograd.grad(vals.sum(), x, allow_unused=True)[0] if vals.requires_grad else None
            if grad is None or not bool(grad.abs().max() > 0):
                use_gradient, grad = False, None
        proposals = []
        if grad is not None:
            gn = grad.reshape(objectives.count, -1).norm(dim=-1).clamp_min(1e-30)
            step = (scale * math.sqrt(flat) / gn).reshape(-1, *([1] * len(shape)))
            proposals.append(best_x + step * grad)
        noise = torch.randn(candidates, objectives.count, *shape, generator=gen, dtype=dtype).to(device)
        proposals.extend(best_x + scale.reshape(-1, *([1] * len(shape))) * noise[c] for c in range(candidates))
        cand = torch.cat(proposals)  # (P·S, *shape), proposal-major
        which = cols.repeat(len(proposals))
        with torch.enable_grad():
            cvals = own_values(cand, which).detach().reshape(len(proposals), objectives.count)
        v, idx = cvals.max(dim=0)
        better = v > best_val
        best_val = torch.where(better, v, best_val)
        chosen = cand.reshape(len(proposals), objectives.count, *shape)[idx, cols]
        best_x = torch.where(better.reshape(-1, *([1] * len(shape))), chosen.detach(), best_x)
        scale = torch.where(better, scale * 1.5, scale * 0.7)
        reported += 1
        if progress is not None:
            progress("ascent", reported, steps)

    # 3. report float64 norms at the best points (each point on its own objective)
    g64 = graph.detached().to(dtype=torch.float64)
    with torch.enable_grad():
        objectives_64 = _Objectives(p, k, spec, torch.float64, device)
        values = objectives_64.own(jacobians(g64, best_x.to(torch.float64)), cols).detach().tolist()
    global_ = values[0] if objectives.with_global else None
    offset = int(objectives.with_global)
    per_class = [0.0] * k if spec in ("per_class", "all") else None
    pairwise = [[0.0] * k for _ in range(k)] if spec in ("pairwise", "all") else None
    for (kind, i, j), val in zip(objectives.labels, values[offset:]):
        if kind == "class":
            per_class[i] = val  # type: ignore[index]
        else:
            pairwise[i][j] = pairwise[j][i] = val  # type: ignore[index]
    domain = f"uniform box [{box[0]:g}, {box[1]:g}]" if box else "N(0, 1)"
    return LowerBoundResult(
        norm=p,
        global_=global_,
        per_class=per_class,
        pairwise=pairwise,
        samples=samples,
        ascent_steps=ascent_steps,
        seconds=time.perf_counter() - start,
        domain=domain,
    )
