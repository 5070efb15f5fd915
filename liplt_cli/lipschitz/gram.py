r"""Exact spectral norms of inner maps from Gram matrices built by operator products.

For a map :math:`A = A_{k,s}` of the loop-transformed network, :math:`\|A\|_2^2 = \lambda_{\max}(G)`
with :math:`G = AA^\top` on the target or :math:`A^\top A` on the source.  Here :math:`G` is built by
*operator products* (one adjoint and one forward pass per probe, in float64), not by making
:math:`A` explicit: a convolution costs its own multiply-adds per vector, far less than a dense
row of :math:`A`, and the probing of :mod:`.support` needs ``channels × classes`` probes instead of
``n``.  :math:`\lambda_{\max}` is certified by :func:`~.eigen.certify_top` on the block-banded
layout of :mod:`.banded`.

:func:`bottleneck_norm` handles a map that passes through a narrower activation :math:`l` on every
path (a *dominator*, found by :mod:`.chains`): :math:`A_{k,s} = U C_l V` with :math:`U = A_{k,l}`,
:math:`V = A_{\mathrm{pre}(l),s}` and :math:`C_l = \mathrm{diag}(c_l)`, so

.. math:: \|A_{k,s}\|_2^2 = \lambda_{\max}(C_l U^\top U C_l\; V V^\top)

-- two Gram matrices on :math:`l`'s side, however wide both ends are.  With
:math:`\tilde L \tilde L^\top = VV^\top + \varepsilon I + \Delta` (a Cholesky factorisation, with
:math:`\varepsilon` chosen above the bound on :math:`\|\Delta\|_2` so that :math:`VV^\top \preceq
\tilde L\tilde L^\top`) and :math:`G' = C_l U^\top U C_l \succeq 0`,
:math:`\lambda_{\max}(G' VV^\top) = \lambda_{\max}(G'^{1/2} VV^\top G'^{1/2}) \le
\lambda_{\max}(G'^{1/2}\tilde L\tilde L^\top G'^{1/2}) = \lambda_{\max}(\tilde L^\top G' \tilde L)`,
and the computed :math:`\tilde M \approx \tilde L^\top G' \tilde L` is within
:math:`\gamma_{2n}\|\tilde L\|_F^2 \||G'|\|_\infty` of it in the 2-norm (two products), which is added.

Round-off of the float64 operator products that form a Gram matrix (a relative :math:`10^{-12}`
or so) is covered by the engine's relative safety margin, as for every *exact* number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from liplt_cli.graph.linear_ops import Conv, ConvTranspose, Dense
from liplt_cli.lipschitz.banded import Band, BandLayout, banded_cholesky, banded_congruence, cholesky_macs, congruence_macs
from liplt_cli.lipschitz.eigen import Certified, certify_top, lanczos_top
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.support import (
    GramSide, apply_gram, colour_positions, node_grid, owners, pattern_structure, position_supports,
)

U64 = 2.0**-53



def op_macs(op) -> float:
    """Multiply-adds of applying a linear operator to one vector (either direction)."""
    out = math.prod(op.out_shape)
    if isinstance(op, Conv):
        return float(out) * op.weight.shape[1] * math.prod(op.weight.shape[2:])
    if isinstance(op, ConvTranspose):
        return float(math.prod(op.in_shape)) * op.weight.shape[1] * math.prod(op.weight.shape[2:])
    if isinstance(op, Dense):
        return float(out) * op.weight.shape[1]
    return float(out)


@dataclass
class Probing:
    """The probes of one Gram matrix: position classes with disjoint supports."""

    supports: torch.Tensor
    classes: list[torch.Tensor]
    channels: int
    positions: int

    @property
    def probes(self) -> int:
        return self.channels * len(self.classes)

    def band_width(self, shape: tuple[int, ...]) -> int:
        """Block bandwidth (first spatial axis) implied by the supports."""
        if len(shape) < 2 or shape[1] == 1:
            return 0
        rest = self.positions // shape[1]
        p, q = torch.nonzero(self.supports, as_tuple=True)
        return int(((p // rest) - (q // rest)).abs().max()) if p.numel() else 0


@dataclass
class GramBuilder:
    """Builds (and keeps) the Gram matrices of one structure's maps; knows what they cost."""

    structure: Structure
    chunk: int = 32  # probes per batch: small batches keep float64 convolutions in cache
    grams: dict[GramSide, torch.Tensor] = field(default_factory=dict)
    _probing: dict[GramSide, Probing] = field(default_factory=dict)
    _pattern: Structure | None = None
    _single: Structure | None = None

    @property
    def single(self) -> Structure:
        """The structure on a float32 copy of the graph (float64 on CUDA, where float32 products
        may run in TF32): for estimates and Ritz values only."""
        if self._single is None:
            graph = self.structure.graph
            dtype = torch.float64 if graph.device.type == "cuda" else torch.float32
            self._single = replace(self.structure, graph=graph.to(dtype=dtype))
        return self._single

    # ------------------------------------------------------------------ costs
    def pass_macs(self, spec: GramSide) -> float:
        """Multiply-adds of one probe: an adjoint and a forward pass between side and far."""
        graph = self.structure.graph
        lo, hi = sorted((graph.position(spec.side), graph.position(spec.far)))
        total = sum(op_macs(n.op) for n in graph.nodes[lo + 1 : hi + 1] if n.kind == "linear")
        return 2.0 * total

    def probing(self, spec: GramSide) -> Probing:
        if spec not in self._probing:
            if self._pattern is None:
                self._pattern = pattern_structure(self.structure)
            supports = position_supports(self._pattern, spec, self.chunk)
            channels, positions = node_grid(self.structure.graph.node(spec.side).out_shape)
            self._probing[spec] = Probing(supports, colour_positions(supports), channels, positions)
        return self._probing[spec]

    def gram_cost(self, spec: GramSide) -> float:
        """Multiply-adds still needed to have the Gram matrix of ``spec`` (0 once built)."""
        if spec in self.grams:
            return 0.0
        return self.probing(spec).probes * self.pass_macs(spec)

    def _blocks(self, side: str) -> tuple[int, float]:
        shape = self.structure.graph.node(side).out_shape
        n = math.prod(shape)
        rows = 1 if len(shape) < 2 else shape[1]
        return rows, n / rows

    def band_width(self, spec: GramSide) -> int:
        return self.probing(spec).band_width(self.structure.graph.node(spec.side).out_shape)

    def certificate_cost(self, spec: GramSide) -> float:
        """Multiply-adds of certifying the top eigenvalue of the Gram matrix of ``spec`` (float64
        block products run at about the speed of float64 convolutions in small batches)."""
        rows, block = self._blocks(spec.side)
        return cholesky_macs(rows, int(block), self.band_width(spec))

    def bottleneck_cost(self, left: GramSide, right: GramSide) -> float:
        """Multiply-adds of :func:`bottleneck_norm` (Grams, factorisation, congruence, certificate)."""
        rows, block = self._blocks(left.side)
        wg, wh = self.band_width(left), self.band_width(right)
        wf, wk = min(wg, wh), max(wg, wh)  # the factorised Gram is the narrower-banded one
        b = int(block)
        linalg = cholesky_macs(rows, b, wf) + congruence_macs(rows, b, wk, wf) + cholesky_macs(rows, b, wk + 2 * wf)
        return self.gram_cost(left) + self.gram_cost(right) + linalg

    # ------------------------------------------------------------------ building
    def gram(self, spec: GramSide) -> torch.Tensor:
        """The Gram matrix of ``spec`` in the side node's coordinate order (float64, symmetric)."""
        if spec in self.grams:
            return self.grams[spec]
        graph = self.structure.graph
        shape = graph.node(spec.side).out_shape
        probing = self.probing(spec)
        channels, positions = probing.channels, probing.positions
        n = channels * positions
        gram = torch.zeros((n, n), dtype=graph.dtype, device=graph.device)
        jobs = [(c, cls) for cls in probing.classes for c in range(channels)]
        owner = [owners(probing.supports, cls) for cls in probing.classes]
        index = {id(cls): i for i, cls in enumerate(probing.classes)}
        channel_rows = torch.arange(channels, device=graph.device)[:, None] * positions
        for start in range(0, len(jobs), self.chunk):
            batch = jobs[start : start + self.chunk]
            probe = torch.zeros((len(batch), channels, positions), dtype=graph.dtype, device=graph.device)
            for i, (c, cls) in enumerate(batch):
                probe[i, c, cls] = 1.0
            result = apply_gram(self.structure, spec, probe.reshape(len(batch), *shape))
            result = result.reshape(len(batch), channels, positions)
            for i, (c, cls) in enumerate(batch):
                own = owner[index[id(cls)]]
                hit = torch.nonzero(own >= 0).reshape(-1)
                rows = (channel_rows + hit[None, :]).reshape(-1)
                cols = (c * positions + own[hit]).repeat(channels)
                gram[rows, cols] = result[i][:, hit].reshape(-1)
        gram = 0.5 * (gram + gram.T)
        self.grams[spec] = gram
        return gram

    def matvec(self, spec: GramSide):
        """The Gram operator of ``spec`` on flat vectors (one product per call)."""
        shape = self.structure.graph.node(spec.side).out_shape

        def apply(v: torch.Tensor) -> torch.Tensor:
            return apply_gram(self.structure, spec, v.reshape(1, *shape)).reshape(-1)

        return apply

    # ------------------------------------------------------------------ norms
    def product(self, spec: GramSide):
        """:math:`v \mapsto Gv` on flat float64 vectors (node order), *approximately*: operator
        passes on :attr:`single`.  For Ritz values only (they choose the shift a certificate
        verifies)."""
        shape = self.structure.graph.node(spec.side).out_shape
        single = self.single

        def apply(v: torch.Tensor) -> torch.Tensor:
            x = v.reshape(1, *shape).to(single.graph.dtype)
            return apply_gram(single, spec, x).reshape(-1).to(v.dtype)

        return apply

    def norm(self, spec: GramSide, start: torch.Tensor | None = None) -> Certified | None:
        """Certified :math:`\sqrt{\lambda_{\max}}` of the Gram matrix of ``spec`` (a map norm)."""
        graph = self.structure.graph
        gram = self.gram(spec)
        band = BandLayout.of(gram, graph.node(spec.side).out_shape).band(gram)
        ritz = lanczos_top(self.product(spec), gram.shape[0], gram.dtype, gram.device, start)
        cert = certify_top(band, ritz)
        return None if cert is None else Certified(math.sqrt(cert.value), cert.gap)


def bottleneck_norm(
    builder: GramBuilder, left: GramSide, right: GramSide, centre: float | torch.Tensor,
    whole: GramSide | None = None,
) -> Certified | None:
    r"""Certified :math:`\|U C V\|_2` from :math:`U^\top U` (``left``: on the source side of U) and
    :math:`VV^\top` (``right``: on the target side of V), both on the same node; ``centre`` is the
    diagonal of C (a scalar or a tensor broadcastable to the node's shape).

    :math:`\lambda_{\max}(G'H) = \lambda_{\max}(HG')` for :math:`G' = CU^\top UC` and
    :math:`H = VV^\top`, so either may be the factorised one (:math:`F`) and the other the one
    carried by the congruence (:math:`K`): the narrower-banded one is factorised, which keeps
    :math:`\tilde L^\top K \tilde L` narrow.  ``whole`` (a Gram side of :math:`UCV` itself) gives
    the Ritz value by matrix-free products through the whole map: it lies below
    :math:`\|UCV\|^2 \le \lambda_{\max}(\tilde L^\top K\tilde L)`, so it chooses the shift as well;
    without it, Lanczos runs on the banded factors.  See the module docstring for the bound."""
    structure = builder.structure
    shape = structure.graph.node(left.side).out_shape
    n = math.prod(shape)
    dtype, device = structure.graph.dtype, structure.graph.device
    c = torch.as_tensor(centre, dtype=dtype, device=device)
    c = torch.broadcast_to(c, shape).reshape(-1) if c.dim() else c.expand(n).clone()
    grams = {"G": builder.gram(left), "H": builder.gram(right)}
    layouts = {key: BandLayout.of(g, shape) for key, g in grams.items()}
    f_key, k_key = ("H", "G") if layouts["H"].width <= layouts["G"].width else ("G", "H")
    cb = layouts[f_key].vector(c)

    def band(key: str) -> Band:
        b = layouts[key].band(grams[key])
        return b.scaled(cb) if key == "G" else b

    f, k = band(f_key), band(k_key)
    diag_f = f.diagonal()
    top_f = float(diag_f.max().clamp_min(0.0))
    trace_f = float(diag_f.sum().clamp_min(0.0))
    if trace_f == 0.0 or float(k.diagonal().max()) <= 0.0:
        return Certified(0.0, 0.0)
    # ε above the Cholesky backward error, 4 γ_{n+1} tr(L Lᵀ), and the rounding of F + εI,
    # so that F ⪯ L Lᵀ
    eps = 8 * (n + 1) * U64 * (trace_f + n * top_f) + 2 * U64 * n * top_f
    lower = None
    for _ in range(8):
        lower = banded_cholesky(f.shifted(eps))
        if lower is not None:
            break
        eps *= 16.0
    if lower is None:
        return None
    del f
    m = banded_congruence(k, lower)
    product_error = 8 * n * U64 * lower.squared_norm() * float(k.abs_row_sums().max())
    del k
    if whole is not None:
        size = math.prod(structure.graph.node(whole.side).out_shape)
        ritz = lanczos_top(builder.product(whole), size, dtype, device)
    else:  # Ritz value of M = Lᵀ K L from products: L, Lᵀ banded; K by operator passes
        k_product = builder.product(left if k_key == "G" else right)
        scale = c if k_key == "G" else torch.ones_like(c)
        layout = lower.layout

        def apply_m(v: torch.Tensor) -> torch.Tensor:
            x = layout.unvector(lower.lower_matvec(v))
            x = layout.vector(scale * k_product(scale * x))
            return lower.lower_matvec(x, transpose=True)

        ritz = lanczos_top(apply_m, n, dtype, device)
    cert = certify_top(m, ritz)
    if cert is None:
        return None
    return Certified(math.sqrt(cert.value + product_error), cert.gap)
