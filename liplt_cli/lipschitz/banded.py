r"""Block-banded symmetric matrices: layout, Cholesky factorisation and products.

The Gram matrix of a map between convolutional feature maps, taken on a node of shape
:math:`(C, H, \dots)`, couples two coordinates only when their spatial positions are close: ordered
by the *first spatial axis* (block :math:`h` holds every coordinate whose first spatial index is
:math:`h`, i.e. :math:`m = C \cdot \prod_{\text{other axes}}` coordinates), it is block-banded with
a small block bandwidth :math:`r`.  Its Cholesky factor is block-banded with the same lower
bandwidth (no fill-in outside the band), which brings the cost of a factorisation from
:math:`n^3/3` to about :math:`n_b (r+1)^2 m^3` multiply-adds for :math:`n_b = n/m` blocks.

Nothing here is approximate: the band is *read off the matrix* (:meth:`BandLayout.of`, entries
outside it are exactly zero), and the routines only skip products of blocks that are zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BandLayout:
    """Coordinates of a node of shape ``shape`` regrouped by the first spatial axis.

    ``shape``: the node's shape; ``block``: coordinates per block; ``blocks``: number of blocks;
    ``width``: the block bandwidth (blocks ``i``, ``j`` with ``|i - j| > width`` are zero).
    A node without spatial axes is one block (a dense matrix).
    """

    shape: tuple[int, ...]
    block: int
    blocks: int
    width: int

    @staticmethod
    def of(matrix: torch.Tensor, shape: tuple[int, ...]) -> "BandLayout":
        """The layout of ``shape`` and the smallest block bandwidth that holds every nonzero of
        the symmetric ``matrix`` (in the node's own, channel-first, coordinate order)."""
        n = math.prod(shape)
        if matrix.shape != (n, n):
            raise ValueError(f"matrix of shape {tuple(matrix.shape)} does not match a node of {n} coordinates")
        if len(shape) < 2 or shape[1] == 1:
            return BandLayout(shape, n, 1, 0)
        channels, rows = shape[0], shape[1]
        rest = n // (channels * rows)
        nonzero = matrix.reshape(channels, rows, rest, channels, rows, rest).ne(0).any(dim=5).any(dim=3)
        nonzero = nonzero.any(dim=2).any(dim=0)  # (rows, rows)
        i, j = torch.nonzero(nonzero, as_tuple=True)
        width = int((i - j).abs().max()) if i.numel() else 0
        return BandLayout(shape, n // rows, rows, width)

    def with_width(self, width: int) -> "BandLayout":
        return BandLayout(self.shape, self.block, self.blocks, min(width, self.blocks - 1))

    def permuted(self, matrix: torch.Tensor) -> torch.Tensor:
        """``matrix`` (node order) in block order (a copy)."""
        if self.blocks == 1:
            return matrix.clone()
        n = matrix.shape[0]
        channels, rows = self.shape[0], self.shape[1]
        rest = n // (channels * rows)
        six = matrix.reshape(channels, rows, rest, channels, rows, rest)
        return six.permute(1, 0, 2, 4, 3, 5).reshape(n, n).contiguous()

    def vector(self, v: torch.Tensor) -> torch.Tensor:
        """A flat vector (node order) in block order."""
        if self.blocks == 1:
            return v
        channels, rows = self.shape[0], self.shape[1]
        return v.reshape(channels, rows, -1).permute(1, 0, 2).reshape(-1)

    def unvector(self, v: torch.Tensor) -> torch.Tensor:
        """A flat vector in block order back in node order."""
        if self.blocks == 1:
            return v
        channels, rows = self.shape[0], self.shape[1]
        return v.reshape(rows, channels, -1).permute(1, 0, 2).reshape(-1)

    def cholesky_macs(self, width: int | None = None) -> float:
        """Multiply-adds of :func:`banded_cholesky` with block bandwidth ``width``."""
        return cholesky_macs(self.blocks, self.block, self.width if width is None else width)

    def _span(self, i: int) -> slice:
        return slice(i * self.block, (i + 1) * self.block)


def cholesky_macs(blocks: int, block: int, width: int) -> float:
    """Multiply-adds of a block-banded Cholesky factorisation (``blocks`` blocks of ``block``)."""
    w = min(width, blocks - 1)
    total = 0.0
    for i in range(blocks):
        left = min(i, w)
        panel = min(blocks - 1 - i, w)
        total += 1 / 3 + left + panel * (left + 0.5)
    return total * float(block) ** 3


def congruence_macs(blocks: int, block: int, k_width: int, l_width: int) -> float:
    """Multiply-adds of :func:`banded_congruence`."""
    nb, wk, wl = blocks, min(k_width, blocks - 1), min(l_width, blocks - 1)
    width = min(wk + 2 * wl, nb - 1)
    x_blocks: set[tuple[int, int]] = set()
    products = 0
    for i in range(nb):
        for j in range(max(0, i - width), i + 1):
            for k in range(i, min(nb - 1, i + wl) + 1):
                x_blocks.add((k, j))
                products += 1
    for k, j in x_blocks:
        products += max(0, min(k + wk, j + wl, nb - 1) - max(k - wk, j) + 1)
    return products * float(block) ** 3


def banded_cholesky(matrix: torch.Tensor, layout: BandLayout, width: int) -> torch.Tensor | None:
    r"""Lower Cholesky factor :math:`L` (:math:`LL^\top = A`) of a symmetric matrix in block order
    whose blocks vanish beyond block bandwidth ``width``; ``None`` if :math:`A` is not positive
    definite (a pivot block fails to factorise).

    Right-looking block algorithm restricted to the band: block row :math:`i` only meets block
    columns :math:`i - w, \dots, i`, because :math:`L` keeps the lower bandwidth of :math:`A`.
    It performs the same operations as a dense Cholesky minus products of zero blocks, so the
    classical backward-error bound applies: :math:`\tilde L \tilde L^\top = A + \Delta A` with
    :math:`|\Delta A| \le \gamma_{n+1} |\tilde L| |\tilde L^\top|`.
    """
    m, nb = layout.block, layout.blocks
    w = min(width, nb - 1)
    lower = torch.zeros_like(matrix)
    for i in range(nb):
        rows = layout._span(i)
        lo = max(0, i - w)
        left = slice(lo * m, i * m)
        diag = matrix[rows, rows]
        if i > lo:
            diag = diag - lower[rows, left] @ lower[rows, left].T
        factor, info = torch.linalg.cholesky_ex(diag)
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            return None
        lower[rows, rows] = factor
        hi = min(nb, i + w + 1)
        if hi > i + 1:
            below = slice((i + 1) * m, hi * m)
            panel = matrix[below, rows]
            if i > lo:
                panel = panel - lower[below, left] @ lower[rows, left].T
            # panel · factor^{-T}:  solve factor · X^T = panel^T
            lower[below, rows] = torch.linalg.solve_triangular(factor, panel.T, upper=False).T
    return lower


def banded_product(a: torch.Tensor, a_band: tuple[int, int], b: torch.Tensor, b_band: tuple[int, int],
                   layout: BandLayout) -> tuple[torch.Tensor, tuple[int, int]]:
    """``a @ b`` for block-banded ``a``, ``b`` in block order, skipping zero blocks.

    A band ``(lower, upper)`` says block ``(i, j)`` vanishes unless ``-upper <= i - j <= lower``.
    Returns the product and its band ``(la + lb, ua + ub)``.
    """
    m, nb = layout.block, layout.blocks
    (la, ua), (lb, ub) = a_band, b_band
    out = torch.zeros_like(a)
    lc, uc = min(la + lb, nb - 1), min(ua + ub, nb - 1)
    for i in range(nb):
        rows = layout._span(i)
        # a[i, k] needs i - la <= k <= i + ua
        k_lo, k_hi = max(0, i - la), min(nb - 1, i + ua)
        j_lo, j_hi = max(0, i - lc), min(nb - 1, i + uc)
        cols = slice(j_lo * m, (j_hi + 1) * m)
        inner = slice(k_lo * m, (k_hi + 1) * m)
        out[rows, cols] = a[rows, inner] @ b[inner, cols]
    return out, (lc, uc)


def banded_matvec(a: torch.Tensor, band: tuple[int, int], layout: BandLayout, v: torch.Tensor) -> torch.Tensor:
    """``a @ v`` for a block-banded ``a`` (block order, band ``(lower, upper)`` as in
    :func:`banded_product`) and vectors ``v`` of shape ``(n,)`` or ``(n, b)``, reading the band only."""
    m, nb = layout.block, layout.blocks
    lower, upper = band
    out = torch.empty_like(v)
    for i in range(nb):
        rows = layout._span(i)
        inner = slice(max(0, i - lower) * m, (min(nb - 1, i + upper) + 1) * m)
        out[rows] = a[rows, inner] @ v[inner]
    return out


def banded_congruence(g: torch.Tensor, g_width: int, lower: torch.Tensor, l_width: int,
                      layout: BandLayout) -> tuple[torch.Tensor, int]:
    r""":math:`M = L^\top G L` for a symmetric block-banded ``g`` (bandwidth ``g_width``) and a
    block lower-banded ``lower`` (bandwidth ``l_width``), both in block order; returns ``M`` and
    its bandwidth :math:`w_G + 2 w_L`.

    Only the blocks of :math:`X = GL` that :math:`M`'s lower band needs and the lower band of
    :math:`M` are multiplied; the upper band is the transpose of the lower one.
    """
    m, nb = layout.block, layout.blocks
    width = min(g_width + 2 * l_width, nb - 1)

    def blk(a: torch.Tensor, i: int, j: int) -> torch.Tensor:
        return a[i * m : (i + 1) * m, j * m : (j + 1) * m]

    x_cache: dict[tuple[int, int], torch.Tensor] = {}

    def x_block(k: int, j: int) -> torch.Tensor | None:
        if (k, j) not in x_cache:
            qs = range(max(k - g_width, j), min(k + g_width, j + l_width, nb - 1) + 1)
            acc = None
            for q in qs:
                term = blk(g, k, q) @ blk(lower, q, j)
                acc = term if acc is None else acc + term
            x_cache[(k, j)] = acc
        return x_cache[(k, j)]

    out = torch.zeros_like(g)
    for i in range(nb):
        for j in range(max(0, i - width), i + 1):
            acc = None
            for k in range(i, min(nb - 1, i + l_width) + 1):
                x = x_block(k, j)
                if x is None:
                    continue
                term = blk(lower, k, i).T @ x
                acc = term if acc is None else acc + term
            if acc is not None:
                if i == j:
                    acc = 0.5 * (acc + acc.T)
                blk(out, i, j).copy_(acc)
                if i != j:
                    blk(out, j, i).copy_(acc.T)
        for key in [key for key in x_cache if key[1] < i - width]:
            del x_cache[key]
    return out, width
