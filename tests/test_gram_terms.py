"""Exact inner terms from Gram matrices (probing, banded certificates, dominators, bottlenecks)
against dense oracles: explicit maps from autograd Jacobians and numpy SVD norms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liplt_cli.graph import ActivationNode, Conv, ConvTranspose, InputNode, LayerGraph, LinearNode
from liplt_cli.graph.linear_ops import conv_out_size
from liplt_cli.lipschitz import EngineOptions, Guarantee, compute_bounds
from liplt_cli.lipschitz.banded import BandLayout, banded_cholesky, banded_congruence
from liplt_cli.lipschitz.chains import dominators, split_bounds
from liplt_cli.lipschitz.eigen import certify_top, lanczos_top
from liplt_cli.lipschitz.gram import GramBuilder, bottleneck_norm
from liplt_cli.lipschitz.lower import empirical_lower_bound
from liplt_cli.lipschitz.structure import LT, analyse
from liplt_cli.lipschitz.support import GramSide, colour_positions, owners
from liplt_cli.lipschitz.terms import Terms
from tests import oracle


# ----------------------------------------------------------------------------- nets
def conv_chain(seed: int = 0, size: int = 7) -> LayerGraph:
    """Four convolutions (stride 1 and 2, padding, groups, dilation) then two dense layers."""
    b = oracle.Builder((3, size, size), seed)
    h = b.act(b.conv("x", 4, 3, 1, 1), "relu")
    h = b.act(b.conv(h, 6, 4, 2, 1), "tanh")
    h = b.act(dilated(b, h, 6, 3, dilation=2, padding=2, groups=2), "leaky_relu")
    h = b.act(b.conv(h, 4, 2, 2, 0), "relu")
    h = b.act(b.dense(b.flatten(h), 10), "relu")
    return b.build(b.dense(h, 3))


def dilated(b: oracle.Builder, src: str, out_c: int, k: int, dilation: int, padding: int, groups: int) -> str:
    c, h, w = b.shape(src)
    ho, wo = (conv_out_size(n, k, 1, padding, dilation) for n in (h, w))
    weight = b.randn(out_c, c // groups, k, k, scale=(c * k * k / groups) ** -0.5 * 1.5)
    op = Conv(weight, None, (1, 1), (padding, padding), (dilation, dilation), groups, (c, h, w), (out_c, ho, wo))
    return b._add(LinearNode(b._name("conv"), (src,), op))


def transposed_net(seed: int = 0) -> LayerGraph:
    """conv (stride 2) → act → transposed conv (stride 2) → act → conv → flatten → dense."""
    b = oracle.Builder((2, 6, 6), seed)
    h = b.act(b.conv("x", 4, 3, 2, 1), "relu")
    c, hh, ww = b.shape(h)
    weight = b.randn(c, 3, 3, 3, scale=(c * 9) ** -0.5 * 1.5)
    out = (3, (hh - 1) * 2 - 2 + 3 + 1, (ww - 1) * 2 - 2 + 3 + 1)
    op = ConvTranspose(weight, None, (2, 2), (1, 1), (1, 1), (1, 1), 1, (c, hh, ww), out)
    h = b.act(b._add(LinearNode(b._name("convT"), (h,), op)), "tanh")
    h = b.act(b.conv(h, 2, 3, 1, 1), "relu")
    return b.build(b.dense(b.flatten(h), 3))


def conv1d_net(seed: int = 0) -> LayerGraph:
    """1-d convolutions: (C, L) feature maps."""
    gen = torch.Generator().manual_seed(seed)
    nodes: list = [InputNode("x", (2, 12))]

    def conv(name, src, c_in, c_out, k, s, p, length):
        w = torch.randn(c_out, c_in, k, generator=gen, dtype=torch.float64) * (c_in * k) ** -0.5 * 1.5
        out = conv_out_size(length, k, s, p, 1)
        nodes.append(LinearNode(name, (src,), Conv(w, None, (s,), (p,), (1,), 1, (c_in, length), (c_out, out))))
        return out

    n1 = conv("c1", "x", 2, 3, 3, 1, 1, 12)
    nodes.append(ActivationNode("a1", ("c1",), (3, n1), oracle.make_activation("relu")))
    n2 = conv("c2", "a1", 3, 4, 4, 2, 1, n1)
    nodes.append(ActivationNode("a2", ("c2",), (4, n2), oracle.make_activation("tanh")))
    conv("c3", "a2", 4, 2, 3, 1, 1, n2)
    g = LayerGraph(tuple(nodes), "c3")
    g.validate()
    return g


NETS = {
    "conv-chain": lambda: conv_chain(),
    "conv-pool": lambda: oracle.convnet("relu", seed=3, size=8, pool=True),
    "residual-bn": lambda: oracle.residual_net("relu", seed=4),
    "residual-silu": lambda: oracle.residual_net("silu", seed=5, bn=False),
    "transposed": lambda: transposed_net(),
    "conv1d": lambda: conv1d_net(),
    "mlp": lambda: oracle.mlp([5, 7, 6, 4], "relu"),
}


@pytest.fixture(scope="module")
def cases():
    out = {}
    for name, build in NETS.items():
        g = build().detached().to(dtype=torch.float64)
        out[name] = (g, analyse(g, 2.0), oracle.explicit_maps(g, "lt"))
    return out


def _pairs(structure):
    return [(k, s) for k in structure.targets if k != structure.output for s in structure.sources_of(LT, k)]


def _svd(a: np.ndarray) -> float:
    return float(np.linalg.norm(a, 2)) if a.size else 0.0


# ----------------------------------------------------------------------------- banded algebra
def _conv_gram(seed: int, shape=(3, 7, 5), k: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    c, h, w = shape
    n = c * h * w
    weight = torch.randn(4, c, k, k, generator=gen, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, c, h, w)
    a = torch.nn.functional.conv2d(eye, weight, padding=k // 2).reshape(n, -1).T
    g = a.T @ a
    return 0.5 * (g + g.T)


def _dense(band, symmetric: bool = True) -> torch.Tensor:
    """The matrix (block order) of a symmetric matrix's lower band, or of a block lower factor."""
    m, nb = band.layout.block, band.layout.blocks
    out = torch.zeros(m * nb, m * nb, dtype=torch.float64)
    for (i, j), b in band.blocks.items():
        out[i * m : (i + 1) * m, j * m : (j + 1) * m] = b
        if symmetric and i != j:
            out[j * m : (j + 1) * m, i * m : (i + 1) * m] = b.T
    return out


def _block_order(layout: BandLayout, matrix: torch.Tensor) -> torch.Tensor:
    n = matrix.shape[0]
    index = layout.vector(torch.arange(n))
    return matrix[index][:, index]


def test_band_layout_reads_the_band_and_orders_vectors_both_ways():
    shape = (3, 7, 5)
    g = _conv_gram(0, shape)
    layout = BandLayout.of(g, shape)
    assert (layout.block, layout.blocks, layout.width) == (15, 7, 2)
    ordered = _block_order(layout, g)
    for i in range(7):
        for j in range(7):
            block = ordered[i * 15 : (i + 1) * 15, j * 15 : (j + 1) * 15]
            if abs(i - j) > 2:
                assert bool((block == 0).all())
    assert torch.equal(_dense(layout.band(g)), ordered)
    v = torch.randn(g.shape[0], dtype=torch.float64)
    assert torch.equal(layout.unvector(layout.vector(v)), v)
    assert torch.allclose(layout.vector(g @ v), layout.band(g).symmetric_matvec(layout.vector(v)))
    assert BandLayout.of(torch.eye(6, dtype=torch.float64), (6,)).blocks == 1


def test_banded_cholesky_congruence_and_products_equal_dense_algebra():
    shape = (3, 7, 5)
    g = _conv_gram(1, shape)
    layout = BandLayout.of(g, shape)
    a = layout.band(g).shifted(0.1)
    lower = banded_cholesky(a)
    assert lower is not None
    dense_a = _block_order(layout, g) + 0.1 * torch.eye(g.shape[0], dtype=torch.float64)
    dense_l = _dense(lower, symmetric=False)
    assert torch.allclose(dense_l, torch.linalg.cholesky(dense_a), atol=1e-10)
    other = layout.band(_conv_gram(2, shape))
    m = banded_congruence(other, lower)
    assert m.width == min(3 * layout.width, layout.blocks - 1)
    expected = dense_l.T @ _dense(other) @ dense_l
    assert torch.allclose(_dense(m), expected, atol=1e-9)
    v = torch.randn(g.shape[0], dtype=torch.float64)
    assert torch.allclose(lower.lower_matvec(v), dense_l @ v)
    assert torch.allclose(lower.lower_matvec(v, transpose=True), dense_l.T @ v)
    assert torch.allclose(m.symmetric_matvec(v), expected @ v)
    d = torch.rand(g.shape[0], dtype=torch.float64)
    scaled = other.scaled(d)
    assert torch.allclose(_dense(scaled), d[:, None] * _dense(other) * d[None, :])
    # not positive definite: no factor
    assert banded_cholesky(a.shifted(0.0, scale=-1.0)) is None


@pytest.mark.parametrize("seed", range(4))
def test_certified_top_eigenvalue_is_an_upper_bound_within_its_gap(seed):
    shape = (3, 7, 5)
    g = _conv_gram(seed, shape)
    band = BandLayout.of(g, shape).band(g)
    top = float(torch.linalg.eigvalsh(g)[-1])
    ritz = lanczos_top(lambda v: g @ v, g.shape[0], g.dtype, g.device)
    assert ritz <= top * (1 + 1e-12)
    cert = certify_top(band, ritz)
    assert cert is not None and cert.exact
    assert top <= cert.value <= top * (1 + 2 * cert.gap) + 1e-12
    # a poor Ritz value gives a looser, still sound, bound labelled by its gap, or none at all
    rough = certify_top(band, 0.995 * top)
    assert rough is not None and rough.value >= top and not rough.exact
    assert certify_top(band, 0.5 * top) is None


# ----------------------------------------------------------------------------- probing and Grams
@pytest.mark.parametrize("name", list(NETS))
def test_probed_gram_matrices_equal_the_dense_gram_on_either_side(cases, name):
    graph, structure, maps = cases[name]
    builder = GramBuilder(structure, chunk=7)  # small chunks: probes split across batches
    saved = 0
    for k, s in _pairs(structure):
        a = maps[(k, s)]
        for spec, dense in ((GramSide(LT, k, s, True), a @ a.T), (GramSide(LT, s, k, False), a.T @ a)):
            gram = builder.gram(spec).numpy()
            np.testing.assert_allclose(gram, dense, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(dense).max()))
            probing = builder.probing(spec)
            saved += probing.channels * probing.positions - probing.probes
            for cls in probing.classes:  # the supports of a class never overlap
                assert int(probing.supports[cls].sum(dim=0).max()) <= 1
                owner = owners(probing.supports, cls)
                assert set(owner[owner >= 0].tolist()) <= set(cls.tolist())
    if name in ("conv-chain", "conv-pool", "conv1d", "transposed"):
        assert saved > 0  # probing really shares products on spatial nets


@pytest.mark.parametrize("name", list(NETS))
def test_gram_norms_equal_svd_norms(cases, name):
    graph, structure, maps = cases[name]
    builder = GramBuilder(structure)
    for k, s in _pairs(structure):
        exact = _svd(maps[(k, s)])
        for spec in (GramSide(LT, k, s, True), GramSide(LT, s, k, False)):
            cert = builder.norm(spec)
            assert cert is not None and cert.exact
            assert cert.value >= exact * (1 - 1e-12)
            assert cert.value <= exact * (1 + 1e-5) + 1e-12


def test_colouring_of_a_supports_matrix():
    supports = torch.zeros(6, 6, dtype=torch.bool)
    for p in range(6):
        supports[p, max(0, p - 1) : p + 2] = True
    classes = colour_positions(supports)
    assert sorted(sum((c.tolist() for c in classes), [])) == list(range(6))
    assert len(classes) == 3
    for cls in classes:
        assert int(supports[cls].sum(dim=0).max()) <= 1


# ----------------------------------------------------------------------------- dominators, split, bottleneck
@pytest.mark.parametrize("name", list(NETS))
def test_dominators_factor_the_map(cases, name):
    graph, structure, maps = cases[name]
    pairs = _pairs(structure)
    doms = dominators(structure, pairs)
    found = 0
    for (k, s), ls in doms.of.items():
        for l in ls:
            c = structure.transform.centre[l]
            product = maps[(k, l)] @ (c * maps[(structure.pre[l], s)])
            np.testing.assert_allclose(product, maps[(k, s)], rtol=1e-9, atol=1e-12)
            found += 1
    if name in ("conv-chain", "conv-pool", "conv1d", "mlp", "transposed"):
        # in a chain every activation strictly between source and target dominates
        for k, s in pairs:
            between = [l for l in structure.activations  # (a target may be an activation itself)
                       if graph.position(s) < graph.position(l) < graph.position(k) or l == k != s]
            assert set(doms.of[(k, s)]) == set(between)
    if name.startswith("residual"):
        # the skip connection goes around the block's inner activation
        inner = structure.activations[1]
        assert all(inner not in ls for (k, s), ls in doms.of.items() if s == structure.activations[0])
    assert found > 0


@pytest.mark.parametrize("name", list(NETS))
def test_split_bounds_are_sound_and_use_exact_pieces(cases, name):
    graph, structure, maps = cases[name]
    pairs = _pairs(structure)
    doms = dominators(structure, pairs)
    terms = Terms()
    builder = GramBuilder(structure)
    shortest = {}
    for k, s in pairs:  # exact one-step maps, loose (doubled) long ones
        one_step = not doms.of[(k, s)]
        value = _svd(maps[(k, s)]) * (1.0 if one_step else 2.0)
        terms.offer(LT, k, s, torch.tensor(value, dtype=torch.float64),
                    Guarantee.EXACT if one_step else Guarantee.UPPER_BOUND)
        shortest[(k, s)] = one_step
    split_bounds(structure, doms, terms, pairs)
    for k, s in pairs:
        assert float(terms.get(LT, k, s).value) >= _svd(maps[(k, s)]) * (1 - 1e-12)
    del builder


@pytest.mark.parametrize("name", ["conv-chain", "conv-pool", "transposed", "conv1d", "residual-bn"])
def test_bottleneck_norm_through_each_dominator_equals_svd(cases, name):
    graph, structure, maps = cases[name]
    builder = GramBuilder(structure)
    doms = dominators(structure, _pairs(structure))
    checked = 0
    for (k, s), ls in doms.of.items():
        for l in ls:
            left, right = GramSide(LT, l, k, False), GramSide(LT, structure.pre[l], s, True)
            exact = _svd(maps[(k, s)])
            cert = bottleneck_norm(builder, left, right, structure.transform.centre[l])
            assert cert is not None and cert.exact
            assert exact * (1 - 1e-12) <= cert.value <= exact * (1 + 1e-5) + 1e-12
            # per-neuron centres (one per coordinate of l)
            shape = graph.node(l).out_shape
            gen = torch.Generator().manual_seed(checked)
            centre = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 0.5
            u, v = maps[(k, l)], maps[(structure.pre[l], s)]
            exact_c = _svd(u @ (centre.reshape(-1, 1).numpy() * v))
            cert = bottleneck_norm(builder, left, right, centre)
            assert cert is not None
            assert exact_c * (1 - 1e-12) <= cert.value <= exact_c * (1 + 1e-5) + 1e-12
            checked += 1
    assert checked > 0


# ----------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("name", ["conv-chain", "conv-pool", "residual-bn", "transposed", "conv1d"])
def test_engine_with_gram_terms_equals_dense_oracle(cases, name):
    """No map dense-explicit, every inner ℓ2 term by a Gram matrix: the exact LipLT numbers."""
    graph, structure, maps = cases[name]
    ref = oracle.dense_bounds(graph, 2.0, {"cut": oracle.explicit_maps(graph, "cut"), "lt": maps})
    options = EngineOptions(explicit_budget=1e15, explicit_max_side=0, gram_budget=1e15, gram_max_side=10_000)
    liplt = compute_bounds(graph, options).methods["liplt"]
    exact = min(ref["liplt"]["global"], ref["naive"]["global"])
    assert liplt.global_ >= exact * (1 - 1e-12)
    assert liplt.global_ == pytest.approx(exact, rel=1e-5)
    pairwise = np.minimum(ref["liplt"]["pairwise"], ref["naive"]["pairwise"])
    assert np.all(np.array(liplt.pairwise) >= pairwise * (1 - 1e-12) - 1e-15)
    np.testing.assert_allclose(liplt.pairwise, pairwise, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("budget", [0.0, 1e4, 1e6, 1e15])
@pytest.mark.parametrize("name", ["conv-chain", "residual-bn"])
def test_engine_numbers_fall_with_the_gram_budget_and_stay_above_exact(cases, name, budget):
    graph, structure, maps = cases[name]
    ref = oracle.dense_bounds(graph, 2.0, {"cut": oracle.explicit_maps(graph, "cut"), "lt": maps})
    exact = min(ref["liplt"]["global"], ref["naive"]["global"])
    base = EngineOptions(explicit_budget=1e15, explicit_max_side=0, gram_budget=0.0, gram_max_side=10_000)
    structural = compute_bounds(graph, base).methods["liplt"].global_
    options = EngineOptions(explicit_budget=1e15, explicit_max_side=0, gram_budget=budget, gram_max_side=10_000)
    value = compute_bounds(graph, options).methods["liplt"].global_
    assert exact * (1 - 1e-12) <= value <= structural * (1 + 1e-12)


# ----------------------------------------------------------------------------- properties on random conv nets
@st.composite
def random_conv_nets(draw):
    """Small random conv nets: 2-3 convolutions (kernel, stride, padding drawn), activations drawn,
    optionally a residual block, then a dense head."""
    seed = draw(st.integers(0, 10_000))
    size = draw(st.integers(5, 7))
    b = oracle.Builder((draw(st.integers(1, 2)), size, size), seed)
    h = "x"
    for _ in range(draw(st.integers(2, 3))):
        c, hh, _ = b.shape(h)
        k = draw(st.integers(1, min(3, hh)))
        stride = draw(st.sampled_from([1, 2])) if hh >= 4 else 1
        h = b.conv(h, draw(st.integers(1, 3)), k, stride, draw(st.integers(0, k // 2)))
        h = b.act(h, draw(st.sampled_from(ACTIVATIONS)))
    if draw(st.booleans()):
        c = b.shape(h)[0]
        r = b.act(b.conv(h, c, 3, 1, 1), draw(st.sampled_from(ACTIVATIONS)))
        h = b.act(b.add(h, b.conv(r, c, 3, 1, 1)), "relu")
    return b.build(b.dense(b.flatten(h), draw(st.integers(2, 3))))


ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_conv_nets(), budget=st.sampled_from([0.0, 1e5, math.inf]))
def test_gram_path_stays_sound_on_random_conv_nets(graph, budget):
    """LipLT ≤ naive, L_ij ≤ L_i + L_j, and every sound number above the largest gradient norm found
    by sampling + ascent, whatever part of the terms the Gram budget makes exact."""
    options = EngineOptions(explicit_max_side=0, gram_budget=budget, gram_max_side=10_000)
    result = compute_bounds(graph, options)
    naive, liplt = result.methods["naive"], result.methods["liplt"]
    assert liplt.global_ <= naive.global_
    assert np.all(np.array(liplt.pairwise) <= np.array(naive.pairwise))
    lower = empirical_lower_bound(graph, norm=2.0, samples=32, ascent_steps=8)
    for m in (naive, liplt):
        assert m.guarantee.sound
        assert m.global_ >= lower.global_ * (1 - 1e-9)
        assert np.all(np.array(m.pairwise) >= np.array(lower.pairwise) * (1 - 1e-9) - 1e-12)
        L, per = np.array(m.pairwise), np.array(m.per_class)
        assert np.all(L <= per[:, None] + per[None, :] + 1e-9)
    if math.isinf(budget):
        assert liplt.guarantee is Guarantee.EXACT
