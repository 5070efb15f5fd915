"""`liplt inspect` on the shipped examples and the paper's architectures (table and --json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from liplt_cli.cli.app import run
from liplt_cli.load import load_model
from liplt_cli.train.archs import build_arch
from tests.conftest import export_onnx

pytestmark = pytest.mark.usefixtures("single_thread")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = ["mlp_relu.onnx", "mlp_tanh_sigmoid.onnx", "conv_stride_pad.onnx", "norm_batchnorm.onnx", "residual.onnx"]
NODE_KEYS = {"name", "kind", "op", "description", "inputs", "shape", "params", "alpha", "beta", "source"}


def _inspect_json(capsys, *args) -> dict:
    code = run(["inspect", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_examples_json(capsys, name):
    path = EXAMPLES / name
    assert path.stat().st_size < 1024 * 1024
    summary = _inspect_json(capsys, path)
    assert set(summary) == {"model", "input_shape", "output_shape", "num_classes", "parameters", "nodes", "notes",
                            "warnings"}
    assert summary["num_classes"] == 10 and summary["output_shape"] == [10]
    nodes = summary["nodes"]
    assert nodes[0]["kind"] == "input" and nodes[0]["shape"] == summary["input_shape"]
    assert all(set(n) == NODE_KEYS for n in nodes)
    assert summary["parameters"] == sum(n["params"] for n in nodes)
    for n in nodes:
        if n["kind"] == "activation":
            assert n["alpha"] is not None and n["alpha"] <= n["beta"]
        else:
            assert n["alpha"] is None and n["beta"] is None
    names = {n["name"] for n in nodes}
    assert all(i in names for n in nodes for i in n["inputs"])


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_examples_match_onnx_reference_evaluator(name):
    """The loaded graph computes what onnx's own reference implementation computes."""
    path = EXAMPLES / name
    graph = load_model(path)
    model = onnx.load(str(path))
    x = np.random.default_rng(0).random((1, *graph.input_shape), dtype=np.float32)
    ref = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})[0]
    got = graph.evaluate(torch.from_numpy(x)).detach().numpy()
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_example_kinds(capsys):
    tanh = _inspect_json(capsys, EXAMPLES / "mlp_tanh_sigmoid.onnx")
    acts = [(n["op"], n["alpha"], n["beta"]) for n in tanh["nodes"] if n["kind"] == "activation"]
    assert acts == [("tanh", 0.0, 1.0), ("sigmoid", 0.0, 0.25)]
    res = _inspect_json(capsys, EXAMPLES / "residual.onnx")
    assert sum(n["kind"] == "sum" for n in res["nodes"]) == 2
    assert any("batchnorm" in note for note in res["notes"])
    conv = _inspect_json(capsys, EXAMPLES / "conv_stride_pad.onnx")
    assert [n["op"] for n in conv["nodes"] if n["kind"] == "linear"] == ["conv", "conv", "conv", "reshape", "dense"]


def test_table_output(capsys):
    assert run(["inspect", str(EXAMPLES / "norm_batchnorm.onnx")]) == 0
    out = capsys.readouterr().out
    for text in ("Conv2d 1→8", "ReLU slopes [0, 1]", "Dense 784→32", "parameters", "10 classes", "note:", "batchnorm"):
        assert text in out, text


def test_mean_std_and_softmax_notes_in_table(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3),
                                torch.nn.Softmax(dim=1))
    path = export_onnx(model, (3, 2, 2), tmp_path / "soft.onnx")
    assert run(["inspect", str(path), "--mean", "0.1,0.2,0.3", "--std", "0.5,0.5,0.25"]) == 0
    out = capsys.readouterr().out
    assert "stripped final Softmax" in out and "normalize (x-mean)/std" in out
    summary = _inspect_json(capsys, path, "--mean", "0.1,0.2,0.3", "--std", "0.5,0.5,0.25")
    assert summary["nodes"][1]["name"] == "input_normalization"
    assert any("prepended input normalisation" in n for n in summary["notes"])


ARCHS = [
    pytest.param("4C3F", (1, 28, 28), 4, 3, 10, id="4C3F"),
    pytest.param("6C2F", (3, 32, 32), 6, 2, 10, id="6C2F"),
    pytest.param("8C2F", (3, 64, 64), 8, 2, 200, id="8C2F"),
]


@pytest.mark.parametrize("arch,shape,convs,denses,classes", ARCHS)
def test_paper_architectures(tmp_path, capsys, arch, shape, convs, denses, classes):
    torch.manual_seed(0)
    model = build_arch(arch)
    path = export_onnx(model, shape, tmp_path / f"{arch}.onnx")
    summary = _inspect_json(capsys, path)
    ops = [n["op"] for n in summary["nodes"]]
    assert ops.count("conv") == convs and ops.count("dense") == denses and ops.count("relu") == convs + denses - 1
    assert summary["num_classes"] == classes and summary["input_shape"] == list(shape)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert run(["inspect", str(path)]) == 0
    assert f"{classes} classes" in capsys.readouterr().out
