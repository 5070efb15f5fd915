r"""The CRM loss (section 2 of the paper, equations 4-6).

For a sample with logits :math:`z` and label :math:`y`, and :math:`L_{yi}` the Lipschitz
constant of :math:`x \mapsto z_y(x) - z_i(x)` (a K×K matrix, differentiable in the weights),

* the certified radius lower bound (eq. 4) is
  :math:`R = \min_{i \ne y} (z_y - z_i) / L_{yi}`;
* its soft version at temperature :math:`t` (eq. 5) is
  :math:`R_t^{soft} = -\tfrac1t \,\mathrm{LSE}_{i \ne y}\big(-t (z_y - z_i)/L_{yi}\big)`,
  and Proposition 1 gives :math:`R_t^{soft} \le R \le R_t^{soft} + \log(K-1)/t`;
* the training objective (eq. 6, the form the reference code runs) is

  .. math::
     \mathrm{CE}(z, y) + \lambda \cdot \frac{1}{n} \sum_{x \in A} g(R_t^{soft}(x)),

  with :math:`A` the correctly classified points of the batch whose hard radius :math:`R` is
  below the cut-off ("maximum penalising radius"), :math:`n` the batch size (the reference
  code's normalisation, ``normalisation="batch"``; ``"active"`` divides by :math:`|A|` instead,
  which scales λ by 1/(share of the batch in A)) and :math:`g` decreasing:

  - ``"lse"``: :math:`g(R^{soft}) = -R^{soft} = \tfrac1t \mathrm{LSE}(-t R_i)` (the paper's run),
  - ``"exp"``: :math:`g = \exp(-R^{soft})`,
  - ``"hinge"``: :math:`g = \max(0, \text{cut-off} - R^{soft})`.

Points misclassified or already above the cut-off contribute nothing (and no gradient).
The reference code measures the margins from the *predicted* class :math:`\hat y`; on
:math:`A` the prediction is the label, so the two are the same term (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from liplt_cli.errors import ArgumentError
from liplt_cli.radius import certified_radius, margin_ratios, min_margin_ratio
from liplt_cli.train.config import G_CHOICES, NORMALISATIONS



def hard_radius(logits: torch.Tensor, labels: torch.Tensor, lip: torch.Tensor) -> torch.Tensor:
    r"""The signed :math:`\min_{i \ne y} (z_y - z_i)/L_{yi}`, shape (N,): the quantity eq. 5 softens.

    Negative for misclassified points; its positive part is the certified radius of eq. 4
    (:func:`liplt_cli.radius.certified_radius`, which the robust term's cut-off test uses).
    """
    return min_margin_ratio(logits, labels, _checked(lip, logits))


def _checked(lip: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    k = logits.shape[1]
    if tuple(lip.shape) != (k, k):
        raise ArgumentError(f"pairwise Lipschitz matrix has shape {tuple(lip.shape)}, expected ({k}, {k})")
    return lip


def soft_radius(logits: torch.Tensor, labels: torch.Tensor, lip: torch.Tensor, t: float) -> torch.Tensor:
    r"""Soft radius (eq. 5): :math:`-\frac1t \mathrm{LSE}_{i \ne y}(-t (z_y - z_i)/L_{yi})`, shape (N,)."""
    if t <= 0:
        raise ArgumentError(f"temperature t must be positive, got {t}")
    ratios = margin_ratios(logits, labels, _checked(lip, logits))  # +inf at i = y: exp(−t·∞) = 0
    return -torch.logsumexp(-t * ratios, dim=1) / t


@dataclass
class LossTerms:
    """The pieces of one CRM loss evaluation (tensors keep the graph; floats are for logging)."""

    total: torch.Tensor
    ce: torch.Tensor
    robust: torch.Tensor
    active: int  # points in A (correct and below the cut-off)
    correct: int
    mean_radius: float  # mean hard radius over correctly classified points (nan if none)


def robust_term(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lip: torch.Tensor,
    t: float,
    cutoff: float,
    g: str = "lse",
    normalisation: str = "batch",
) -> tuple[torch.Tensor, int, int, float]:
    """Sum of g(R_soft) over A (correct, hard radius < cutoff) divided by the batch size
    (``normalisation="batch"``) or by |A| (``"active"``); returns (term, |A|, correct, mean R)."""
    if g not in G_CHOICES:
        raise ArgumentError(f"unknown g '{g}'; choose from {', '.join(G_CHOICES)}")
    if normalisation not in NORMALISATIONS:
        raise ArgumentError(f"unknown normalisation '{normalisation}'; choose from {', '.join(NORMALISATIONS)}")
    with torch.no_grad():
        r_hard = certified_radius(logits.detach(), labels, _checked(lip.detach(), logits))
        correct = logits.argmax(dim=1) == labels
        active = correct & (r_hard < cutoff)
        n_correct = int(correct.sum())
        mean_r = float(r_hard[correct].mean()) if n_correct else math.nan
    n_active = int(active.sum())
    if n_active == 0:
        # zero that still depends on the graph's leaves, so DDP sees every parameter used
        return (logits.sum() + lip.sum()) * 0.0, 0, n_correct, mean_r
    r_soft = soft_radius(logits[active], labels[active], lip, t)
    if g == "lse":
        values = -r_soft
    elif g == "exp":
        values = torch.exp(-r_soft)
    else:
        values = F.relu(cutoff - r_soft)
    term = values.mean() if normalisation == "active" else values.sum() / int(logits.shape[0])
    return term, n_active, n_correct, mean_r


def crm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lip: torch.Tensor | None,
    lam: float,
    t: float,
    cutoff: float,
    g: str = "lse",
    normalisation: str = "batch",
) -> LossTerms:
    """CE + λ · robust term (eq. 6); ``lip=None`` or ``lam=0`` gives plain cross-entropy."""
    ce = F.cross_entropy(logits, labels)
    if lip is None or lam == 0.0:
        with torch.no_grad():
            n_correct = int((logits.argmax(dim=1) == labels).sum())
            mean_r = math.nan
            if lip is not None:
                r = certified_radius(logits, labels, _checked(lip, logits))
                ok = logits.argmax(dim=1) == labels
                mean_r = float(r[ok].mean()) if n_correct else math.nan
        zero = ce.new_zeros(())
        return LossTerms(ce, ce, zero, 0, n_correct, mean_r)
    rob, n_active, n_correct, mean_r = robust_term(logits, labels, lip, t, cutoff, g, normalisation)
    return LossTerms(ce + lam * rob, ce, rob, n_active, n_correct, mean_r)
