"""Property tests of the engine over random graphs: LipLT ≤ naive, L_ij ≤ L_i + L_j, bounds above
the largest gradient norm found by sampling + ascent, and gradients of the training bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liplt_cli.lipschitz import EngineOptions, compute_bounds, pairwise_bound_tensor
from liplt_cli.lipschitz.lower import empirical_lower_bound
from tests import oracle

ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu", "softplus"]


@st.composite
def random_graphs(draw):
    """Random DAGs: dense chains with optional residual adds / subtractions and concatenations."""
    seed = draw(st.integers(0, 10_000))
    b = oracle.Builder((draw(st.integers(2, 5)),), seed)
    h = "x"
    width = draw(st.integers(2, 6))
    h = b.dense(h, width)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["chain", "residual", "concat"]))
        act = draw(st.sampled_from(ACTIVATIONS))
        if kind == "chain":
            h = b.dense(b.act(h, act), width)
        elif kind == "residual":
            r = b.dense(b.act(b.dense(h, width), act), width)
            coef = draw(st.sampled_from([(), (1.0, -1.0), (0.5, 2.0)]))
            h = b.add(h, r, coef)
        else:
            a1 = b.act(b.dense(h, width), act)
            a2 = b.act(b.dense(h, 2), draw(st.sampled_from(ACTIVATIONS)))
            h = b.dense(b.concat(a1, a2), width)
    if draw(st.booleans()):
        h = b.act(h, draw(st.sampled_from(ACTIVATIONS)))
    h = b.dense(h, draw(st.integers(2, 4)))
    return b.build(h)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_graphs(), p=st.sampled_from([2.0, math.inf, 1.0]), explicit=st.booleans())
def test_liplt_below_naive_and_pairwise_below_sum(graph, p, explicit):
    options = EngineOptions(norm=p, explicit_budget=1e15 if explicit else 0.0, explicit_max_side=10_000 if explicit else 0)
    result = compute_bounds(graph, options)
    naive, liplt = result.methods["naive"], result.methods["liplt"]
    assert liplt.global_ <= naive.global_
    assert np.all(np.array(liplt.pairwise) <= np.array(naive.pairwise))
    assert np.all(np.array(liplt.per_class) <= np.array(naive.per_class))
    for m in (naive, liplt):
        L, per = np.array(m.pairwise), np.array(m.per_class)
        assert np.all(L <= per[:, None] + per[None, :] + 1e-9)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_graphs(), p=st.sampled_from([2.0, math.inf, 1.0]))
def test_bounds_above_empirical_lower_bound(graph, p):
    """Every sound bound is at least the largest gradient / Jacobian norm found by ascent."""
    lower = empirical_lower_bound(graph, norm=p, samples=64, ascent_steps=10, box=(-3.0, 3.0))
    result = compute_bounds(graph, EngineOptions(norm=p))
    for m in result.methods.values():
        assert m.global_ >= lower.global_ * (1 - 1e-9)
        assert np.all(np.array(m.per_class) >= np.array(lower.per_class) * (1 - 1e-9))
        assert np.all(np.array(m.pairwise) >= np.array(lower.pairwise) * (1 - 1e-9) - 1e-12)


@pytest.mark.parametrize("build", [lambda: oracle.convnet("relu", pool=True), lambda: oracle.residual_net("tanh")])
def test_conv_and_residual_bounds_above_lower_bound(build):
    graph = build()
    for p in (2.0, math.inf):
        lower = empirical_lower_bound(graph, norm=p, samples=64, ascent_steps=10)
        for m in compute_bounds(graph, EngineOptions(norm=p)).methods.values():
            assert m.global_ >= lower.global_
            assert np.all(np.array(m.pairwise) >= np.array(lower.pairwise) - 1e-12)


@pytest.mark.parametrize("method", ["liplt", "naive"])
def test_training_bound_gradient_matches_finite_differences(method):
    """d L_ij / d W by autograd through the warm-started power iteration equals central differences."""
    graph = oracle.residual_mlp("tanh", seed=3, width=4)
    weights = [t for _, t in graph.tensors() if t.dim() == 2]
    for w in weights:
        w.requires_grad_(True)
    L, state = pairwise_bound_tensor(graph, method=method, iterations=500)
    objective = L.sum()
    objective.backward()
    w = weights[1]
    grad = w.grad.clone()
    eps = 1e-6
    rng = np.random.default_rng(0)
    for _ in range(4):
        i, j = int(rng.integers(w.shape[0])), int(rng.integers(w.shape[1]))
        with torch.no_grad():
            w[i, j] += eps
            plus = pairwise_bound_tensor(graph, method=method, state=state, iterations=200)[0].sum()
            w[i, j] -= 2 * eps
            minus = pairwise_bound_tensor(graph, method=method, state=state, iterations=200)[0].sum()
            w[i, j] += eps
        fd = float(plus - minus) / (2 * eps)
        assert float(grad[i, j]) == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_training_bound_matches_sound_bound_when_converged():
    graph = oracle.convnet("relu", seed=4)
    L, _ = pairwise_bound_tensor(graph, method="liplt", iterations=120)
    sound = compute_bounds(graph, EngineOptions(norm=2.0, explicit_budget=1e15, explicit_max_side=10_000))
    np.testing.assert_allclose(L.detach().numpy(), np.array(sound.methods["liplt"].pairwise), rtol=2e-3, atol=1e-9)


def test_power_state_round_trips_and_warm_starts():
    graph = oracle.mlp([4, 6, 5, 3], "relu", seed=5)
    _, state = pairwise_bound_tensor(graph, iterations=50)
    from liplt_cli.lipschitz import PowerState

    copy = PowerState()
    copy.load_state_dict(state.state_dict())
    assert set(copy.vectors) == set(state.vectors)
    warm, _ = pairwise_bound_tensor(graph, state=copy, iterations=1)
    cold, _ = pairwise_bound_tensor(graph, state=None, iterations=1)
    converged, _ = pairwise_bound_tensor(graph, iterations=300)
    err_warm = float((warm - converged).abs().max())
    err_cold = float((cold - converged).abs().max())
    assert err_warm <= err_cold + 1e-12
