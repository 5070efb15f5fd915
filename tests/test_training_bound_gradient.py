"""The gradient of the training bound ``pairwise_bound_tensor``: through the power iterations of a
call (the reference training code's) or through the last product only (vectors held fixed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liplt_cli.lipschitz import PowerState, pairwise_bound_tensor
from tests import oracle


def _weights(graph):
    ws = [t for _, t in graph.tensors() if t.dim() == 2]
    for w in ws:
        w.requires_grad_(True)
    return ws


def _random_state(graph, method: str, seed: int) -> PowerState:
    """A fixed, far-from-converged warm start for every power-iteration vector of ``graph``."""
    _, layout = pairwise_bound_tensor(graph, method=method, iterations=1)
    g = torch.Generator().manual_seed(seed)
    vectors = {key: torch.randn(v.shape, generator=g, dtype=v.dtype) for key, v in layout.vectors.items()}
    return PowerState({k: v / v.norm() for k, v in vectors.items()})


def _unrolled_sigma(a: torch.Tensor, v0: torch.Tensor, n: int, through: bool) -> torch.Tensor:
    """‖A v_n‖ with v_n = (AᵀA)ⁿ v0 normalised -- the power estimate written out by hand."""
    v = v0
    for _ in range(n):
        v = a.T @ (a @ v)
        v = v / v.norm()
    if not through:
        v = v.detach()
    return (a @ v).norm()


@pytest.mark.parametrize("through", [True, False])
def test_naive_training_bound_equals_the_unrolled_power_iteration(through):
    """Chain MLP x → W1 → relu → W2 → relu → W3: L_ij = ‖W3_i − W3_j‖ · σ(W2) · σ(W1), each σ the
    3-step power estimate from a given start; values and gradients against a dense transcription."""
    graph = oracle.mlp([3, 5, 4, 3], "relu", seed=11)
    w1, w2, w3 = _weights(graph)
    state = _random_state(graph, "naive", seed=12)
    n = 3
    lip, _ = pairwise_bound_tensor(graph, method="naive", state=state, iterations=n, through_iterations=through)
    starts = {w.shape[1]: v.reshape(-1) for v in state.vectors.values() for w in (w1, w2) if v.numel() == w.shape[1]}
    sigma1 = _unrolled_sigma(w1, starts[w1.shape[1]], n, through)
    sigma2 = _unrolled_sigma(w2, starts[w2.shape[1]], n, through)
    rows = torch.linalg.vector_norm(w3[:, None, :] - w3[None, :, :], dim=2)
    want = rows * sigma1 * sigma2
    torch.testing.assert_close(lip, want, rtol=1e-10, atol=1e-12)
    got = torch.autograd.grad(lip.sum(), (w1, w2, w3))
    ref = torch.autograd.grad(want.sum(), (w1, w2, w3))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["liplt", "naive"])
def test_gradient_through_iterations_is_the_derivative_of_the_computed_estimate(method):
    """With a fixed warm start and n iterations the estimate is a function of the weights; the
    through-iterations gradient matches its central differences, the fixed-vector one does not."""
    graph = oracle.residual_mlp("tanh", seed=3, width=4)
    weights = _weights(graph)
    state = _random_state(graph, method, seed=5)
    n = 2

    def estimate() -> torch.Tensor:
        return pairwise_bound_tensor(graph, method=method, state=state, iterations=n, through_iterations=True)[0].sum()

    through = torch.autograd.grad(estimate(), weights)
    fixed_lip, _ = pairwise_bound_tensor(graph, method=method, state=state, iterations=n)
    fixed = torch.autograd.grad(fixed_lip.sum(), weights)
    eps = 1e-6
    rng = np.random.default_rng(0)
    worst_fixed = 0.0
    for w, g_through, g_fixed in zip(weights, through, fixed):
        for _ in range(3):
            i, j = int(rng.integers(w.shape[0])), int(rng.integers(w.shape[1]))
            with torch.no_grad():
                w[i, j] += eps
                plus = float(estimate())
                w[i, j] -= 2 * eps
                minus = float(estimate())
                w[i, j] += eps
            fd = (plus - minus) / (2 * eps)
            assert float(g_through[i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
            worst_fixed = max(worst_fixed, abs(float(g_fixed[i, j]) - fd))
    assert worst_fixed > 1e-4  # not converged: holding the vectors fixed is another gradient


def test_both_gradients_agree_at_convergence():
    graph = oracle.convnet("relu", seed=4)
    weights = [t for _, t in graph.tensors() if t.dim() in (2, 4)]
    for w in weights:
        w.requires_grad_(True)
    _, state = pairwise_bound_tensor(graph, method="liplt", iterations=400)
    through, _ = pairwise_bound_tensor(graph, method="liplt", state=state, iterations=5, through_iterations=True)
    fixed, _ = pairwise_bound_tensor(graph, method="liplt", state=state, iterations=5)
    torch.testing.assert_close(through, fixed, rtol=0, atol=0)  # same vectors, same numbers
    g_through = torch.autograd.grad(through.sum(), weights)
    g_fixed = torch.autograd.grad(fixed.sum(), weights)
    for a, b in zip(g_through, g_fixed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_the_state_keeps_detached_vectors():
    graph = oracle.mlp([4, 6, 5, 3], "relu", seed=5)
    _weights(graph)
    lip, state = pairwise_bound_tensor(graph, iterations=3, through_iterations=True)
    assert lip.requires_grad
    assert all(not v.requires_grad for v in state.vectors.values())
