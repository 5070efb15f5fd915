"""`liplt certify` end to end: table, JSON contract, gate exit codes, CSV, plot, --fast, errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from liplt_cli.cli import certify as certify_cli
from liplt_cli.cli.app import run
from liplt_cli.load import save_safetensors
from tests.certify_nets import tiny_trained_mlp

SHARED = Path(os.environ.get("LIPLT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # Rich wraps at 80 columns when captured


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph, *_ = tiny_trained_mlp()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(graph, path)
    return path


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = run(argv + ["--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture(scope="module")
def report(model: Path) -> dict:
    """One attacked run shared by several tests (the slow part)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run(["certify", str(model), "--data", "embedded", "--limit", "120", "--eps", "0.3,0.8,1.2",
                    "--attack-steps", "8", "--json"])
    assert code == 0
    return json.loads(buf.getvalue())


def test_json_contract_and_ordering(report: dict) -> None:
    for key in ("model", "data", "norm", "eps", "samples", "clean_accuracy", "certified_accuracy", "pgd_accuracy",
                "violations", "radius", "constants", "certificate", "attack", "timings", "device", "gate"):
        assert key in report
    assert report["samples"] == 120 and report["norm"] == "2" and report["eps"] == [0.3, 0.8, 1.2]
    assert report["constants"]["method"] == "liplt" and report["constants"]["sound"] is True
    assert report["constants"]["guarantee"] in ("exact", "upper bound")
    assert "mnist_5k.csv.gz" in report["data"]["description"]
    clean = report["clean_accuracy"]
    for c, p in zip(report["certified_accuracy"], report["pgd_accuracy"]):
        assert c <= p <= clean
    assert report["certified_accuracy"] == sorted(report["certified_accuracy"], reverse=True)
    assert report["certified_accuracy"][-1] < report["certified_accuracy"][0]  # the ε range is informative
    assert report["violations"] == [0, 0, 0] and report["gate"] is None
    assert report["attack"]["steps"] == 8 and report["attack"]["step_size"] == "2.5*eps/steps"


def test_human_table(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["certify", str(model), "--limit", "40", "--eps", "0.5", "--no-attack"])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("clean accuracy", "certified", "PGD", "liplt pairwise", "sound", "tiny.safetensors", "embedded MNIST"):
        assert text in out
    assert "—" in out  # PGD column empty with --no-attack


def test_gate_exit_codes(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["certify", str(model), "--limit", "60", "--eps", "0.2,0.9", "--no-attack"]
    code, rep = _json(capsys, base)
    acc = rep["certified_accuracy"][1]  # the gate looks at the largest ε
    assert 0 < acc < 1
    code, rep = _json(capsys, base + ["--min-certified", str(acc)])
    assert code == 0 and rep["gate"]["passed"] is True and rep["gate"]["eps"] == 0.9
    code, rep = _json(capsys, base + ["--min-certified", str(min(1.0, acc + 0.01))])
    assert code == 1 and rep["gate"]["passed"] is False
    code = run(base + ["--min-certified", str(min(1.0, acc + 0.01))])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out
    code = run(base + ["--min-certified", "0"])
    assert code == 0 and "passed" in capsys.readouterr().out


def test_per_sample_csv_and_plot(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path, png = tmp_path / "radii.csv", tmp_path / "curve.png"
    code, rep = _json(capsys, ["certify", str(model), "--limit", "30", "--eps", "0.4", "--no-attack",
                               "--per-sample", str(csv_path), "--plot", str(png)])
    assert code == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 30 and list(rows[0]) == ["index", "label", "prediction", "radius"]
    radii = [float(r["radius"]) for r in rows]
    assert np.mean(radii) == pytest.approx(rep["radius"]["mean"], rel=1e-9)
    assert all(r == 0 for r, row in zip(radii, rows) if row["label"] != row["prediction"])
    assert sum(r > 0.4 for r in radii) / 30 == pytest.approx(rep["certified_accuracy"][0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_fast_is_labelled_estimate(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["certify", str(model), "--limit", "20", "--eps", "0.4", "--no-attack", "--fast"])
    assert code == 0 and rep["constants"]["guarantee"] == "estimate" and rep["constants"]["sound"] is False
    assert "NOT certificates" in rep["certificate"]
    code = run(["certify", str(model), "--limit", "20", "--eps", "0.4", "--no-attack", "--fast"])
    assert code == 0 and "NOT certificates" in capsys.readouterr().out


def test_default_model_and_data(model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(certify_cli, "DEFAULT_MODEL", model)
    code = run(["certify", "--limit", "20", "--no-attack"])
    out = capsys.readouterr().out
    assert code == 0 and "shipped default model" in out and "embedded MNIST" in out and "1.58" in out
    monkeypatch.setattr(certify_cli, "DEFAULT_MODEL", model.parent / "absent.safetensors")
    monkeypatch.setattr(certify_cli, "FALLBACK_MODELS", ())
    code = run(["certify", "--limit", "20", "--no-attack"])
    assert code == 2 and "no MODEL given" in capsys.readouterr().err


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return str(path)


def test_errors(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    cases = [
        (["--data", _npz(tmp_path / "labels.npz", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.array([0, 3, 12, 1]))],
         "labels of the data (labels) range over 0…12 but the model has 10 outputs"),
        (["--data", _npz(tmp_path / "cifar.npz", rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.arange(4))],
         "the model takes inputs of shape [1, 28, 28] (784 values) but the data (cifar) has samples of shape [3, 32, 32]"),
        (["--data", _npz(tmp_path / "empty.npz", np.zeros((0, 28, 28), np.uint8), np.zeros(0, int))], "empty"),
        (["--data", "mnist", "--data-dir", str(tmp_path / "nowhere")], f"data directory '{tmp_path / 'nowhere'}' does not exist"),
        (["--data", "mnist", "--data-dir", str(tmp_path)],
         f"missing t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] in '{tmp_path}'"),
        (["--data", str(tmp_path / "nothing-here")], "neither a known name"),
        (["--min-certified", "1.5"], "--min-certified is a fraction"),
        (["--norm", "inf"], "--eps is required with --norm inf"),
        (["--batch-size", "0"], "--batch-size must be positive"),
        (["--limit", "0"], "--limit must be a positive"),
        (["--plot", str(tmp_path / "no" / "dir.png")], "does not exist"),
    ]
    for extra, message in cases:
        code = run(["certify", str(model), "--no-attack"] + extra)
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert err.startswith("error: ") and message in err, (extra, err)
    monkeypatch.setenv("LIPLT_SHARED_DATA", str(tmp_path / "shared"))
    code = run(["certify", str(model), "--data", "mnist", "--no-attack"])
    err = capsys.readouterr().err
    assert code == 2 and "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]" in err and str(tmp_path / "shared" / "mnist") in err
    code = run(["certify", str(tmp_path / "missing.onnx")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        code = run(["certify", str(model), "--device", "cuda"])
        assert code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(), reason=f"real data not found in {SHARED}")
def test_real_data(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["certify", str(model), "--data", "mnist", "--limit", "50", "--eps", "0.5", "--no-attack"])
    assert code == 0 and rep["samples"] == 50 and "t10k-images-idx3-ubyte.gz" in rep["data"]["description"]
    assert rep["clean_accuracy"] > 0.5  # a net trained on 300 images still beats chance on the real test set
    code = run(["certify", str(model), "--data", "cifar10", "--limit", "5", "--no-attack"])
    err = capsys.readouterr().err
    assert code == 2 and "[1, 28, 28] (784 values)" in err and "[3, 32, 32] (3072 values)" in err


def test_shipped_models_by_dataset() -> None:
    """``--data cifar10`` without MODEL picks the shipped CIFAR-10 6C2F; other data the MNIST default."""
    from liplt_cli.load import load_model

    path, how = certify_cli.default_model("cifar10")
    assert path.name == "cifar10_6c2f.safetensors" and "cifar10" in how
    graph = load_model(path)
    assert tuple(graph.input_shape[-3:]) == (3, 32, 32)
    assert certify_cli.default_model("mnist")[0] == certify_cli.DEFAULT_MODEL
    assert certify_cli.default_model(None)[0] == certify_cli.DEFAULT_MODEL
    mnist_4c3f = load_model(certify_cli.PACKAGE / "models" / "mnist_4c3f.safetensors")
    assert tuple(mnist_4c3f.input_shape[-3:]) == (1, 28, 28)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10").is_dir(),
                    reason="the CIFAR-10 files are not in ../shared/data/cifar10")
def test_certify_cifar10_uses_the_shipped_cifar_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["certify", "--data", "cifar10", "--limit", "64", "--no-attack"])
    assert code == 0 and rep["model"].endswith("cifar10_6c2f.safetensors")
    assert rep["data"]["num_classes"] == 10 and rep["eps"] == pytest.approx([36 / 255])
    assert rep["constants"]["sound"] is True
