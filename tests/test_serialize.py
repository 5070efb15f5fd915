"""Layer-graph description and the liplt safetensors format (save → load gives the same graph)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from liplt_cli.cli.app import run
from liplt_cli.errors import GraphError, InputShapeError, ModelLoadError
from liplt_cli.graph import node_kind
from liplt_cli.graph.serialize import graph_from_dict, graph_to_dict
from liplt_cli.load import graph_from_module, load_model, save_safetensors
from liplt_cli.load.safetensors import read_metadata
from liplt_cli.train.architecture import architecture
from liplt_cli.train.archs import build_arch
from tests.conftest import export_onnx

pytestmark = pytest.mark.usefixtures("single_thread")


class AllKinds(nn.Module):
    """Every node kind: affine, conv, pad, sum with coefficients, activations with parameters,
    maxpool block, permute, concat, reshape, dense, conv transpose, one-sided clip."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.fc = nn.Linear(8 * 4 * 4, 5)
        with torch.no_grad():
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.running_mean.uniform_(-1, 1)

    def forward(self, x):
        x = (x - 0.3) / 0.7
        y = F.leaky_relu(self.bn(self.c1(x)), 0.05)
        y = F.pad(y, (1, 0, 0, 1))
        y = y - 0.5 * F.avg_pool2d(y, 3, 1, 1)
        y = F.max_pool2d(F.softplus(y, beta=2.0), 2)
        y = F.avg_pool2d(self.up(y.clamp(min=-0.5)), 2)
        y = torch.cat([y, y.permute(0, 1, 3, 2)], 1)
        return self.fc(y.flatten(1))


def _model():
    torch.manual_seed(0)
    return AllKinds().eval()


def test_description_round_trip_is_the_same_graph():
    model = _model()
    graph = graph_from_module(model, (2, 7, 7))
    desc = graph_to_dict(graph)
    text = json.dumps(desc)  # plain JSON, no NaN/Infinity literals
    assert "Infinity" not in text and "NaN" not in text
    again = graph_from_dict(json.loads(text), dict(graph.tensors()))
    assert [(n.name, node_kind(n), tuple(n.inputs), tuple(n.out_shape)) for n in again.nodes] == \
        [(n.name, node_kind(n), tuple(n.inputs), tuple(n.out_shape)) for n in graph.nodes]
    acts = [(n.activation.key, n.activation.params, n.activation.alpha, n.activation.beta)
            for n in again.nodes if node_kind(n) == "activation"]
    assert acts == [(n.activation.key, n.activation.params, n.activation.alpha, n.activation.beta)
                    for n in graph.nodes if node_kind(n) == "activation"]
    x = torch.randn(3, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(again.evaluate(x), graph.evaluate(x), rtol=0, atol=0)
    assert again.notes == graph.notes and again.output == graph.output


def test_description_errors():
    graph = graph_from_module(nn.Sequential(nn.Linear(3, 2)), (3,))
    desc = graph_to_dict(graph)
    with pytest.raises(GraphError, match="not in the file"):
        graph_from_dict(desc, {})
    with pytest.raises(GraphError, match="not a liplt"):
        graph_from_dict({"nodes": []}, {})
    bad = json.loads(json.dumps(desc))
    bad["nodes"][1]["op"]["kind"] = "mystery"
    with pytest.raises(GraphError, match="unknown linear op kind"):
        graph_from_dict(bad, dict(graph.tensors()))


def test_save_module_load_same_logits_and_metadata(tmp_path):
    model = _model()
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path, arch="custom", extra_metadata={"input_shape": "2,7,7", "trained_with": "test", "epochs": 3})
    meta = read_metadata(path.read_bytes(), path)
    assert meta["liplt_format"] == "1" and meta["arch"] == "custom" and meta["input_shape"] == "2,7,7"
    assert meta["trained_with"] == "test" and meta["epochs"] == "3"
    desc = json.loads(meta["liplt_graph"])
    assert desc["format"] == "liplt-graph" and desc["nodes"][0]["kind"] == "input"
    # tensors: the module's state_dict under its own keys, plus derived ones
    tensors = load_file(str(path))
    assert set(model.state_dict()) <= set(tensors)
    assert any(k.startswith("liplt.") for k in tensors)
    fresh = AllKinds()
    fresh.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("liplt.")})
    graph = load_model(path)
    x = torch.randn(4, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fresh.eval()(x), model(x), rtol=0, atol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_graph_from_onnx_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_arch("mlp:12", (1, 5, 5))
    onnx_graph = load_model(export_onnx(model, (1, 5, 5), tmp_path / "m.onnx"))
    save_safetensors(onnx_graph, tmp_path / "g.safetensors")
    graph = load_model(tmp_path / "g.safetensors", input_shape=(1, 5, 5))
    assert [n.name for n in graph.nodes] == [n.name for n in onnx_graph.nodes]
    x = torch.rand(6, 1, 5, 5)
    torch.testing.assert_close(graph.evaluate(x), onnx_graph.evaluate(x), rtol=0, atol=0)
    with pytest.raises(InputShapeError, match="contradicts"):
        load_model(tmp_path / "g.safetensors", input_shape=(1, 6, 6))


def test_arch_default_input_shape_and_trainer_call(tmp_path):
    model = build_arch("4C3F")
    save_safetensors(model, tmp_path / "a.safetensors", arch=architecture("4C3F"))
    graph = load_model(tmp_path / "a.safetensors")
    assert graph.input_shape == (1, 28, 28) and graph.num_classes == 10
    with pytest.raises(InputShapeError, match="input shape"):
        save_safetensors(nn.Sequential(nn.Linear(3, 2)), tmp_path / "b.safetensors")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_safetensors(nn.Sequential(nn.Linear(3, 2)), path, input_shape=(3,))
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_safetensors(nn.Sequential(nn.Linear(3, 4)), path, input_shape=(3,))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


# ---------------------------------------------------------------------- plain safetensors files
def test_plain_safetensors_needs_arch(tmp_path, capsys):
    model = build_arch("4C3F")
    path = tmp_path / "plain.safetensors"
    save_file(model.state_dict(), str(path))
    assert run(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "plain safetensors" in err and "--arch 4C3F" in err and "Traceback" not in err
    assert run(["inspect", str(path), "--arch", "4C3F", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] == sum(t.numel() for t in model.state_dict().values())
    graph = load_model(path, arch=architecture("4C3F"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), model(x), rtol=1e-5, atol=1e-5)


def test_plain_safetensors_wrong_arch(tmp_path, capsys):
    path = tmp_path / "plain.safetensors"
    save_file(build_arch("mlp:16", (1, 28, 28)).state_dict(), str(path))
    assert run(["inspect", str(path), "--arch", "4C3F"]) == 2
    err = capsys.readouterr().err
    assert "do not fit --arch 4C3F" in err
    graph = load_model(path, arch=architecture("mlp:16"))
    assert graph.input_shape == (1, 28, 28)


def test_truncated_safetensors(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_safetensors(build_arch("mlp:8", (1, 4, 4)), path, input_shape=(1, 4, 4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    assert run(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt safetensors" in err
    with pytest.raises(ModelLoadError):
        load_model(path)
