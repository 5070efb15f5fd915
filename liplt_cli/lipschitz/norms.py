r"""Operator norms, each with its guarantee label.

Norm conventions for input norm p (the recursion uses q = p everywhere, see DESIGN.md):

* matrix maps :math:`\|A\|_{p\to p}`: ℓ2 the spectral norm, ℓ∞ the largest row abs-sum,
  ℓ1 the largest column abs-sum;
* scalar maps :math:`x \mapsto c^\top A x`: the dual norm :math:`\|A^\top c\|_{p^*}`
  (:math:`p^* = 2, 1, \infty` for :math:`p = 2, \infty, 1`), exact.

Explicit matrices are handled in float64: the spectral norm is the square root of the top
eigenvalue of the Gram matrix on the smaller side (``torch.linalg.eigvalsh``), *exact* up to
round-off, which :data:`SAFETY` covers.  Per-operator closed forms: dense layers by SVD (exact),
affine/reshape/pad/permute (exact), convolutions by the FFT bound of Sedghi et al. (2019) on
the zero-padded grid: the zero-padded convolution is a restriction of a circular convolution on
an :math:`N = n + 2p` grid, whose spectral norm is :math:`\max_\omega
\sigma_{\max}(\hat K(\omega))` -- a sound *upper bound*.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from liplt_cli.graph.linear_ops import Affine, Conv, ConvTranspose, Dense, Pad, Permute, Reshape
from liplt_cli.lipschitz.result import Guarantee

SAFETY = 1e-7
"""Relative margin added to every sound (exact / upper bound) number against float64 round-off."""


def dual_exponent(p: float) -> float:
    if p == 2:
        return 2.0
    if math.isinf(p):
        return 1.0
    if p == 1:
        return math.inf
    return p / (p - 1)


def vector_norm(v: torch.Tensor, q: float) -> torch.Tensor:
    """ℓq norm of each row of ``v`` (flattened per row)."""
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), ord=q, dim=1)


def certified_top_eigenvalue(gram: torch.Tensor, gap: float = 1e-6, iterations: int = 40) -> torch.Tensor:
    """An upper bound on :math:`\\lambda_{\\max}` of a symmetric PSD matrix, within ``gap`` (relative)
    of the true value.

    Block subspace iteration gives a top Ritz value :math:`\\hat\\lambda \\le \\lambda_{\\max}`; a successful
    Cholesky factorisation of :math:`tI - G` with :math:`t = \\hat\\lambda(1+\\text{gap}) + \\delta`
    proves :math:`\\lambda_{\\max} \\le t + \\delta` (:math:`\\delta = 2 (n+1)^2 u\\, \\mathrm{tr}\\,G` bounds the
    factorisation's backward error in float64).  Cholesky costs :math:`n^3/3`, far less than a full
    eigendecomposition; if it fails (power iteration not yet converged) ``eigvalsh`` decides.
    """
    n = gram.shape[0]
    g = gram.to(torch.float64)
    trace = torch.diagonal(g).sum().clamp_min(0.0)
    if float(trace) == 0.0:
        return trace
    delta = 2 * (n + 1) ** 2 * 2.0**-53 * trace
    # cheap float32 block subspace iteration; the float64 Ritz value of the final block is a
    # valid lower bound on λ_max whatever the precision used to find the block.
    b = min(8, n)
    g32 = g.to(torch.float32)
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.linalg.qr(torch.randn(n, b, generator=gen).to(g.device))[0]
    for _ in range(iterations):
        v = torch.linalg.qr(g32 @ v)[0]
    v64 = torch.linalg.qr(v.to(torch.float64))[0]
    rayleigh = torch.linalg.eigvalsh(v64.T @ g @ v64)[-1].clamp_min(0.0)
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    for bump in (gap,):
        t = rayleigh * (1 + bump) + delta
        _, info = torch.linalg.cholesky_ex(t * eye - g)
        if int(info) == 0:  # tI - G + ΔA ⪰ 0 with ‖ΔA‖ ≤ δ, hence λ_max(G) ≤ t + δ
            return t + delta
    top = torch.linalg.eigvalsh(g)[-1].clamp_min(0.0)
    return top * (1 + 1e-12) + delta


def spectral_norm_explicit(matrix: torch.Tensor) -> torch.Tensor:
    """Spectral norm of an explicit matrix via the Gram matrix on its smaller side (exact within a
    certified relative gap of 1e-6, see :func:`certified_top_eigenvalue`).  Differentiable inputs
    are not expected here (sound path only)."""
    m = matrix.reshape(matrix.shape[0], -1)
    if min(m.shape) == 1:
        return torch.linalg.vector_norm(m)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return torch.sqrt(certified_top_eigenvalue(gram))


def matrix_norm_explicit(matrix: torch.Tensor, p: float) -> torch.Tensor:
    """:math:`\\|A\\|_{p\\to p}` of an explicit matrix (rows = outputs), exact."""
    m = matrix.reshape(matrix.shape[0], -1)
    if p == 2:
        return spectral_norm_explicit(m)
    if math.isinf(p):
        return m.abs().sum(dim=1).max()
    if p == 1:
        return m.abs().sum(dim=0).max()
    raise ValueError(f"unsupported norm p={p}")


def row_dual_norms(rows: torch.Tensor, p: float) -> torch.Tensor:
    """:math:`\\|r_i\\|_{p^*}` for each row: the exact norm of the scalar map :math:`x\\mapsto r_i^\\top x`."""
    return vector_norm(rows, dual_exponent(p))


def pairwise_dual_norms(rows: torch.Tensor, p: float) -> torch.Tensor:
    """K×K matrix of :math:`\\|r_i - r_j\\|_{p^*}` (zero diagonal), differentiable.

    ℓ2: from the Gram matrix, :math:`\\|r_i-r_j\\|^2 = G_{ii} + G_{jj} - 2G_{ij}`, one matrix
    product for all pairs, plus :math:`4 d u (G_{ii} + G_{jj})` (u the unit round-off) which
    covers the rounding of the dot products, so the result stays an upper bound.  Other norms:
    from the differences, in blocks of rows (at most ~2^25 entries in memory).
    """
    r = rows.reshape(rows.shape[0], -1)
    k, d = r.shape
    if p == 2:
        gram = r @ r.T
        diag = torch.diagonal(gram)
        total = diag[:, None] + diag[None, :]
        rounding = 4 * d * torch.finfo(r.dtype).eps * total
        squared = (total - 2 * gram + rounding).clamp_min(torch.finfo(r.dtype).tiny)
        off = 1.0 - torch.eye(k, dtype=r.dtype, device=r.device)
        return torch.sqrt(squared) * off
    q = dual_exponent(p)
    block = max(1, (1 << 25) // max(1, k * d))
    parts = [
        torch.linalg.vector_norm(r[i : i + block, None, :] - r[None, :, :], ord=q, dim=2)
        for i in range(0, k, block)
    ]
    return torch.cat(parts, dim=0)


def conv_fft_bound(op: Conv | ConvTranspose) -> torch.Tensor:
    """Upper bound on the ℓ2 norm of a zero-padded (transposed) convolution by the FFT method.

    For 1-d and 2-d convolutions: :math:`\\max_\\omega \\sigma_{\\max}(\\hat K(\\omega))` over the
    :math:`N`-point grid, :math:`N \\ge n + 2p` (no wrap-around reaches a kept output, so the
    convolution is a restriction of the circulant operator).  A stride s is handled exactly for
    the circulant operator by the polyphase decomposition: the strided convolution equals a
    stride-1 convolution of the :math:`s^d` polyphase components of x on the :math:`N/s` grid, with
    an :math:`s^d`-times wider kernel matrix.  For other dimensions the triangle inequality over
    kernel taps, :math:`\\sum_t \\|W_t\\|_2`.
    """
    w = op.weight
    if isinstance(op, ConvTranspose):
        # ConvTranspose = adjoint of the convolution from its output grid to its input grid.
        grid = op.out_shape[1:]
    else:
        grid = op.in_shape[1:]
    dims = w.dim() - 2
    groups = op.groups
    if dims not in (1, 2):
        # triangle inequality over taps; each tap is a shift-and-subsample (norm <= 1) times a
        # block-diagonal channel matrix whose norm is the largest over groups.
        taps = w.detach().to(torch.float64).reshape(groups, w.shape[0] // groups, w.shape[1], -1)
        per_tap = torch.linalg.matrix_norm(taps.permute(3, 0, 1, 2), ord=2)  # (taps, groups)
        return per_tap.max(dim=1).values.sum()
    wd = w.detach().to(torch.float64)
    if any(x != 1 for x in op.dilation):
        # place the taps on the dilated lattice
        shape = list(wd.shape[:2]) + [op.dilation[d] * (wd.shape[2 + d] - 1) + 1 for d in range(dims)]
        dil = wd.new_zeros(shape)
        index = (slice(None), slice(None)) + tuple(slice(None, None, op.dilation[d]) for d in range(dims))
        dil[index] = wd
        wd = dil
    stride = tuple(op.stride)
    sizes = []
    for d in range(dims):
        n = max(grid[d] + 2 * op.padding[d], wd.shape[2 + d])
        sizes.append(-(-n // stride[d]))  # grid of the polyphase components: ceil(n / s)
    if any(x != 1 for x in stride):
        # Polyphase: y[t] = Σ_a W[a] x[s·t + a] = Σ_r Σ_q W[s·q + r] x_r[t + q] with x_r[m] = x[s·m + r],
        # a stride-1 convolution of the s^dims components (an isometric relabelling of x).
        padded = [-(-wd.shape[2 + d] // stride[d]) * stride[d] for d in range(dims)]
        wp = wd.new_zeros((*wd.shape[:2], *padded))
        wp[(slice(None), slice(None)) + tuple(slice(0, wd.shape[2 + d]) for d in range(dims))] = wd
        if dims == 1:
            wp = wp.reshape(wp.shape[0], wp.shape[1], padded[0] // stride[0], stride[0])
            wd = wp.permute(0, 1, 3, 2).reshape(wp.shape[0], -1, padded[0] // stride[0])
        else:
            qh, qw = padded[0] // stride[0], padded[1] // stride[1]
            wp = wp.reshape(wp.shape[0], wp.shape[1], qh, stride[0], qw, stride[1])
            wd = wp.permute(0, 1, 3, 5, 2, 4).reshape(wp.shape[0], -1, qh, qw)
    spectrum = torch.fft.fftn(wd, s=sizes, dim=tuple(range(2, 2 + dims)))
    # spectrum: (out, in/g, *freq) for Conv; (in, out/g, *freq) for ConvTranspose
    a, b = spectrum.shape[0], spectrum.shape[1]
    per_group = a // groups
    best = torch.zeros((), dtype=torch.float64, device=w.device)
    for g in range(groups):
        block = spectrum[g * per_group : (g + 1) * per_group]  # (per_group, b, *freq)
        mats = block.reshape(per_group, b, -1).permute(2, 0, 1)
        if isinstance(op, ConvTranspose):
            mats = mats.transpose(1, 2)
        best = torch.maximum(best, torch.linalg.matrix_norm(mats, ord=2).max())
    return best


def single_op_norm(op, p: float) -> tuple[torch.Tensor, Guarantee]:
    """Norm :math:`\\|A\\|_{p\\to p}` of one linear operator with its guarantee label."""
    if isinstance(op, (Reshape, Permute, Pad)):
        one = torch.ones((), dtype=torch.float64)
        return one, Guarantee.EXACT
    if isinstance(op, Affine):
        return op.scale.detach().to(torch.float64).abs().max(), Guarantee.EXACT
    if isinstance(op, Dense):
        w = op.weight.detach().to(torch.float64)
        return matrix_norm_explicit(w, p), Guarantee.EXACT
    if isinstance(op, (Conv, ConvTranspose)):
        if p == 2:
            return conv_fft_bound(op), Guarantee.UPPER_BOUND
        # ℓ∞ / ℓ1: push ones through |A| (rows) or |A|ᵀ (columns): exact for one operator.
        absolute = replace(op.absolute(), weight=op.weight.detach().abs().to(torch.float64))
        if math.isinf(p):
            ones = torch.ones((1, *op.in_shape), dtype=torch.float64, device=op.weight.device)
            return absolute.linear(ones).max(), Guarantee.EXACT
        ones = torch.ones((1, *op.out_shape), dtype=torch.float64, device=op.weight.device)
        return absolute.adjoint(ones).max(), Guarantee.EXACT
    raise TypeError(f"no norm for operator {type(op).__name__}")
