"""`liplt bound` through the CLI entry point: the JSON contract, labels, and error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liplt_cli.cli.app import run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _json(capsys, argv):
    code = run(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_json_contract_is_stable(capsys):
    doc = _json(capsys, ["bound", str(EXAMPLES / "mlp_relu.onnx"), "--json"])
    assert set(doc) == {"model", "norm", "device", "settings", "methods", "notes", "warnings"}
    assert doc["norm"] == "2" and doc["model"].endswith("mlp_relu.onnx")
    assert list(doc["methods"]) == ["naive", "liplt"]
    for m in doc["methods"].values():
        for key in ("global", "per_class", "pairwise", "pairwise_mean", "pairwise_max", "guarantee", "seconds"):
            assert key in m
        k = len(m["per_class"])
        assert k == 10 and len(m["pairwise"]) == k and all(len(r) == k for r in m["pairwise"])
        assert m["guarantee"] in ("exact", "upper bound")
    assert doc["methods"]["liplt"]["global"] <= doc["methods"]["naive"]["global"]


def test_fast_is_labelled_estimate_and_norms(capsys):
    doc = _json(capsys, ["bound", str(EXAMPLES / "conv_stride_pad.onnx"), "--fast", "--iterations", "5", "--json"])
    assert all(m["guarantee"] == "estimate" for m in doc["methods"].values())
    assert doc["methods"]["liplt"]["iterations"] == 5
    doc = _json(capsys, ["bound", str(EXAMPLES / "mlp_tanh_sigmoid.onnx"), "--norm", "inf", "--method", "liplt", "--json"])
    assert doc["norm"] == "inf" and list(doc["methods"]) == ["liplt"]


def test_table_output_names_guarantees(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["bound", str(EXAMPLES / "mlp_relu.onnx"), "--per-class"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "liplt" in out and "naive" in out and "per-class" in out
    assert run(["bound", str(EXAMPLES / "mlp_relu.onnx"), "--fast", "--iterations", "3"]) == 0
    assert "NOT guaranteed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bound", "missing.onnx"], "does not exist"),
        (["bound", "{examples}/mlp_relu.onnx", "--norm", "3"], "3"),
        (["bound", "{examples}/mlp_relu.onnx", "--pairwise", "--per-class"], "at most one"),
        (["bound", "{examples}/mlp_relu.onnx", "--device", "cuda"] if not torch.cuda.is_available() else ["bound", "missing.onnx"], ""),
    ],
)
def test_errors_exit_2(capsys, argv, message):
    argv = [a.replace("{examples}", str(EXAMPLES)) for a in argv]
    assert run(argv) == 2
    assert message in capsys.readouterr().err


def test_nan_weights_are_rejected(tmp_path, capsys):
    from liplt_cli.load import save_safetensors
    from liplt_cli.train.archs import build_arch

    model = build_arch("mlp:8", input_shape=(1, 4, 4), num_classes=3)
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path, arch="mlp:8", input_shape=(1, 4, 4))
    assert run(["bound", str(path), "--json"]) == 0
    capsys.readouterr()
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k, t in tensors.items() if t.dim() == 2)
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=metadata)
    assert run(["bound", str(tmp_path / "nan.safetensors")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_version_and_help(capsys):
    assert run(["--version"]) == 0
    assert "liplt 0.1.0" in capsys.readouterr().out
    assert run(["bound", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--norm", "--method", "--fast", "--iterations", "--device", "--json", "--explicit-budget"):
        assert option in text
