"""CRM loss (eqs. 4-6) on hand-made logits and a hand-made K×K pairwise matrix."""

from __future__ import annotations

import math

import pytest
import torch

from liplt_cli.errors import ArgumentError
from liplt_cli.train.loss import crm_loss, hard_radius, robust_term, soft_radius

K = 5


def _sym_lip(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(K, K, generator=g) * 3 + 0.5
    lip = (a + a.T) / 2
    lip.fill_diagonal_(0.0)
    return lip


def test_hard_radius_by_hand():
    lip = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    logits = torch.tensor([[3.0, 1.0, 0.0]])
    # (3-1)/2 = 1, (3-0)/4 = 0.75 -> min 0.75
    assert hard_radius(logits, torch.tensor([0]), lip).item() == pytest.approx(0.75)
    # label 1: (1-3)/2 = -1, (1-0)/1 = 1 -> -1 (misclassified, negative)
    assert hard_radius(logits, torch.tensor([1]), lip).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("t", [0.5, 1.0, 5.0, 50.0])
def test_proposition_1(t):
    lip = _sym_lip(1)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(200, K, generator=g) * 4
    labels = torch.randint(0, K, (200,), generator=g)
    r = hard_radius(logits, labels, lip)
    rs = soft_radius(logits, labels, lip, t)
    assert torch.all(rs <= r + 1e-6)
    assert torch.all(r <= rs + math.log(K - 1) / t + 1e-6)
    # the soft radius lies strictly below the hard one somewhere (it is a real soft-min)
    assert torch.any(rs < r - 1e-4)


def test_gradient_flows_into_lip_and_logits():
    lip = _sym_lip(3).requires_grad_(True)
    logits = torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0], [0.0, 3.0, 1.0, 2.5, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    for g in ("lse", "exp", "hinge"):
        lip.grad = None
        logits.grad = None
        terms = crm_loss(logits, labels, lip, lam=2.0, t=5.0, cutoff=100.0, g=g)
        terms.total.backward()
        assert terms.active == 2
        assert lip.grad is not None and lip.grad.abs().sum() > 0
        # a larger L_yi shrinks the radius, so the robust loss grows with it: gradient ≥ 0 on used rows
        assert (lip.grad[0, 1:] >= 0).all() and lip.grad[0, 1:].sum() > 0
        assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_lse_is_minus_soft_radius_and_matches_paper_form():
    lip = _sym_lip(4)
    logits = torch.tensor([[5.0, 1.0, 0.0, 0.5, -1.0]])
    labels = torch.tensor([0])
    t = 5.0
    rob, active, correct, _ = robust_term(logits, labels, lip, t, cutoff=10.0, g="lse")
    ratios = torch.stack([(logits[0, 0] - logits[0, i]) / lip[0, i] for i in range(1, K)])
    paper = torch.logsumexp(-t * ratios, dim=0) / t
    assert rob.item() == pytest.approx(paper.item(), rel=1e-6)
    assert active == 1 and correct == 1
    rob_exp, *_ = robust_term(logits, labels, lip, t, cutoff=10.0, g="exp")
    assert rob_exp.item() == pytest.approx(math.exp(paper.item()), rel=1e-6)
    rob_h, *_ = robust_term(logits, labels, lip, t, cutoff=10.0, g="hinge")
    assert rob_h.item() == pytest.approx(max(0.0, 10.0 + paper.item()), rel=1e-6)


def test_misclassified_and_above_cutoff_contribute_nothing():
    lip = _sym_lip(5).requires_grad_(True)
    # row 0: correct with a small radius; row 1: misclassified; row 2: correct with a huge radius
    logits = torch.tensor(
        [[1.0, 0.8, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0, 0.0]],
        requires_grad=True,
    )
    labels = torch.tensor([0, 0, 0])
    cutoff = 2.0
    r = hard_radius(logits.detach(), labels, lip.detach())
    assert r[0] < cutoff and r[1] < 0 and r[2] > cutoff
    rob, active, correct, _ = robust_term(logits, labels, lip, 5.0, cutoff, "lse", "active")
    assert active == 1 and correct == 2
    alone, *_ = robust_term(logits[:1], labels[:1], lip, 5.0, cutoff, "lse", "active")
    assert rob.item() == pytest.approx(alone.item())
    per_batch, *_ = robust_term(logits, labels, lip, 5.0, cutoff, "lse")  # the default: ÷ batch size 3
    assert per_batch.item() == pytest.approx(alone.item() / 3)
    rob.backward()
    assert logits.grad[1:].abs().sum() == 0
    assert logits.grad[0].abs().sum() > 0


def test_robust_normalisation_by_hand():
    """Σ over the penalised points of (1/t)·LSE(−t·R_i), divided by the batch size (reference) or by |A|."""
    lip = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [1.0, 2.0, 0.0], [30.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 0])  # row 2 misclassified, row 3 far beyond the cut-off
    t, cutoff = 2.0, 2.0
    # row 0: R_1 = 2/2 = 1, R_2 = 3/4; row 1: R_0 = 2/2 = 1, R_2 = 2/1 = 2
    g0 = math.log(math.exp(-t * 1.0) + math.exp(-t * 0.75)) / t
    g1 = math.log(math.exp(-t * 1.0) + math.exp(-t * 2.0)) / t
    batch, active, correct, _ = robust_term(logits, labels, lip, t, cutoff, "lse", "batch")
    assert (active, correct) == (2, 3)
    assert batch.item() == pytest.approx((g0 + g1) / 4, rel=1e-6)
    per_active, *_ = robust_term(logits, labels, lip, t, cutoff, "lse", "active")
    assert per_active.item() == pytest.approx((g0 + g1) / 2, rel=1e-6)
    total = crm_loss(logits, labels, lip, lam=30.0, t=t, cutoff=cutoff).total
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert total.item() == pytest.approx(ce + 30.0 * (g0 + g1) / 4, rel=1e-6)


def _reference_robust_loss(out, y, lip, alpha, max_radius):
    """The reference code's robust term, transcribed: margins from the *predicted* class, the
    predicted entry set to inf, misclassified rows dropped, rows below the cut-off penalised with
    (1/α)·LSE(−α·R) over the finite entries, summed and divided by the batch size."""
    n = out.shape[0]
    pred = out.argmax(1)
    pairwise = lip.clone()
    pairwise.fill_diagonal_(1.0)
    margins = out[range(n), pred].unsqueeze(1) - out
    radii = margins / pairwise[pred, :]
    radii[range(n), pred] = torch.inf
    radii = radii[pred == y, :]
    smallest = radii.min(1).values
    need = radii[smallest < max_radius, :]
    need = need[need != torch.inf].reshape(need.shape[0], -1)
    return (1 / alpha) * torch.logsumexp(-alpha * need, 1).sum() / n


def test_robust_term_equals_the_reference_form_with_predicted_class_margins():
    lip = _sym_lip(7).requires_grad_(True)
    g = torch.Generator().manual_seed(8)
    logits = (torch.randn(64, K, generator=g) * 2).requires_grad_(True)
    labels = torch.randint(0, K, (64,), generator=g)
    ours, active, correct, _ = robust_term(logits, labels, lip, 5.0, 1.0, "lse")
    assert 0 < active < correct < 64  # some misclassified, some above the cut-off
    theirs = _reference_robust_loss(logits, labels, lip, 5.0, 1.0)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    d_ours = torch.autograd.grad(ours, (logits, lip))
    d_theirs = torch.autograd.grad(theirs, (logits, lip))
    for a, b in zip(d_ours, d_theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_no_active_point_gives_zero_connected_to_graph():
    lip = _sym_lip(6).requires_grad_(True)
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0]], requires_grad=True)
    rob, active, correct, mean_r = robust_term(logits, torch.tensor([0]), lip, 5.0, 2.0, "lse")
    assert active == 0 and correct == 0 and math.isnan(mean_r)
    assert rob.item() == 0.0
    rob.backward()  # must not raise: the zero is attached to both leaves
    assert lip.grad is not None and logits.grad is not None


def test_plain_ce_when_no_lip_or_lambda_zero():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([0])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert crm_loss(logits, labels, None, 30.0, 5.0, 2.2).total.item() == pytest.approx(ce.item())
    assert crm_loss(logits, labels, _sym_lip(), 0.0, 5.0, 2.2).total.item() == pytest.approx(ce.item())


def test_bad_arguments():
    logits = torch.zeros(2, K)
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ArgumentError, match="unknown g"):
        robust_term(logits, labels, _sym_lip(), 5.0, 2.0, g="square")
    with pytest.raises(ArgumentError, match="unknown normalisation"):
        robust_term(logits, labels, _sym_lip(), 5.0, 2.0, normalisation="mean")
    with pytest.raises(ArgumentError, match="temperature"):
        soft_radius(logits, labels, _sym_lip(), 0.0)
    with pytest.raises(ArgumentError, match="shape"):
        hard_radius(logits, labels, torch.ones(3, 3))


def test_reference_units_reparametrisation():
    """Radii in [−1, 1] units are twice the pixel-unit radii (L doubles): λ·(1/t)·LSE(−t·R_ref)
    equals (2λ)·(1/(2t))·LSE(−2t·R), and R_ref < 0.2 ⟺ R < 0.1 (the CIFAR-10 recipe)."""
    lip = _sym_lip(9)
    g = torch.Generator().manual_seed(10)
    logits = torch.randn(128, K, generator=g) * 0.3
    labels = logits.argmax(1)  # every point correct, so only the cut-off selects
    labels[:8] = (labels[:8] + 1) % K
    ref = crm_loss(logits, labels, lip, lam=15.0, t=5.0, cutoff=0.2)  # L in [−1, 1] units
    pix = crm_loss(logits, labels, 2 * lip, lam=30.0, t=10.0, cutoff=0.1)  # L in pixel units
    assert ref.active == pix.active and 0 < ref.active < ref.correct
    assert pix.total.item() == pytest.approx(ref.total.item(), rel=1e-6)
