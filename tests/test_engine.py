"""The naive and LipLT engines against independent dense computations (tests/oracle.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liplt_cli.lipschitz import EngineOptions, Guarantee, compute_bounds
from tests import oracle

NORMS = [2.0, math.inf, 1.0]
EXACT = EngineOptions(explicit_budget=1e15, explicit_max_side=10_000)  # everything explicit
STRUCTURAL = EngineOptions(explicit_budget=0.0, explicit_max_side=0)  # nothing explicit


def _opts(base: EngineOptions, p: float) -> EngineOptions:
    return EngineOptions(norm=p, explicit_budget=base.explicit_budget, explicit_max_side=base.explicit_max_side)


NETS = {
    "mlp-relu": lambda: oracle.mlp([5, 7, 6, 4], "relu"),
    "mlp-leaky": lambda: oracle.mlp([5, 7, 6, 4], "leaky_relu", seed=1, negative_slope=0.1),
    "mlp-tanh": lambda: oracle.mlp([5, 7, 6, 4], "tanh", seed=2),
    "mlp-sigmoid": lambda: oracle.mlp([5, 6, 6, 3], "sigmoid", seed=3),
    "mlp-gelu": lambda: oracle.mlp([5, 6, 6, 3], "gelu", seed=4),
    "conv-relu": lambda: oracle.convnet("relu"),
    "conv-tanh-pool": lambda: oracle.convnet("tanh", seed=5, pool=True),
    "residual-bn": lambda: oracle.residual_net("relu"),
    "residual-silu": lambda: oracle.residual_net("silu", seed=6, bn=False),
    "residual-mlp": lambda: oracle.residual_mlp("relu", seed=7),
    "residual-mlp-sub": lambda: oracle.residual_mlp("tanh", seed=8, coefficients=(1.0, -0.5)),
    "concat": lambda: oracle.concat_net(seed=9),
}


@pytest.fixture(scope="module")
def nets():
    return {name: build() for name, build in NETS.items()}


@pytest.fixture(scope="module")
def dense(nets):
    out = {}
    for name, g in nets.items():
        maps = {mode: oracle.explicit_maps(g, mode) for mode in ("cut", "lt")}
        for p in NORMS:
            out[(name, p)] = oracle.dense_bounds(g, p, maps)
    return out


def _check_close(method_bound, reference, rtol=1e-5):
    """Equal up to the certified eigenvalue gap (1e-6) and the safety margin, and never below."""
    assert method_bound.global_ >= reference["global"] * (1 - 1e-12)
    assert np.all(np.array(method_bound.pairwise) >= np.array(reference["pairwise"]) * (1 - 1e-12))
    assert method_bound.global_ == pytest.approx(reference["global"], rel=rtol, abs=1e-9)
    np.testing.assert_allclose(method_bound.per_class, reference["per_class"], rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(method_bound.pairwise, reference["pairwise"], rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("p", NORMS, ids=["l2", "linf", "l1"])
@pytest.mark.parametrize("name", list(NETS))
def test_exact_engine_equals_dense_oracle(nets, dense, name, p):
    """With every map explicit, both methods equal the dense recursion (eqs. 11 and 16)."""
    result = compute_bounds(nets[name], _opts(EXACT, p))
    ref = dense[(name, p)]
    naive, liplt = result.methods["naive"], result.methods["liplt"]
    _check_close(naive, ref["naive"])
    # LipLT is capped by naive (Proposition 3), the oracle is not: compare to the min.
    capped = {
        "global": min(ref["liplt"]["global"], ref["naive"]["global"]),
        "per_class": np.minimum(ref["liplt"]["per_class"], ref["naive"]["per_class"]),
        "pairwise": np.minimum(ref["liplt"]["pairwise"], ref["naive"]["pairwise"]),
    }
    _check_close(liplt, capped)
    assert naive.guarantee is Guarantee.EXACT and liplt.guarantee is Guarantee.EXACT


@pytest.mark.parametrize("p", NORMS, ids=["l2", "linf", "l1"])
@pytest.mark.parametrize("name", list(NETS))
def test_structural_bounds_are_upper_bounds(nets, dense, name, p):
    """With nothing explicit (products, FFT and |A| bounds) the numbers stay above the exact ones."""
    result = compute_bounds(nets[name], _opts(STRUCTURAL, p))
    ref = dense[(name, p)]
    for method in ("naive", "liplt"):
        bound, exact = result.methods[method], ref[method]
        exact_global = exact["global"] if method == "naive" else min(exact["global"], ref["naive"]["global"])
        assert bound.global_ >= exact_global * (1 - 1e-9)
        assert np.all(np.array(bound.pairwise) >= np.array(exact["pairwise"]) * (1 - 1e-9) - 1e-12) or method == "liplt"
        assert bound.guarantee.sound
    assert result.methods["liplt"].global_ <= result.methods["naive"].global_
    # The exact LipLT constant is the tightest sound number of the two computations.
    assert result.methods["liplt"].pairwise_mean >= min(
        np.mean([ref["liplt"]["pairwise"][i][j] for i in range(len(ref["liplt"]["pairwise"])) for j in range(i)]),
        np.mean([ref["naive"]["pairwise"][i][j] for i in range(len(ref["naive"]["pairwise"])) for j in range(i)]),
    ) * (1 - 1e-9)


def test_one_hidden_layer_matches_equations_11_and_13():
    g = oracle.mlp([6, 9, 4], "tanh", seed=11)
    w0 = g.node("fc1").op.weight.numpy()
    w1 = g.node("fc3").op.weight.numpy()
    alpha, beta = 0.0, 1.0
    eq11 = beta * np.linalg.norm(w1, 2) * np.linalg.norm(w0, 2)
    eq13 = np.linalg.norm((alpha + beta) / 2 * w1 @ w0, 2) + (beta - alpha) / 2 * np.linalg.norm(w1, 2) * np.linalg.norm(w0, 2)
    result = compute_bounds(g, EngineOptions(norm=2.0))
    assert result.methods["naive"].global_ == pytest.approx(eq11, rel=1e-5)
    assert result.methods["liplt"].global_ == pytest.approx(eq13, rel=1e-5)
    assert result.methods["liplt"].guarantee is Guarantee.EXACT
    # pairwise row (e_i - e_j)ᵀ W1 of eq. 13
    i, j = 0, 2
    row = (w1[i] - w1[j])[None, :]
    eq13_ij = np.linalg.norm(0.5 * row @ w0) + 0.5 * np.linalg.norm(row) * np.linalg.norm(w0, 2)
    assert result.methods["liplt"].pairwise[i][j] == pytest.approx(eq13_ij, rel=1e-5)


@pytest.mark.parametrize("name", ["conv-relu", "residual-bn", "residual-mlp"])
def test_fast_estimates_converge_to_exact(nets, dense, name):
    result = compute_bounds(nets[name], EngineOptions(norm=2.0, fast=True, iterations=200))
    ref = dense[(name, 2.0)]
    liplt = result.methods["liplt"]
    assert liplt.guarantee is Guarantee.ESTIMATE
    assert liplt.iterations == 200
    # power iteration approaches each norm from below; the recursion is monotone in its terms
    assert liplt.global_ == pytest.approx(ref["liplt"]["global"], rel=5e-3)
    assert liplt.global_ <= ref["liplt"]["global"] * (1 + 1e-4)
    assert result.methods["naive"].global_ == pytest.approx(ref["naive"]["global"], rel=5e-3)
    assert result.methods["naive"].global_ <= ref["naive"]["global"] * (1 + 1e-4)


def test_pairwise_triangle_and_proxies(nets):
    for name, g in nets.items():
        for method in compute_bounds(g, EngineOptions(norm=2.0)).methods.values():
            L, per = np.array(method.pairwise), np.array(method.per_class)
            assert np.allclose(L, L.T)
            assert np.all(np.diag(L) == 0)
            assert np.all(L <= per[:, None] + per[None, :] + 1e-9), name
            assert np.all(per <= method.global_ * (1 + 1e-9)), name
            assert method.pairwise_max <= math.sqrt(2) * method.global_ * (1 + 1e-9), name


def test_conv_fft_bound_is_above_exact_norm():
    from liplt_cli.lipschitz.norms import conv_fft_bound

    for seed, (k, s, pad, groups) in enumerate([(3, 1, 1, 1), (4, 2, 1, 1), (3, 2, 0, 2), (1, 1, 0, 1), (2, 2, 0, 4)]):
        b = oracle.Builder((4, 7, 7), seed)
        name = b.conv("x", 4, k, s, pad, groups)
        op = b.nodes[-1].op
        cols = op.linear(torch.eye(4 * 49, dtype=torch.float64).reshape(-1, 4, 7, 7)).reshape(4 * 49, -1)
        exact = np.linalg.norm(cols.numpy(), 2)
        bound = float(conv_fft_bound(op))
        assert bound >= exact * (1 - 1e-9), (name, bound, exact)
        if k == 1:
            assert bound == pytest.approx(exact, rel=1e-9)
        if s == 1:  # stride drops outputs, so only stride-1 convolutions are near the circulant norm
            assert bound <= exact * 1.5


def test_linear_ops_adjoint_identity():
    gens = [oracle.convnet("relu"), oracle.residual_net("relu"), oracle.concat_net()]
    torch.manual_seed(0)
    for g in gens:
        for node in g.nodes:
            op = getattr(node, "op", None)
            if op is None:
                continue
            x = torch.randn(3, *op.in_shape, dtype=torch.float64)
            y = torch.randn(3, *op.out_shape, dtype=torch.float64)
            lhs = (op.linear(x) * y).sum()
            rhs = (x * op.adjoint(y)).sum()
            assert float(lhs) == pytest.approx(float(rhs), rel=1e-10, abs=1e-10), node.name


def test_float32_graph_gives_float64_numbers_and_cpu_device():
    g = oracle.mlp([4, 5, 3]).to(dtype=torch.float32)
    r = compute_bounds(g)
    assert r.device == "cpu"
    assert isinstance(r.methods["liplt"].global_, float)
    d = r.to_dict()
    assert set(d["methods"]["liplt"]) >= {"global", "per_class", "pairwise", "pairwise_mean", "pairwise_max", "guarantee", "seconds"}
