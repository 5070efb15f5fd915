"""PGD: projections, constraints, strength on a linear model with a known boundary, batching."""

from __future__ import annotations

import math

import pytest
import torch

from liplt_cli.certify.attack import AttackSettings, ascent_direction, pgd, project_ball, robust_under_attack
from tests.certify_nets import mlp_graph, tiny_trained_mlp

NORMS = [2.0, math.inf, 1.0]


def _norms(d: torch.Tensor, p: float) -> torch.Tensor:
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1), ord=p, dim=1)


@pytest.mark.parametrize("p", NORMS)
def test_projection_is_the_nearest_point_of_the_ball(p: float) -> None:
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0, 100.0, 0.01, 1.5], dtype=torch.float64)
    q = project_ball(d, eps, p)
    assert (_norms(q, p) <= eps * (1 + 1e-9)).all()
    inside = _norms(d, p) <= eps
    assert torch.equal(q[inside], d[inside])
    # no random point of the ball is closer (Euclidean) to d than its projection
    for _ in range(200):
        cand = project_ball(torch.randn(8, 5, generator=gen, dtype=torch.float64) * 2, eps, p)
        assert ((cand - d).norm(dim=1) >= (q - d).norm(dim=1) - 1e-9).all()


@pytest.mark.parametrize("p", NORMS)
def test_ascent_direction_has_unit_norm_and_positive_slope(p: float) -> None:
    g = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(1))
    d = ascent_direction(g, p, sparsity=0.2)
    assert torch.allclose(_norms(d, p), torch.ones(4))
    assert ((d * g).reshape(4, -1).sum(1) > 0).all()


def _linear_two_class(dim: int = 20, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(2, dim, generator=gen)
    b = torch.randn(2, generator=gen)
    return mlp_graph([w], [b], input_shape=(dim,)), w, b


@pytest.mark.parametrize("p", NORMS)
def test_pgd_reaches_the_exact_boundary_of_a_linear_model(p: float) -> None:
    graph, w, b = _linear_two_class()
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(30, 20, generator=gen)
    z = graph.evaluate(x)
    y = z.argmax(dim=1)
    v = w[0] - w[1]
    dual = {2.0: 2.0, math.inf: 1.0, 1.0: math.inf}[p]
    dist = (z.gather(1, y[:, None]).squeeze(1) - z.gather(1, 1 - y[:, None]).squeeze(1)) / torch.linalg.vector_norm(v, ord=dual)
    settings = AttackSettings(steps=30, restarts=1, box=None)
    ok_far, adv = pgd(graph, x, y, dist * 1.05, p, settings)
    assert ok_far.all(), f"PGD missed {int((~ok_far).sum())} points at 1.05× the exact distance"
    assert (_norms(adv - x, p) <= dist * 1.05 * (1 + 1e-5) + 1e-6).all()  # float32 round-off of (x+δ)−x
    assert (graph.evaluate(adv).argmax(1) != y).all()
    ok_near, adv = pgd(graph, x, y, dist * 0.95, p, settings)
    assert not ok_near.any()


def test_pgd_respects_the_box_and_the_ball() -> None:
    graph, w, xt, yt = tiny_trained_mlp()
    x, y = xt[:40].reshape(40, -1), yt[:40]
    for p, eps in ((2.0, 1.0), (math.inf, 0.1), (1.0, 5.0)):
        ok, adv = pgd(graph.detached(), x.reshape(40, 1, 28, 28), y, eps, p, AttackSettings(steps=10))
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        assert (_norms(adv - x.reshape(40, 1, 28, 28), p) <= eps * (1 + 1e-5) + 1e-5).all()
        assert ok.any()  # an undefended MLP breaks at these sizes


def test_robust_under_attack_is_monotone_and_below_clean() -> None:
    graph, w, xt, yt = tiny_trained_mlp()
    x, y = xt[:60], yt[:60]
    eps = [0.5, 0.0, 1.5, 1.0]
    calls = []
    robust, seconds = robust_under_attack(graph.detached(), x, y, eps, 2.0, AttackSettings(steps=8), batch_size=16,
                                          progress=lambda d, t: calls.append((d, t)))
    correct = graph.evaluate(x).argmax(1) == y
    assert torch.equal(robust[1], correct)  # ε = 0: exactly the clean-correct points
    order = [1, 0, 3, 2]
    for a, b in zip(order, order[1:]):
        assert (robust[b] <= robust[a]).all()  # robust at a larger ε ⇒ robust at a smaller one
    assert int(robust[2].sum()) < int(correct.sum())
    assert calls[-1] == (len(eps) * 60, len(eps) * 60) and seconds >= 0
    skip = torch.ones(len(eps), 60, dtype=torch.bool)
    robust2, _ = robust_under_attack(graph.detached(), x, y, eps, 2.0, AttackSettings(steps=8), skip=skip)
    assert torch.equal(robust2, correct.expand(len(eps), -1))  # nothing attacked: stays clean-correct
