r"""Norms of many small per-sample matrices at once (the local recursion's terms).

A local term is the norm of a matrix :math:`M^{(s)}` per sample s whose rows are scattered in a
ragged batch: ``rows`` ``(R, d)`` with ``samples`` ``(R,)`` naming the sample of each row.

* :func:`row_dual_norms` -- :math:`\|a\|_{p^*}` of each row (exact: the norm of the scalar map
  :math:`v \mapsto a^\top v`);
* :func:`matrix_norms` -- :math:`\|M^{(s)}\|_{p\to p}` per sample: ℓ∞ the largest row abs-sum,
  ℓ1 the largest column abs-sum (both exact), ℓ2 the spectral norm from the Gram matrix on the
  smaller side with a *certified* top eigenvalue (:func:`certified_top_eigenvalues`, the
  batched form of the engine's :func:`~liplt_cli.lipschitz.norms.certified_top_eigenvalue`),
  labelled exact; when the Gram matrices would cost more than ``budget`` flops per sample, the
  sound upper bound :math:`\min(\|M\|_F, \sqrt{\|M\|_1 \|M\|_\infty})` (Riesz–Thorin), labelled
  upper bound.

A batch of one sample goes through the engine's own routines (:func:`matrix_norm_explicit`), so
with one sample and the global slopes the local numbers are the engine's, bit for bit.
"""

from __future__ import annotations

import math

import torch

from liplt_cli.lipschitz.norms import dual_exponent, matrix_norm_explicit
from liplt_cli.lipschitz.result import Guarantee

_U = 2.0**-53


def row_dual_norms(rows: torch.Tensor, p: float) -> torch.Tensor:
    """:math:`\\|a_r\\|_{p^*}` of every row of ``rows`` ``(R, ...)`` (flattened per row)."""
    return torch.linalg.vector_norm(rows.reshape(rows.shape[0], -1), ord=dual_exponent(p), dim=1)


def certified_top_eigenvalues(gram: torch.Tensor) -> torch.Tensor:
    r"""Upper bounds on :math:`\lambda_{\max}` of a batch of symmetric PSD matrices ``(S, n, n)``.

    ``eigvalsh`` gives :math:`\hat\lambda`; a successful Cholesky factorisation of
    :math:`tI - G`, :math:`t = \hat\lambda(1 + 10^{-6}) + \delta`, proves
    :math:`\lambda_{\max} \le t + \delta` (:math:`\delta = 2(n+1)^2 u\,\mathrm{tr}\,G` bounds the
    factorisation's backward error in float64), as in the engine's single-matrix routine.  Where
    the factorisation fails, :math:`\hat\lambda(1 + 10^{-12}) + \delta` (the engine's fallback).
    """
    n = gram.shape[-1]
    g = gram.to(torch.float64)
    trace = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1).clamp_min(0.0)
    delta = 2 * (n + 1) ** 2 * _U * trace
    top = torch.linalg.eigvalsh(g)[..., -1].clamp_min(0.0)
    t = top * (1 + 1e-6) + delta
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    _, info = torch.linalg.cholesky_ex(t[..., None, None] * eye - g)
    proven = t + delta
    fallback = top * (1 + 1e-12) + delta
    return torch.where(trace == 0, trace, torch.where(info == 0, proven, fallback))


def _padded(rows: torch.Tensor, samples: torch.Tensor, count: int) -> torch.Tensor:
    """Rows gathered per sample into ``(count, Umax, d)``, zero rows as padding (norms unchanged)."""
    d = rows.shape[1]
    if rows.shape[0] == 0:
        return rows.new_zeros((count, 0, d))
    order = torch.argsort(samples, stable=True)
    s_sorted = samples[order]
    sizes = torch.bincount(s_sorted, minlength=count)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(s_sorted.numel(), device=rows.device) - starts[s_sorted]
    out = rows.new_zeros((count, int(sizes.max()), d))
    out[s_sorted, slot] = rows[order]
    return out


def matrix_norms(
    rows: torch.Tensor, samples: torch.Tensor, count: int, p: float, budget: float = math.inf
) -> tuple[torch.Tensor, Guarantee]:
    """:math:`\\|M^{(s)}\\|_{p\\to p}` for s = 0 … count−1 (0 for a sample without rows) and the label.

    ``rows`` ``(R, d)``: the rows of all matrices; ``samples`` ``(R,)``: the sample of each row.
    ``budget``: largest ``min(U, d)² · max(U, d)`` per sample for the exact ℓ2 norm.
    """
    rows = rows.reshape(rows.shape[0], -1)
    small = float(min(rows.shape)) ** 2 * max(rows.shape) <= budget
    if count == 1 and rows.shape[0] > 0 and (p != 2 or small):  # the engine's own routine, bit for bit
        return matrix_norm_explicit(rows, p).reshape(1), Guarantee.EXACT
    zeros = rows.new_zeros(count)
    if rows.shape[0] == 0:
        return zeros, Guarantee.EXACT
    if math.isinf(p):
        sums = rows.abs().sum(dim=1)
        return zeros.scatter_reduce(0, samples, sums, reduce="amax", include_self=True), Guarantee.EXACT
    if p == 1:
        cols = rows.new_zeros((count, rows.shape[1])).index_add_(0, samples, rows.abs())
        return cols.max(dim=1).values, Guarantee.EXACT
    padded = _padded(rows, samples, count)
    u, d = padded.shape[1], padded.shape[2]
    if float(min(u, d)) ** 2 * max(u, d) <= budget:
        gram = padded @ padded.transpose(1, 2) if u <= d else padded.transpose(1, 2) @ padded
        return torch.sqrt(certified_top_eigenvalues(gram)), Guarantee.EXACT
    frob = torch.linalg.vector_norm(padded, dim=(1, 2))
    one = padded.abs().sum(dim=1).max(dim=1).values
    inf = padded.abs().sum(dim=2).max(dim=1).values
    return torch.minimum(frob, torch.sqrt(one * inf)), Guarantee.UPPER_BOUND
