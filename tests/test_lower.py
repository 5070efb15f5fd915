"""Empirical lower bounds (liplt_cli.lipschitz.lower): exact on linear maps, below exact constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.compare_nets import mlp_graph, random_mlp
from liplt_cli.errors import ArgumentError
from liplt_cli.lipschitz.lower import LOWER_BOUND_LABEL, empirical_lower_bound, jacobians


def _linear(seed: int = 0, k: int = 4, n: int = 6):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(k, n, generator=gen, dtype=torch.float64)
    return w, mlp_graph([w])


@pytest.mark.parametrize("p", [2.0, math.inf, 1.0])
def test_linear_layer_lower_bound_is_exact(p):
    w, graph = _linear()
    res = empirical_lower_bound(graph, norm=p, samples=8, ascent_steps=2)
    wn = w.numpy()
    exact_global = {2.0: np.linalg.norm(wn, 2), math.inf: np.abs(wn).sum(1).max(), 1.0: np.abs(wn).sum(0).max()}[p]
    q = {2.0: 2, math.inf: 1, 1.0: np.inf}[p]
    assert res.global_ == pytest.approx(exact_global, abs=1e-4)
    for i in range(4):
        assert res.per_class[i] == pytest.approx(np.linalg.norm(wn[i], q), abs=1e-4)
        for j in range(4):
            expected = 0.0 if i == j else np.linalg.norm(wn[i] - wn[j], q)
            assert res.pairwise[i][j] == pytest.approx(expected, abs=1e-4)
    assert res.label == LOWER_BOUND_LABEL


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_hidden_layer_never_exceeds_norm_product(seed, activation):
    graph = random_mlp([5, 12, 3], activation=activation, seed=seed)
    w0 = graph.node("fc0").op.weight.numpy()
    w1 = graph.node("fc1").op.weight.numpy()
    res = empirical_lower_bound(graph, norm=2.0, samples=64, ascent_steps=10, seed=seed, box=None)
    assert 0 < res.global_ <= np.linalg.norm(w1, 2) * np.linalg.norm(w0, 2) + 1e-9
    for i in range(3):
        # ‖w1_i diag(φ') W0‖ ≤ Σ_h |w1_ih| ‖W0_h‖ (|φ'| ≤ 1): a valid exact upper bound per class
        upper = float(np.abs(w1[i]) @ np.linalg.norm(w0, axis=1))
        assert 0 < res.per_class[i] <= upper + 1e-9


def test_relu_net_exact_constant_reached_with_one_active_pattern():
    # a 1-hidden-layer ReLU net with positive weights: on x > 0 all units are active, so the
    # Jacobian there is W1 W0 and sup ‖J‖ = ‖W1 W0‖ is reached in the [0, 1] box.
    gen = torch.Generator().manual_seed(3)
    w0 = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    w1 = torch.rand(3, 6, generator=gen, dtype=torch.float64)
    graph = mlp_graph([w0, w1], biases=False)
    res = empirical_lower_bound(graph, spec="global", samples=4, ascent_steps=0)
    assert res.global_ == pytest.approx(float(torch.linalg.matrix_norm(w1 @ w0, 2)), rel=1e-9)
    assert res.per_class is None and res.pairwise is None


def test_ascent_improves_on_sampling():
    graph = random_mlp([4, 16, 16, 3], activation="tanh", seed=5)
    few = empirical_lower_bound(graph, spec="global", samples=4, ascent_steps=0, seed=1, box=None)
    more = empirical_lower_bound(graph, spec="global", samples=4, ascent_steps=30, seed=1, box=None)
    assert more.global_ >= few.global_
    assert more.global_ > few.global_ * (1 + 1e-6)


def test_jacobians_match_autograd_reference():
    graph = random_mlp([3, 7, 2], activation="tanh", seed=2)
    x = torch.randn(5, 3, dtype=torch.float64)
    jac = jacobians(graph, x)
    for b in range(5):
        ref = torch.autograd.functional.jacobian(lambda v: graph.evaluate(v.unsqueeze(0))[0], x[b])
        assert torch.allclose(jac[b], ref)


def test_reproducible_with_seed_and_method_bound():
    graph = random_mlp([4, 8, 3], seed=1)
    a = empirical_lower_bound(graph, samples=16, ascent_steps=3, seed=7)
    b = empirical_lower_bound(graph, samples=16, ascent_steps=3, seed=7)
    assert a.pairwise == b.pairwise and a.global_ == b.global_
    mb = a.as_method_bound()
    assert mb.guarantee.value == "estimate" and mb.pairwise_mean == pytest.approx(a.pairwise_mean)
    assert "lower bound" in mb.notes[0]
    assert a.to_dict()["label"] == "estimate (lower bound)"


def test_bad_arguments():
    graph = random_mlp([2, 3, 2])
    with pytest.raises(ArgumentError):
        empirical_lower_bound(graph, spec="rows")
    with pytest.raises(ArgumentError):
        empirical_lower_bound(graph, norm=3.0)
    with pytest.raises(ArgumentError):
        empirical_lower_bound(graph, samples=0)
