"""Soundness: a point certified at radius r keeps its label under every perturbation of norm 0.99·r
we can find — PGD, random, and boundary-directed (along −∇ of each margin) — in ℓ2 and ℓ∞.
The same checks, run with deliberately unsound constants (L/30), must find violations, which
shows they can fail."""

from __future__ import annotations

import math

import pytest
import torch

from liplt_cli.certify import PairwiseConstants, certified_radii, engine_constants
from liplt_cli.certify.attack import AttackSettings, pgd
from liplt_cli.lipschitz.result import Guarantee
from tests.certify_nets import dense_pairwise, small_convnet, tiny_trained_mlp


def _flat_norm(d: torch.Tensor, p: float) -> torch.Tensor:
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1), ord=p, dim=1)


def _directions(shape: tuple[int, ...], p: float, gen: torch.Generator) -> torch.Tensor:
    """Random unit-ℓp directions: uniform on the ℓ2 sphere, random cube corners for ℓ∞."""
    if math.isinf(p):
        return torch.randint(0, 2, shape, generator=gen).float() * 2 - 1
    d = torch.randn(shape, generator=gen)
    return d / _flat_norm(d, 2).reshape(-1, *([1] * (len(shape) - 1)))


def _violations(graph, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, p: float, seed: int = 0,
                steps: int = 40, restarts: int = 2) -> dict[str, int]:
    """How many points change label at some perturbation of ℓp norm 0.99·r, per search method."""
    gen = torch.Generator().manual_seed(seed)
    rad = (0.99 * r).float()
    view = (-1,) + (1,) * (x.dim() - 1)
    found = {}
    ok, adv = pgd(graph, x, y, rad, p, AttackSettings(steps=steps, restarts=restarts, box=None, seed=seed))
    assert (_flat_norm(adv - x, p) <= rad * 1.0001 + 1e-6).all()
    found["pgd"] = int(ok.sum())
    flipped = torch.zeros_like(y, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(16):
            flipped |= graph.evaluate(x + rad.reshape(view) * _directions(tuple(x.shape), p, gen)).argmax(1) != y
    found["random"] = int(flipped.sum())
    flipped = torch.zeros_like(y, dtype=torch.bool)
    k = graph.num_classes
    for i in range(k):
        others = y != i
        xi = x.clone().requires_grad_(True)
        z = graph.evaluate(xi)
        margin = z.gather(1, y[:, None]).squeeze(1) - z[:, i]
        (g,) = torch.autograd.grad(margin.sum(), xi)
        step = -torch.sign(g) if math.isinf(p) else -g / _flat_norm(g, 2).clamp_min(1e-30).reshape(view)
        with torch.no_grad():
            for frac in (0.5, 1.0):  # ReLU nets are piecewise linear: try inside and at the sphere
                moved = graph.evaluate(x + frac * rad.reshape(view) * step).argmax(1) != y
                flipped |= moved & others
    found["boundary"] = int(flipped.sum())
    return found


def _certified(graph, consts: PairwiseConstants, x: torch.Tensor, y: torch.Tensor):
    out = certified_radii(graph, x, y, consts)
    keep = (out.radius > 0) & torch.isfinite(out.radius)
    return x[keep], y[keep], out.radius[keep]


@pytest.mark.parametrize("p", [2.0, math.inf])
@pytest.mark.parametrize("source", ["dense", "engine"])
def test_certified_points_keep_their_label(p: float, source: str) -> None:
    graph, w, xt, yt = tiny_trained_mlp()
    graph = graph.detached()
    consts = dense_pairwise(w, p) if source == "dense" else engine_constants(graph, norm=p)
    assert consts.sound
    x, y, r = _certified(graph, consts, xt, yt)
    assert len(y) >= 100  # most test points are certified at some positive radius
    assert _violations(graph, x, y, r, p) == {"pgd": 0, "random": 0, "boundary": 0}


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_conv_net_certified_points_keep_their_label(p: float) -> None:
    graph, xt, yt = small_convnet()
    consts = engine_constants(graph, norm=p)
    assert consts.sound
    x, y, r = _certified(graph, consts, xt, yt)
    assert len(y) == len(yt)  # labels are the net's own predictions: every radius is positive
    assert _violations(graph, x, y, r, p, steps=20, restarts=1) == {"pgd": 0, "random": 0, "boundary": 0}


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_the_checks_catch_unsound_constants(p: float) -> None:
    graph, w, xt, yt = tiny_trained_mlp()
    graph = graph.detached()
    sound = engine_constants(graph, norm=p)
    fake = PairwiseConstants(sound.matrix / 30, Guarantee.ESTIMATE, norm=p, method="fake")
    x, y, r = _certified(graph, fake, xt, yt)
    found = _violations(graph, x, y, r, p)
    assert found["pgd"] > 0 and found["boundary"] > 0
