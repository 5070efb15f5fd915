r"""Equation 4 of the paper, written once: margin ratios, the certified radius, certified accuracy.

For logits :math:`z` of a sample with label :math:`y` and pairwise Lipschitz constants
:math:`L_{yi}` of :math:`x \mapsto z_y(x) - z_i(x)`:

* the *margin ratios* are :math:`(z_y - z_i)/L_{yi}` for :math:`i \ne y` (eq. 5 softens their
  minimum; Proposition 1 compares the two).  A pair with :math:`L_{yi} = 0` has ratio
  :math:`+\infty` when its margin is positive (it never changes sign) and :math:`-\infty`
  otherwise; the label's own entry is :math:`+\infty` (it never limits the minimum);
* the *certified radius* (eq. 4) is :math:`R = \min_{i \ne y}(z_y - z_i)/L_{yi}` when every margin
  is positive, and :math:`R = 0` for a misclassified or tied sample (one convention, used by
  ``liplt certify`` and by training alike);
* a sample is *certified at ε* when :math:`R > ε` (strict: at distance :math:`R` a tie is possible).

Everything is computed in the dtype of ``logits`` (training keeps float32, ``certify`` passes
float64), so callers get exactly the numbers they computed before this module existed.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def margin_ratios(logits: torch.Tensor, labels: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    r""":math:`(z_y - z_i)/L_{yi}` of shape (N, K), :math:`+\infty` at :math:`i = y` (see the module docstring).

    ``logits`` (N, K), ``labels`` (N,), ``pairwise`` (K, K); differentiable in ``logits`` and ``pairwise``.
    """
    n, k = logits.shape
    if tuple(pairwise.shape) != (k, k):
        raise ValueError(f"pairwise Lipschitz matrix has shape {tuple(pairwise.shape)}, expected ({k}, {k})")
    y = labels.to(logits.device).long()
    margins = logits.gather(1, y[:, None]) - logits  # (N, K): z_y − z_i
    lyi = pairwise.to(device=logits.device, dtype=logits.dtype)[y]  # (N, K): L_{y i}
    own = torch.zeros_like(margins, dtype=torch.bool)
    own[torch.arange(n, device=logits.device), y] = True
    positive = lyi > 0
    # L_yi = 0 (the label's own entry, or a pair that never changes): divide by 1, then replace
    safe = torch.where(positive & ~own, lyi, torch.ones_like(lyi))
    ratio = margins / safe
    never = torch.where(margins > 0, torch.full_like(ratio, math.inf), torch.full_like(ratio, -math.inf))
    ratio = torch.where(positive | own, ratio, never)
    return ratio.masked_fill(own, math.inf)


def min_margin_ratio(logits: torch.Tensor, labels: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    r""":math:`\min_{i \ne y}(z_y - z_i)/L_{yi}`, shape (N,): the signed minimum (negative when misclassified).

    The quantity the soft radius of eq. 5 approximates (Proposition 1); the certified radius is its
    positive part, :func:`certified_radius`.
    """
    return margin_ratios(logits, labels, pairwise).amin(dim=1)


def certified_radius(logits: torch.Tensor, labels: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    r"""Certified radius (eq. 4), shape (N,): :math:`\min_{i \ne y}(z_y - z_i)/L_{yi}`, and 0 when some
    margin :math:`z_y - z_i \le 0` (misclassified or tied)."""
    r = min_margin_ratio(logits, labels, pairwise)
    return torch.where(r > 0, r, torch.zeros_like(r))


def certified_accuracy(radius: torch.Tensor, eps: Sequence[float]) -> list[float]:
    """Fraction of samples with R > ε, for each ε (NaN for no samples: no accuracy without data)."""
    n = int(radius.numel())
    if n == 0:
        return [math.nan for _ in eps]
    return [float((radius > e).sum()) / n for e in eps]
