r"""Certified top eigenvalues of large symmetric positive semidefinite matrices.

:func:`lanczos_top` finds a Ritz value :math:`\theta \le \lambda_{\max}` (Cauchy interlacing) with
a matrix-free product; :func:`certify_top` proves :math:`\lambda_{\max}(G) \le t` for
:math:`t = \theta(1+\text{gap}) + \delta` by a successful (block-banded) Cholesky factorisation of
:math:`tI - G`: if :math:`\tilde L\tilde L^\top = tI - G + \Delta` with
:math:`\|\Delta\|_2 \le \delta`, then :math:`tI - G \succeq -\delta I`, i.e.
:math:`\lambda_{\max}(G) \le t + \delta`.  The backward error of Cholesky (also blocked, also
banded) is :math:`|\Delta| \le \gamma_{n+1} |\tilde L||\tilde L^\top|`, so
:math:`\|\Delta\|_2 \le \gamma_{n+1} \||\tilde L|\|_2^2 \le \gamma_{n+1} \|\tilde L\|_F^2 =
\gamma_{n+1}\,\mathrm{tr}(tI - G + \Delta) \lesssim (n+1)\,u\,n t` (:math:`G \succeq 0`,
:math:`u = 2^{-53}`); forming :math:`tI - G` adds at most :math:`u\,\|tI - G\|_2 \le u\,(t + n
\max_i G_{ii})`.  :math:`\delta = 4(n+1)^2 u\, t + u\,(t + n \max_i G_{ii})` covers both, with a
factor 4 for the constants of the blocked variant.  The Ritz value only chooses :math:`t`; the bound rests on the
factorisation alone, whatever the accuracy of :math:`\theta`.

The number returned is an upper bound on :math:`\lambda_{\max}` within ``gap`` (relative) of it;
:func:`certify_top` tries growing gaps and says which one succeeded, so that a caller can label
the result *exact* (gap at most 1e-5, the tolerance at which the engine treats two sound values
as equal) or *upper bound*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from liplt_cli.lipschitz.banded import Band, banded_cholesky

EXACT_GAP = 1e-5
"""Largest relative gap between a certified bound and the Ritz value for the label *exact*."""

GAPS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)

MatVec = Callable[[torch.Tensor], torch.Tensor]


def lanczos_top(
    matvec: MatVec, n: int, dtype: torch.dtype, device: torch.device, start: torch.Tensor | None = None,
    steps: int = 300, tol: float = 1e-8, seed: int = 0,
) -> float:
    r"""Top Ritz value of the symmetric PSD operator ``matvec`` (vectors of length ``n``).

    Lanczos with full reorthogonalisation, from ``start`` (or a seeded random vector), stopped when
    the residual :math:`\beta_k |s_{k}|` of the top Ritz pair falls below ``tol`` times its value,
    or after ``steps`` products.  A Ritz value lies below :math:`\lambda_{\max}`: it is an
    *estimate from below*, used only to choose the shift that :func:`certify_top` verifies.
    """
    if start is None or start.numel() != n or float(start.norm()) == 0.0:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        start = torch.randn(n, generator=gen, dtype=torch.float64)
    steps = min(steps, n)
    basis = torch.zeros((steps + 1, n), dtype=dtype, device=device)  # one Lanczos vector per row
    q = start.reshape(-1).to(device=device, dtype=dtype)
    basis[0] = q / q.norm()
    alphas: list[float] = []
    betas: list[float] = []
    theta = 0.0
    for k in range(steps):
        w = matvec(basis[k])
        alphas.append(float(torch.dot(w, basis[k])))
        Q = basis[: k + 1]
        w = w - Q.T @ (Q @ w)
        w = w - Q.T @ (Q @ w)  # twice is enough (Kahan-Parlett)
        beta = float(w.norm())
        last = k == steps - 1 or beta <= 1e-300
        if k % 4 == 3 or last:
            T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
            if betas:
                off = torch.tensor(betas, dtype=torch.float64)
                T = T + torch.diag(off, 1) + torch.diag(off, -1)
            values, vectors = torch.linalg.eigh(T)
            theta = float(values[-1])
            if last or beta * abs(float(vectors[-1, -1])) <= tol * max(theta, 1e-300):
                break
        betas.append(beta)
        basis[k + 1] = w / beta
    return max(theta, 0.0)


@dataclass(frozen=True)
class Certified:
    """An upper bound ``value`` on λ_max and the relative ``gap`` over the Ritz value it needed."""

    value: float
    gap: float

    @property
    def exact(self) -> bool:
        return self.gap <= EXACT_GAP


def certify_top(band: Band, ritz: float) -> Certified | None:
    r"""A proven upper bound on :math:`\lambda_{\max}` of the symmetric PSD matrix whose lower band
    is ``band``, from the Ritz value ``ritz`` (see the module docstring), or ``None`` if no gap up to
    1e-2 factorises (the Ritz value was far off)."""
    n = band.layout.block * band.layout.blocks
    diagonal = band.diagonal().to(torch.float64)
    if float(diagonal.abs().max()) == 0.0:
        return Certified(0.0, 0.0)
    u = 2.0**-53
    top_diag = float(diagonal.max().clamp_min(0.0))
    base = max(ritz, 0.0)
    for gap in GAPS:
        t = base * (1 + gap) + n * u * top_diag
        delta = 4 * (n + 1) ** 2 * u * t + u * (t + n * top_diag)
        if banded_cholesky(band.shifted(t, scale=-1.0)) is not None:  # tI - G
            return Certified(t + delta, gap)
    return None
