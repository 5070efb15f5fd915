"""Theorem 2 refinement (liplt_cli.lipschitz.refine): T = SN is LipLT; AOL/SLL are sound."""

from __future__ import annotations

import math

import pytest
import torch

from liplt_cli.graph import BlockNode, InputNode, LayerGraph, LinearNode, MaxPool, Reshape
from liplt_cli.lipschitz import compute_bounds
from liplt_cli.lipschitz.lipsdp import SkippedMethod
from liplt_cli.lipschitz.lower import empirical_lower_bound
from liplt_cli.lipschitz.refine import diagonal_t, loop_maps, refined_bounds
from tests.compare_nets import random_mlp, random_residual

NETS = {
    "mlp1": lambda: random_mlp([4, 8, 3], seed=0),
    "mlp3": lambda: random_mlp([5, 10, 10, 10, 4], seed=2),
    "tanh": lambda: random_mlp([6, 12, 12, 3], "tanh", seed=1),
    "residual": lambda: random_residual(seed=3),
    "leaky": lambda: random_mlp([4, 9, 7, 3], "leaky_relu", seed=4),
}


@pytest.mark.parametrize("net", sorted(NETS))
def test_sn_choice_equals_plain_liplt(net):
    graph = NETS[net]()
    plain = compute_bounds(graph, methods=("liplt",)).methods["liplt"]
    sn = refined_bounds(graph, "sn")
    assert sn.global_ == pytest.approx(plain.global_, rel=1e-5)
    assert sn.per_class == pytest.approx(plain.per_class, rel=1e-5)
    for i in range(graph.num_classes):
        assert sn.pairwise[i] == pytest.approx(plain.pairwise[i], rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("net", sorted(NETS))
def test_refinements_are_above_the_lower_bound(net):
    graph = NETS[net]()
    lower = empirical_lower_bound(graph, samples=64, ascent_steps=10, box=None)
    for choice in ("aol", "sll"):
        res = refined_bounds(graph, choice)
        assert res.guarantee.value == "upper bound"
        assert lower.global_ <= res.global_
        k = graph.num_classes
        for i in range(k):
            assert lower.per_class[i] <= res.per_class[i]
            for j in range(k):
                assert lower.pairwise[i][j] <= res.pairwise[i][j] + 1e-12


def test_single_residual_layer_matches_theorem_2():
    graph = random_residual(n0=5, n1=9, k=4, seed=7)
    w = graph.node("W").op.weight
    g = graph.node("G").op.weight
    h = graph.node("H").op.weight
    hhat = h + 0.5 * g @ w  # ReLU: (α+β)/2 = 1/2, (β−α)/2 = 1/2
    for choice in ("sn", "aol"):
        t = diagonal_t(g, choice)
        expected = torch.linalg.matrix_norm(hhat, 2) + 0.5 * torch.linalg.matrix_norm(w.T @ torch.diag(t) @ w, 2).sqrt()
        assert refined_bounds(graph, choice).global_ == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("choice", ["sn", "aol", "sll"])
def test_diagonal_t_dominates_gram(choice):
    gen = torch.Generator().manual_seed(1)
    for rows in (1, 3, 8):
        g = torch.randn(rows, 6, generator=gen, dtype=torch.float64)
        rho = torch.rand(6, generator=gen, dtype=torch.float64)
        t = diagonal_t(g, choice, rho)
        assert torch.linalg.eigvalsh(torch.diag(t) - g.T @ g).min() >= -1e-10


def test_loop_maps_reproduce_the_linearised_network():
    graph = random_mlp([3, 5, 2], activation="tanh", seed=2)
    lm = loop_maps(graph)
    w0 = graph.node("fc0").op.weight
    w1 = graph.node("fc1").op.weight
    assert torch.allclose(lm.get("fc1", "x"), 0.5 * w1 @ w0)  # tanh: (α+β)/2 = 1/2
    assert torch.allclose(lm.get("fc1", "act0"), w1)
    assert torch.allclose(lm.get("fc0", "x"), w0)


def test_skipped_with_reasons():
    graph = random_mlp([3, 4, 2])
    assert "ℓ2" in refined_bounds(graph, "aol", norm=math.inf).reason
    assert "neurons" in refined_bounds(random_mlp([3, 40, 2]), "aol", max_neurons=10).reason
    pool = LayerGraph(
        (
            InputNode("x", (1, 4, 4)),
            BlockNode("pool", ("x",), (1, 2, 2), MaxPool((2, 2), (2, 2), (0, 0), (1, 1))),
            LinearNode("flat", ("pool",), Reshape((1, 2, 2), (4,))),
        ),
        "flat",
    )
    res = refined_bounds(pool, "sll")
    assert isinstance(res, SkippedMethod) and "elementwise" in res.reason
    with pytest.raises(ValueError):
        refined_bounds(graph, "lipschitz")
