"""The slope interface of the walks (LoopTransform): per node today, per neuron and per sample tomorrow.

The engine's numbers come from one slope range per activation node.  These tests show that the
same walks take per-neuron centres (a tensor per node) and per-sample centres (a row → sample
index per tag) and compute the right maps: bit for bit the scalar case when the tensor is
constant, the dense product W_L C_{L-1} … C_1 W_1 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from liplt_cli.graph.walk import WalkError
from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.structure import CUT, LT, analyse
from liplt_cli.lipschitz.transform import LoopTransform, Mode
from tests.oracle import mlp, residual_mlp


def _forward(structure, mode, rows, samples=None):
    """A_{out,x} applied to ``rows`` (pushed from the input), one row per input vector."""
    out = {}
    forward_pass(structure, mode, [("t", "x", rows)], {"t": {structure.output}}, lambda t, k, v: out.setdefault(t, v),
                 samples=samples)
    return out["t"]


def _maps(structure, mode):
    """A_{out,x}ᵀ by the forward pass (basis pushed from the input) and A_{out,x} by the adjoint pass."""
    g = structure.graph
    fwd = _forward(structure, mode, torch.eye(math.prod(g.input_shape), dtype=g.dtype))
    back = {}
    rows = torch.eye(math.prod(g.output_shape), dtype=g.dtype)
    adjoint_pass(structure, mode, [("u", g.output, rows)], {"u": {"x"}}, lambda t, k, v: back.setdefault(t, v))
    return fwd, back["u"]


def _per_neuron(structure, centres):
    transform = replace(structure.transform, centre=centres)
    return analyse(structure.graph, structure.p, transform)


def test_modes_are_named_and_classified():
    assert [m.value for m in Mode] == ["lt", "cut", "abs_lt", "abs_cut"]
    assert Mode.ABS_LT.absolute and not Mode.LT.absolute
    assert Mode.CUT.cuts_activations and Mode.ABS_CUT.cuts_activations and not Mode.ABS_LT.cuts_activations
    assert LT.to_absolute() is Mode.ABS_LT and CUT.to_absolute() is Mode.ABS_CUT


@pytest.mark.parametrize("graph", [mlp([4, 6, 5, 3], "leaky_relu", negative_slope=0.2), residual_mlp("tanh")],
                         ids=["mlp", "residual"])
def test_constant_per_neuron_centres_give_the_scalar_maps_bit_for_bit(graph):
    structure = analyse(graph)
    constant = {j: torch.full(graph.node(j).out_shape, c, dtype=graph.dtype)
                for j, c in structure.transform.centre.items()}
    for mode in (LT, Mode.ABS_LT):
        fwd, adj = _maps(structure, mode)
        fwd_n, adj_n = _maps(_per_neuron(structure, constant), mode)
        assert torch.equal(fwd, fwd_n) and torch.equal(adj, adj_n)


def test_per_neuron_centres_give_the_dense_product():
    graph = mlp([4, 6, 5, 3], "relu", seed=3)
    gen = torch.Generator().manual_seed(0)
    structure = analyse(graph)
    centres = {j: torch.rand(graph.node(j).out_shape, generator=gen, dtype=graph.dtype) for j in structure.activations}
    centres[structure.activations[0]][0] = 0.0  # a stable-off neuron
    fwd, adj = _maps(_per_neuron(structure, centres), LT)
    dense = torch.eye(4, dtype=graph.dtype)
    for n in graph.nodes[1:]:
        if n.kind == "linear":
            dense = n.op.weight @ dense
        else:
            dense = torch.diag(centres[n.name]) @ dense
    assert torch.allclose(fwd.T, dense, rtol=1e-12, atol=1e-14)
    assert torch.allclose(adj, dense, rtol=1e-12, atol=1e-14)
    fwd_abs, _ = _maps(_per_neuron(structure, {j: -c for j, c in centres.items()}), Mode.ABS_LT)
    dense_abs = torch.eye(4, dtype=graph.dtype)
    for n in graph.nodes[1:]:
        dense_abs = (n.op.weight.abs() if n.kind == "linear" else torch.diag(centres[n.name])) @ dense_abs
    assert torch.allclose(fwd_abs.T, dense_abs, rtol=1e-12, atol=1e-14)


def test_per_sample_centres_follow_each_rows_sample():
    graph = mlp([4, 6, 5, 3], "tanh", seed=5)
    gen = torch.Generator().manual_seed(1)
    structure = analyse(graph)
    per_sample = {j: torch.rand((2, *graph.node(j).out_shape), generator=gen, dtype=graph.dtype)
                  for j in structure.activations}
    rows = torch.eye(4, dtype=graph.dtype).repeat(2, 1)  # sample 0's basis, then sample 1's
    samples = torch.tensor([0] * 4 + [1] * 4)
    both = _forward(_per_neuron(structure, per_sample), LT, rows, {"t": samples})
    for s in (0, 1):
        alone = _forward(_per_neuron(structure, {j: c[s] for j, c in per_sample.items()}), LT, rows[:4])
        assert torch.allclose(both[4 * s: 4 * s + 4], alone, rtol=1e-12, atol=1e-14)
    with pytest.raises(WalkError, match="per-sample slopes; the rows' sample index is needed"):
        _forward(_per_neuron(structure, per_sample), LT, rows)


def test_zero_centres_cut_a_node_only_when_pruning():
    graph = mlp([3, 4, 2], "relu")
    j = analyse(graph).activations[0]
    zero = {j: torch.zeros(4, dtype=graph.dtype)}
    pruned = _per_neuron(analyse(graph), zero)
    assert pruned.transform.multiplier(j, LT) is None and not pruned.reaches(LT, "x", graph.output)
    kept = analyse(graph, 2.0, replace(LoopTransform.of(graph, 2.0, prune_zero=False), centre=zero))
    assert kept.reaches(LT, "x", graph.output)
    assert kept.transform.multiplier(j, CUT) is None


def _as_per_neuron(transform, graph):
    """The same slopes, one value per neuron (tensors filled with the node's value)."""
    def fill(values):
        return {j: torch.full(graph.node(j).out_shape, v, dtype=torch.float64) for j, v in values.items()}

    return replace(transform, centre=fill(transform.centre), radius=fill(transform.radius),
                   lipschitz=fill(transform.lipschitz))


@pytest.mark.parametrize("name", ["leaky", "residual", "pool", "concat"])
@pytest.mark.parametrize("norm", [2.0, math.inf, 1.0])
@pytest.mark.parametrize("fast", [False, True])
def test_the_engine_with_constant_per_neuron_slopes_gives_the_same_numbers_bit_for_bit(name, norm, fast, monkeypatch):
    from liplt_cli.lipschitz import EngineOptions, compute_bounds
    from liplt_cli.lipschitz import engine
    from tests.oracle import concat_net, convnet

    graph = {"leaky": lambda: mlp([4, 6, 5, 3], "leaky_relu", negative_slope=0.2), "residual": lambda: residual_mlp("tanh"),
             "pool": lambda: convnet(pool=True), "concat": concat_net}[name]()
    options = EngineOptions(norm=norm, fast=fast, iterations=15)
    scalar = compute_bounds(graph, options).to_dict()
    monkeypatch.setattr(engine, "analyse", lambda g, p: analyse(g, p, _as_per_neuron(LoopTransform.of(g, p), g)))
    per_neuron = compute_bounds(graph, options).to_dict()
    for result in (scalar, per_neuron):
        for method in result["methods"].values():
            method.pop("seconds")
    assert per_neuron == scalar
