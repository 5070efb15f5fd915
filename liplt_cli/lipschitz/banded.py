r"""Block-banded symmetric matrices: layout, Cholesky factorisation, congruence and products.

The Gram matrix of a map between convolutional feature maps, taken on a node of shape
:math:`(C, H, \dots)`, couples two coordinates only when their spatial positions are close: ordered
by the *first spatial axis* (block :math:`h` holds every coordinate whose first spatial index is
:math:`h`, i.e. :math:`m = C \cdot \prod_{\text{other axes}}` coordinates), it is block-banded with
a small block bandwidth :math:`w`.  Its Cholesky factor is block lower-banded with the same
bandwidth (no fill-in outside the band), which brings the cost of a factorisation from
:math:`n^3/3` to about :math:`n_b (w+1)^2 m^3` multiply-adds for :math:`n_b = n/m` blocks.

Matrices are held as their blocks (:class:`Band`): only the lower band of a symmetric matrix, only
the band of a triangular factor, each block contiguous.  Nothing here is approximate: the band is
*read off the matrix* (:meth:`BandLayout.of`: entries outside it are exactly zero), and the
routines only skip products of blocks that are zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BandLayout:
    """Coordinates of a node of shape ``shape`` regrouped by the first spatial axis.

    ``block``: coordinates per block; ``blocks``: number of blocks; ``width``: the block bandwidth
    (blocks ``i``, ``j`` with ``|i - j| > width`` are zero).  A node without spatial axes is one
    block (a dense matrix).
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
            return BandLayout(tuple(shape), n, 1, 0)
        channels, rows = shape[0], shape[1]
        rest = n // (channels * rows)
        nonzero = matrix.reshape(channels, rows, rest, channels, rows, rest).ne(0)
        nonzero = nonzero.any(dim=5).any(dim=3).any(dim=2).any(dim=0)  # (rows, rows)
        i, j = torch.nonzero(nonzero, as_tuple=True)
        width = int((i - j).abs().max()) if i.numel() else 0
        return BandLayout(tuple(shape), n // rows, rows, width)

    def with_width(self, width: int) -> "BandLayout":
        return BandLayout(self.shape, self.block, self.blocks, min(width, self.blocks - 1))

    def _split(self) -> tuple[int, int, int]:
        channels, rows = self.shape[0], self.blocks
        return channels, rows, self.block // channels

    def vector(self, v: torch.Tensor) -> torch.Tensor:
        """A flat vector (node order) in block order."""
        if self.blocks == 1:
            return v
        channels, rows, rest = self._split()
        return v.reshape(channels, rows, rest).permute(1, 0, 2).reshape(-1)

    def unvector(self, v: torch.Tensor) -> torch.Tensor:
        """A flat vector in block order back in node order."""
        if self.blocks == 1:
            return v
        channels, rows, rest = self._split()
        return v.reshape(rows, channels, rest).permute(1, 0, 2).reshape(-1)

    def band(self, matrix: torch.Tensor, width: int | None = None) -> "Band":
        """The lower band (blocks ``(i, j)``, ``0 <= i - j <= width``) of a symmetric ``matrix``
        given in node order, each block a contiguous copy."""
        w = min(self.width if width is None else width, self.blocks - 1)
        if self.blocks == 1:
            return Band(self.with_width(0), {(0, 0): matrix.clone()})
        channels, rows, rest = self._split()
        six = matrix.reshape(channels, rows, rest, channels, rows, rest)
        blocks = {}
        for i in range(rows):
            for j in range(max(0, i - w), i + 1):
                blocks[(i, j)] = six[:, i, :, :, j, :].reshape(self.block, self.block).clone()
        return Band(self.with_width(w), blocks)


@dataclass
class Band:
    """A block-banded matrix held as its blocks ``(i, j) -> (m, m)`` with ``0 <= i - j <= width``:
    the lower band of a symmetric matrix, or a block lower-triangular factor (see ``lower``)."""

    layout: BandLayout
    blocks: dict[tuple[int, int], torch.Tensor]

    @property
    def width(self) -> int:
        return self.layout.width

    def get(self, i: int, j: int) -> torch.Tensor | None:
        return self.blocks.get((i, j))

    def shifted(self, t: float, scale: float = 1.0) -> "Band":
        """``scale · A + t I`` (a copy)."""
        out = {}
        for (i, j), b in self.blocks.items():
            c = b * scale if scale != 1.0 else b.clone()
            if i == j:
                torch.diagonal(c).add_(t)
            out[(i, j)] = c
        return Band(self.layout, out)

    def scaled(self, d: torch.Tensor) -> "Band":
        """:math:`DAD` for the diagonal :math:`D` = ``d`` (a flat vector in block order)."""
        m = self.layout.block
        return Band(self.layout, {
            (i, j): b * d[i * m : (i + 1) * m, None] * d[None, j * m : (j + 1) * m]
            for (i, j), b in self.blocks.items()
        })

    def diagonal(self) -> torch.Tensor:
        return torch.cat([torch.diagonal(self.blocks[(i, i)]) for i in range(self.layout.blocks)])

    def abs_row_sums(self) -> torch.Tensor:
        """Row sums of :math:`|A|` of the symmetric matrix (both triangles)."""
        m, nb = self.layout.block, self.layout.blocks
        out = torch.zeros(m * nb, dtype=self.blocks[(0, 0)].dtype, device=self.blocks[(0, 0)].device)
        for (i, j), b in self.blocks.items():
            a = b.abs()
            out[i * m : (i + 1) * m] += a.sum(dim=1)
            if i != j:
                out[j * m : (j + 1) * m] += a.sum(dim=0)
        return out

    def squared_norm(self) -> float:
        """Squared Frobenius norm of the stored blocks (of a triangular factor)."""
        return float(sum(float((b * b).sum()) for b in self.blocks.values()))

    def symmetric_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`Av` for the symmetric matrix whose lower band this is (``v`` in block order)."""
        m = self.layout.block
        out = torch.zeros_like(v)
        for (i, j), b in self.blocks.items():
            out[i * m : (i + 1) * m] += b @ v[j * m : (j + 1) * m]
            if i != j:
                out[j * m : (j + 1) * m] += b.T @ v[i * m : (i + 1) * m]
        return out

    def lower_matvec(self, v: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """:math:`Lv` (or :math:`L^\\top v`) for the block lower-triangular matrix this is."""
        m = self.layout.block
        out = torch.zeros_like(v)
        for (i, j), b in self.blocks.items():
            if transpose:
                out[j * m : (j + 1) * m] += b.T @ v[i * m : (i + 1) * m]
            else:
                out[i * m : (i + 1) * m] += b @ v[j * m : (j + 1) * m]
        return out


def cholesky_macs(blocks: int, block: int, width: int) -> float:
    """Multiply-adds of :func:`banded_cholesky` (``blocks`` blocks of ``block``, bandwidth ``width``)."""
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


def banded_cholesky(a: Band) -> Band | None:
    r"""Block lower Cholesky factor :math:`L` (:math:`LL^\top = A`) of the symmetric matrix whose
    lower band is ``a``; ``None`` if :math:`A` is not positive definite (a pivot block fails).

    Right-looking block algorithm restricted to the band: block row :math:`i` only meets block
    columns :math:`i - w, \dots, i`, because :math:`L` keeps the lower bandwidth of :math:`A`.
    It performs the operations of a dense Cholesky minus products of zero blocks, so the classical
    backward-error bound applies: :math:`\tilde L \tilde L^\top = A + \Delta A` with
    :math:`|\Delta A| \le \gamma_{n+1} |\tilde L| |\tilde L^\top|` (up to the constant of the blocked
    variant).
    """
    nb, w = a.layout.blocks, a.width
    lower: dict[tuple[int, int], torch.Tensor] = {}
    for i in range(nb):
        diag = a.blocks[(i, i)]
        for k in range(max(0, i - w), i):
            diag = diag - lower[(i, k)] @ lower[(i, k)].T
        factor, info = torch.linalg.cholesky_ex(diag)
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            return None
        lower[(i, i)] = factor
        for j in range(i + 1, min(nb, i + w + 1)):
            panel = a.blocks.get((j, i))
            if panel is None:
                continue
            for k in range(max(0, j - w), i):
                panel = panel - lower[(j, k)] @ lower[(i, k)].T
            # panel · factor^{-T}:  solve factor · X^T = panel^T
            lower[(j, i)] = torch.linalg.solve_triangular(factor, panel.T, upper=False).T
    return Band(a.layout, lower)


def banded_congruence(k: Band, lower: Band) -> Band:
    r"""The lower band of :math:`M = L^\top K L` for a symmetric block-banded :math:`K` (lower band
    ``k``) and a block lower-banded :math:`L`; bandwidth :math:`w_K + 2 w_L`.

    Only the blocks of :math:`X = KL` that :math:`M`'s lower band needs are formed, each once.
    """
    nb = k.layout.blocks
    wk, wl = k.width, lower.width
    width = min(wk + 2 * wl, nb - 1)

    def k_block(a: int, b: int) -> torch.Tensor | None:
        if a >= b:
            return k.blocks.get((a, b))
        blk = k.blocks.get((b, a))
        return None if blk is None else blk.T

    x_cache: dict[tuple[int, int], torch.Tensor | None] = {}

    def x_block(a: int, j: int) -> torch.Tensor | None:
        if (a, j) not in x_cache:
            acc = None
            for q in range(max(a - wk, j), min(a + wk, j + wl, nb - 1) + 1):
                kb, lb = k_block(a, q), lower.blocks.get((q, j))
                if kb is None or lb is None:
                    continue
                term = kb @ lb
                acc = term if acc is None else acc + term
            x_cache[(a, j)] = acc
        return x_cache[(a, j)]

    out: dict[tuple[int, int], torch.Tensor] = {}
    for i in range(nb):
        for j in range(max(0, i - width), i + 1):
            acc = None
            for a in range(i, min(nb - 1, i + wl) + 1):
                x, lb = x_block(a, j), lower.blocks.get((a, i))
                if x is None or lb is None:
                    continue
                term = lb.T @ x
                acc = term if acc is None else acc + term
            if acc is None:
                acc = torch.zeros_like(k.blocks[(0, 0)])
            out[(i, j)] = 0.5 * (acc + acc.T) if i == j else acc
        for key in [key for key in x_cache if key[1] < i - width]:
            del x_cache[key]
    return Band(k.layout.with_width(width), out)
