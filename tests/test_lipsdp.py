"""LipSDP-Neuron (liplt_cli.lipschitz.lipsdp): between the lower bound and naive / LipLT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.compare_nets import random_mlp, random_residual
from liplt_cli.lipschitz import lipsdp
from liplt_cli.lipschitz.lipsdp import SkippedMethod, feedforward_chain, lipsdp_bounds
from liplt_cli.lipschitz.lower import empirical_lower_bound

pytest.importorskip("cvxpy", reason="cvxpy is an optional extra (pip install 'liplt[lipsdp]')")


def _weights(graph, layers):
    return [graph.node(f"fc{i}").op.weight.numpy() for i in range(layers)]


@pytest.mark.parametrize("seed", [0, 1])
def test_one_hidden_layer_between_lower_bound_and_liplt(seed):
    graph = random_mlp([4, 8, 3], activation="relu", seed=seed)
    w0, w1 = _weights(graph, 2)
    res = lipsdp_bounds(graph)
    assert not isinstance(res, SkippedMethod)
    assert res.guarantee.value == "upper bound", res.notes
    naive = np.linalg.norm(w1, 2) * np.linalg.norm(w0, 2)
    # eq. (13) with H = 0, G = W1, W = W0, ReLU (α, β) = (0, 1)
    liplt = np.linalg.norm(0.5 * w1 @ w0, 2) + 0.5 * np.linalg.norm(w1, 2) * np.linalg.norm(w0, 2)
    lower = empirical_lower_bound(graph, samples=64, ascent_steps=10, seed=seed, box=None)
    assert lower.global_ <= res.global_ <= liplt * (1 + 1e-6) <= naive * (1 + 1e-6)
    for i in range(3):
        assert lower.per_class[i] <= res.per_class[i] <= np.abs(w1[i]) @ np.linalg.norm(w0, axis=1) * (1 + 1e-6)
        for j in range(3):
            if i != j:
                assert lower.pairwise[i][j] <= res.pairwise[i][j]
                assert res.pairwise[i][j] <= np.linalg.norm(w1[i] - w1[j]) * np.linalg.norm(w0, 2) * (1 + 1e-6)


def test_two_hidden_layers_below_naive_and_above_lower_bound():
    graph = random_mlp([5, 10, 10, 3], activation="tanh", seed=3)
    ws = _weights(graph, 3)
    res = lipsdp_bounds(graph, specs=("global", "pairwise"))
    naive = math.prod(np.linalg.norm(w, 2) for w in ws)
    lower = empirical_lower_bound(graph, spec="all", samples=64, ascent_steps=10, box=None)
    assert lower.global_ <= res.global_ <= naive
    assert lower.pairwise_mean <= res.pairwise_mean
    assert all(math.isnan(v) for v in res.per_class)  # not asked for


def test_linear_output_layer_is_tight_for_linear_activation():
    # identity activation (α = β = 1): the network is linear and LipSDP is exact
    graph = random_mlp([3, 5, 2], activation="identity", seed=4)
    w0, w1 = _weights(graph, 2)
    res = lipsdp_bounds(graph, specs=("global",))
    assert res.global_ == pytest.approx(np.linalg.norm(w1 @ w0, 2), rel=1e-3)


def test_input_reduction_keeps_weights_consistent():
    graph = random_mlp([30, 4, 2], seed=5)
    ff = feedforward_chain(graph)
    reduced = lipsdp._reduce_input(ff.weights)
    assert reduced[0].shape == (4, 4)
    # same Gram matrix W0 W0ᵀ, hence the same ℓ2 Lipschitz constant of x ↦ g(W0 x)
    assert np.allclose(reduced[0] @ reduced[0].T, ff.weights[0] @ ff.weights[0].T)


def test_skipped_with_reasons(monkeypatch):
    assert "ℓ2" in lipsdp_bounds(random_mlp([3, 4, 2]), norm=math.inf).reason
    res = lipsdp_bounds(random_residual())
    assert isinstance(res, SkippedMethod) and "chain" in res.reason
    big = lipsdp_bounds(random_mlp([3, 40, 40, 2]), max_neurons=50)
    assert "too large" in big.reason and big.to_dict()["skipped"] is True
    monkeypatch.setattr(lipsdp, "cvxpy_available", lambda: False)
    assert "cvxpy" in lipsdp_bounds(random_mlp([3, 4, 2])).reason
