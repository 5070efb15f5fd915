"""Proposition 2 blocks in a loaded layer graph: recognised, re-certified from the weights (never
from metadata), and used by LipLT as designed terms (LipLT ≤ designed), with hostile files."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.lipschitz.designed import certify_blocks, collapse, find_blocks
from liplt_cli.lipschitz.lower import empirical_lower_bound
from liplt_cli.load import graph_from_module, load_model
from liplt_cli.train import loop
from liplt_cli.train.config import TrainConfig
from liplt_cli.train.lipschitz_layers import Prop2Conv, Prop2Dense
from liplt_cli.train.prop2_export import PlainResidual
from tests.test_designed_bound import _max_jacobian_norm
from tests.test_prop2_archs import _perturbed

CASES = [
    ("prop2-mlp:3x8,sll", (1, 4, 4), "relu"),
    ("prop2-mlp:2x8,sn", (1, 4, 4), "tanh"),
    ("prop2-conv:2x3,aol", (1, 5, 5), "relu"),
    ("prop2-conv:1x3,sn", (1, 5, 5), "sigmoid"),
]


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model if isinstance(m, (Prop2Dense, Prop2Conv))]


@pytest.mark.parametrize("name,shape,activation", CASES)
def test_blocks_are_recognised_and_certified_from_the_weights(name, shape, activation):
    """Every exported block is found and certified; its constant is the layer's certified √ρ plus
    at most the fold rounding, and no explicit Jacobian of the plain block (dense oracle, random
    points and ascent) exceeds it."""
    model = _perturbed(name, shape, activation=activation)
    plain = model.to_plain()
    graph = graph_from_module(plain, shape)
    certs = certify_blocks(graph.to(dtype=torch.float64))
    layers = _layers(model)
    assert len(certs) == len(layers) and all(c.certified for c in certs), [c.reason for c in certs]
    blocks = [m for m in plain if isinstance(m, PlainResidual)]
    x = torch.zeros(1, *shape)
    with torch.no_grad():
        inputs = []
        for m in plain:
            if isinstance(m, PlainResidual):
                inputs.append(tuple(x.shape[1:]))
            x = m(x)
    for cert, layer, block, in_shape in zip(certs, layers, blocks, inputs):
        s = layer.certified_scale
        assert cert.identity_scale == s
        assert s <= cert.constant <= s * (1 + 1e-5)
        dense = copy.deepcopy(block).double()
        assert _max_jacobian_norm(dense, in_shape, seed=1, points=9, ascent=False) <= cert.constant


def _bounds(graph, designed_terms=True):
    methods = ("naive", "liplt", "designed") if designed_terms else ("liplt",)
    return compute_bounds(graph, EngineOptions(norm=2.0), methods=methods, designed_terms=designed_terms).methods


@pytest.mark.parametrize("name,shape,activation", [CASES[0], CASES[2]])
def test_liplt_at_most_designed_and_naive_and_never_below_the_lower_bound(tmp_path, name, shape, activation):
    """On the ONNX file of a model trained a few steps: LipLT ≤ designed and LipLT ≤ naive (global
    and every pair), LipLT ≤ the generic recursion alone, and no bound below the largest gradient
    norm found by sampling and ascent."""
    model = _perturbed(name, shape, activation=activation)
    files = loop.export_model(model, TrainConfig(arch=name, out=str(tmp_path)), shape, tmp_path, "synthetic")
    graph = load_model(files["onnx"])
    b = _bounds(graph)
    generic = _bounds(graph, designed_terms=False)["liplt"]
    lip, des, naive = b["liplt"], b["designed"], b["naive"]
    k = graph.num_classes
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    assert lip.global_ <= des.global_ and lip.global_ <= naive.global_ and lip.global_ <= generic.global_
    assert all(lip.pairwise[i][j] <= min(des.pairwise[i][j], naive.pairwise[i][j], generic.pairwise[i][j]) for i, j in pairs)
    assert any("LipLT ≤ designed" in n for n in lip.notes)
    assert des.guarantee.value == "upper bound" and lip.guarantee.sound
    low = empirical_lower_bound(graph, norm=2.0, samples=48, ascent_steps=8, seed=0)
    assert low.global_ <= lip.global_
    assert all(low.pairwise[i][j] <= lip.pairwise[i][j] for i, j in pairs)


def test_collapsed_graph_replaces_each_block_by_a_cut():
    model = _perturbed("prop2-mlp:2x8,aol", (1, 4, 4))
    graph = graph_from_module(model.to_plain(), (1, 4, 4))
    blocks = find_blocks(graph)
    cut = collapse(graph, {b.add: 1.5 for b in blocks}, prefix="d:")
    kinds = [n.kind for n in cut.nodes]
    assert kinds.count("activation") == 0 and kinds.count("block") == 2
    assert all(n.name.startswith("d:") for n in cut.nodes) and cut.output.startswith("d:")


# --------------------------------------------------------------------------- hostile files
def _plain_with(edit, name="prop2-mlp:2x8,sll", shape=(1, 4, 4), act: nn.Module | None = None) -> nn.Sequential:
    """The plain form of a perturbed model with ``edit(block)`` applied to its first block."""
    plain = _perturbed(name, shape).to_plain()
    block = next(m for m in plain if isinstance(m, PlainResidual))
    with torch.no_grad():
        edit(block)
    if act is not None:
        block.act = act
    return plain


def _scale_outer(factor):
    def edit(block):
        block.outer.weight.mul_(factor)
    return edit


@pytest.mark.parametrize("edit,act,why", [
    (_scale_outer(4.0), None, "condition fails"),
    (_scale_outer(-1.0), None, "positive t"),
    (lambda b: b.outer.weight.copy_(torch.randn_like(b.outer.weight)), None, "not Wᵀ·diag(t)"),
    (lambda b: None, nn.GELU(), "α"),
])
def test_a_crafted_block_claiming_prop2_structure_gets_no_designed_bound(tmp_path, edit, act, why):
    """A file whose metadata names a Proposition 2 architecture but whose first block violates
    the structure or the LMI: that block is not certified (the reason says why), the designed
    bound is not reported, LipLT is the generic recursion's, and no bound is below the lower
    bound found by sampling and ascent."""
    torch.manual_seed(3)
    plain = _plain_with(edit, act=act)
    cfg = TrainConfig(arch="prop2-mlp:2x8,sll", out=str(tmp_path))
    files = loop.export_model(plain, cfg, (1, 4, 4), tmp_path, "crafted")
    from safetensors import safe_open

    with safe_open(files["safetensors"], "pt") as fh:
        assert fh.metadata()["arch"].startswith("prop2-mlp")  # the file claims the structure
    graph = load_model(files["safetensors"])
    certs = certify_blocks(graph.to(dtype=torch.float64))
    if why == "α":  # GELU: the block is found but refused
        assert not certs[0].certified and "α" in certs[0].reason
    else:
        assert not certs[0].certified and why in certs[0].reason, certs[0].reason
    b = _bounds(graph)
    generic = _bounds(graph, designed_terms=False)["liplt"]
    assert "designed" not in b  # one block fails: the designed product is not claimed for the model
    # the other block is still used as a designed term: LipLT may only get smaller, never unsound
    assert b["liplt"].global_ <= generic.global_
    low = empirical_lower_bound(graph, norm=2.0, samples=48, ascent_steps=8, seed=0)
    assert low.global_ <= b["liplt"].global_ and low.global_ <= b["naive"].global_


def test_cli_bound_and_compare_show_the_designed_bound(tmp_path, capsys):
    from liplt_cli.cli.app import run

    model = _perturbed("prop2-mlp:2x8,sll", (1, 4, 4))
    files = loop.export_model(model, TrainConfig(arch="prop2-mlp:2x8,sll", out=str(tmp_path)), (1, 4, 4), tmp_path, "x")
    assert run(["bound", files["safetensors"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    methods = out["methods"]
    assert set(methods) == {"naive", "liplt", "designed"}
    assert methods["liplt"]["global"] <= methods["designed"]["global"]
    assert methods["liplt"]["global"] <= methods["naive"]["global"]
    assert any("LipLT ≤ designed" in n for n in methods["liplt"]["notes"])
    assert run(["compare", files["onnx"], "--methods", "naive,liplt", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"][0]["rows"]
    assert [r["method"] for r in rows] == ["naive", "liplt", "designed"]
