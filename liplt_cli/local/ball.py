r"""The input region of a local certificate: an ℓp ball around each sample, optionally clipped.

For a batch of S samples :math:`x_s` with radii :math:`\varepsilon_s`, the region of sample s is

.. math:: \mathcal B_s = \{x' : \|x' - x_s\|_p \le \varepsilon_s\} \;\cap\; D,
          \qquad D = [d_{lo}, d_{hi}]^n \text{ (the input domain, when given; else } \mathbb R^n).

Everything local is proved for every :math:`x' \in \mathcal B_s`: with a domain (``--input-range
0,1``) the certificate says nothing about points outside it (images outside [0, 1] are not
images), which is also the region the PGD attack searches.

:meth:`Ball.box` is the smallest box containing :math:`\mathcal B_s` coordinate-wise
(:math:`|\delta_n| \le \|\delta\|_p` for every p), the start of interval propagation.
:meth:`Ball.min_linear` lower-bounds :math:`\min_{x' \in \mathcal B_s} a^\top (x' - x_s)` for
many rows a at once -- the last step of every back-substitution -- by the largest of

* the ball bound :math:`-\varepsilon_s \|a\|_{p^*}` (Hölder; exact without a domain);
* the box bound :math:`\sum_n \min(a_n \underline\delta_n, a_n \overline\delta_n)` over the box
  :math:`[\underline\delta, \overline\delta] = \mathrm{box} - x_s` (exact for ℓ∞);
* for ℓ2 with a domain, the Lagrangian dual bound: for any :math:`\mu > 0`,

  .. math:: g(\mu) = \sum_n \min_{\delta_n \in [\underline\delta_n, \overline\delta_n]}
            \big(a_n \delta_n + \tfrac\mu2 \delta_n^2\big) - \tfrac\mu2 \varepsilon_s^2
            \;\le\; a^\top\delta \quad \text{for every feasible } \delta

  (weak duality: the added term is ≤ 0 on the ball), the inner minimum being attained at
  :math:`\delta_n = \mathrm{clip}(-a_n/\mu, \underline\delta_n, \overline\delta_n)`.  It is a
  valid bound for *every* μ; a few Newton steps on :math:`\|\delta(1/t)\|_2 = \varepsilon_s`
  choose a good one (the exact minimum when they converge), and the best value seen is kept.

The numbers are float64; their round-off is covered by the relative margin the callers add
(:data:`~liplt_cli.lipschitz.norms.SAFETY`, as for every sound number of the engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from liplt_cli.lipschitz.norms import dual_exponent

_NEWTON_STEPS = 3


@dataclass(frozen=True, eq=False)
class Ball:
    """Balls :math:`\\|x' - x_s\\|_p \\le \\varepsilon_s` (∩ the domain) around a batch of samples.

    ``centre``: ``(S, *input_shape)`` float64; ``radius``: ``(S,)`` float64, ≥ 0; ``p`` ∈
    {2, ∞, 1}; ``domain``: ``(lo, hi)`` bounds of every input coordinate, or ``None``.  Every
    centre must lie in the domain (the caller checks the data).
    """

    centre: torch.Tensor
    radius: torch.Tensor
    p: float
    domain: tuple[float, float] | None = None

    @property
    def samples(self) -> int:
        return int(self.centre.shape[0])

    def _per_sample(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape(-1, *([1] * (self.centre.dim() - 1)))

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper corners ``(S, *input_shape)`` of the smallest box containing each region."""
        e = self._per_sample(self.radius)
        lo, hi = self.centre - e, self.centre + e
        if self.domain is not None:
            lo = lo.clamp_min(self.domain[0])
            hi = hi.clamp_max(self.domain[1])
        return lo, hi

    def subset(self, keep: torch.Tensor) -> "Ball":
        """The balls of the samples selected by ``keep`` (indices or a boolean mask)."""
        return Ball(self.centre[keep], self.radius[keep], self.p, self.domain)

    def min_linear(self, rows: torch.Tensor, samples: torch.Tensor, needed: torch.Tensor | None = None,
                   compress: bool = True) -> torch.Tensor:
        """Lower bounds of :math:`\\min_{x' \\in \\mathcal B_s} a^\\top (x' - x_s)`, one per row.

        ``rows``: ``(R, *input_shape)``; ``samples``: ``(R,)`` the sample of each row.  See the
        module docstring for the three bounds (the largest is returned).  ``needed`` (optional,
        ``(R,)``): the value a row's bound must exceed to decide something for the caller; the
        (costlier) dual bound is then computed only for rows it could still decide: not those
        whose cheap bounds already exceed ``needed``, nor those with a feasible point
        :math:`\\delta_0 = \\mathrm{clip}(-\\varepsilon a/\\|a\\|_2)` below it (no lower bound can
        exceed :math:`a^\\top\\delta_0`).  Every returned value is a valid lower bound either way.
        With ``compress``, rows with few non-zeros (pulled back through convolutions: their
        receptive field) are first gathered onto their non-zero coordinates (same values, less work).
        """
        a = rows.reshape(rows.shape[0], -1)
        eps = self.radius[samples]
        bound = -eps * torch.linalg.vector_norm(a, ord=dual_exponent(self.p), dim=1)
        if self.domain is None and not math.isinf(self.p):
            return bound
        lo, hi = self.box()
        flat_x = self.centre.reshape(self.samples, -1)
        d_lo_all = lo.reshape(self.samples, -1) - flat_x
        d_hi_all = hi.reshape(self.samples, -1) - flat_x
        support = _sparse_support(a) if compress else None
        if support is None:
            d_lo, d_hi = d_lo_all[samples], d_hi_all[samples]
        else:  # only the coordinates where some row is non-zero matter (a zero a_n adds nothing)
            a = a.gather(1, support)
            d_lo = d_lo_all[samples[:, None], support]
            d_hi = d_hi_all[samples[:, None], support]
        box = torch.minimum(a * d_lo, a * d_hi).sum(dim=1)
        bound = torch.maximum(bound, box)
        if self.p == 2 and self.domain is not None:
            todo = None
            if needed is not None:
                norm = torch.linalg.vector_norm(a, dim=1).clamp_min(1e-300)
                feasible = (a * torch.clamp(-(eps / norm)[:, None] * a, d_lo, d_hi)).sum(dim=1)
                todo = ((bound < needed) & (feasible >= needed)).nonzero(as_tuple=True)[0]
            if todo is None:
                bound = torch.maximum(bound, _l2_box_dual(a, d_lo, d_hi, eps))
            elif todo.numel():
                bound[todo] = torch.maximum(bound[todo], _l2_box_dual(a[todo], d_lo[todo], d_hi[todo], eps[todo]))
        return bound


def _sparse_support(a: torch.Tensor) -> torch.Tensor | None:
    """Per row, the indices of its non-zero entries padded to the largest count ``(R, k)`` (padding
    points at zero entries), or ``None`` when rows are not sparse enough to pay for the gather."""
    if a.shape[0] == 0:
        return None
    nonzero = a != 0
    k = int(nonzero.sum(dim=1).max())
    if k == 0 or 4 * k > a.shape[1]:
        return None
    return torch.topk(nonzero.to(torch.uint8), k, dim=1, sorted=False).indices


def _l2_box_dual(a: torch.Tensor, d_lo: torch.Tensor, d_hi: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""A Lagrangian dual bound :math:`g(1/t)` for :math:`\min a^\top\delta`,
    :math:`\|\delta\|_2 \le \varepsilon`, :math:`\underline\delta \le \delta \le \overline\delta`.

    Newton steps on :math:`f(t) = \|\mathrm{clip}(-t a)\|^2 - \varepsilon^2` from
    :math:`t_0 = \varepsilon/\|a\|` (where clipping only shrinks the vector, so :math:`f \le 0`)
    *choose* t in float32 (any t > 0 gives a valid bound, so the choice needs no precision);
    the dual values of the last two iterates are then evaluated in float64 and the larger kept.
    """
    norm = torch.linalg.vector_norm(a, dim=1)
    live = norm > 0
    if not bool(live.any()):
        return torch.zeros_like(norm)
    a32, lo32, hi32 = a.float(), d_lo.float(), d_hi.float()
    eps2_32 = (eps * eps).float()
    t = torch.where(live, eps / norm.clamp_min(1e-300), torch.zeros_like(norm)).float()
    previous = t
    for _ in range(_NEWTON_STEPS):
        delta = torch.clamp(-t[:, None] * a32, lo32, hi32)
        free = (delta > lo32) & (delta < hi32)
        slope = 2 * t * (a32 * a32 * free).sum(dim=1)
        gap = (delta * delta).sum(dim=1) - eps2_32
        step = torch.where(slope > 0, -gap / slope.clamp_min(1e-30), torch.zeros_like(t))
        previous, t = t, torch.maximum(t + step, 0.25 * t)
    eps2 = eps * eps
    best = torch.full_like(norm, -math.inf)
    for choice in (previous, t):
        tt = choice.double()
        ok = live & (tt > 0) & torch.isfinite(tt)
        tt = torch.where(ok, tt, torch.ones_like(tt))
        delta = torch.clamp(-tt[:, None] * a, d_lo, d_hi)
        value = (a * delta).sum(dim=1) + 0.5 / tt * ((delta * delta).sum(dim=1) - eps2)
        best = torch.where(ok, torch.maximum(best, value), best)
    return torch.where(live, best, torch.zeros_like(norm))
