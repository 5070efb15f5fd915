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
    rob, active, correct, _ = robust_term(logits, labels, lip, 5.0, cutoff, "lse")
    assert active == 1 and correct == 2
    alone, *_ = robust_term(logits[:1], labels[:1], lip, 5.0, cutoff, "lse")
    assert rob.item() == pytest.approx(alone.item())
    rob.backward()
    assert logits.grad[1:].abs().sum() == 0
    assert logits.grad[0].abs().sum() > 0


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
    with pytest.raises(ArgumentError, match="temperature"):
        soft_radius(logits, labels, _sym_lip(), 0.0)
    with pytest.raises(ArgumentError, match="shape"):
        hard_radius(logits, labels, torch.ones(3, 3))
