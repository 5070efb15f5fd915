"""`liplt certify --local` and `liplt bound --at`: tables, JSON, gate on the local figure, CSV, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from liplt_cli.cli.app import run
from liplt_cli.data import load_dataset
from liplt_cli.load import save_safetensors
from tests.certify_nets import tiny_trained_mlp


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph, *_ = tiny_trained_mlp()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(graph, path)
    return path


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = run(argv + ["--json"])
    return code, json.loads(capsys.readouterr().out)


BASE = ["--limit", "30", "--eps", "0.8,1.5", "--attack-steps", "10"]


@pytest.fixture(scope="module")
def local_report(model: Path) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run(["certify", str(model), "--local", *BASE, "--json"])
    assert code == 0
    return json.loads(buf.getvalue())


def test_local_json_carries_both_figures_and_local_is_at_least_global(local_report: dict) -> None:
    local = local_report["local"]
    assert local is not None and local["guarantee"] in ("exact", "upper bound")
    assert local["domain"] == [0.0, 1.0] and local["tolerance"] == 0.05
    for g, l_, p in zip(local_report["certified_accuracy"], local["certified_accuracy"], local_report["pgd_accuracy"]):
        assert g <= l_ <= p  # never below global; never above what PGD leaves
    assert local["certified_accuracy"][1] > local_report["certified_accuracy"][1]  # informative on this model
    assert local_report["violations"] == [0, 0]
    assert local["radius"]["mean"] >= local_report["radius"]["mean"]


def test_without_local_the_json_says_so(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["certify", str(model), "--limit", "5", "--eps", "0.3", "--no-attack"])
    assert code == 0 and rep["local"] is None


def test_local_table_per_sample_csv_and_gate(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             local_report: dict) -> None:
    csv_path = tmp_path / "radii.csv"
    argv = ["certify", str(model), "--local", "--limit", "30", "--eps", "0.8,1.5", "--no-attack",
            "--per-sample", str(csv_path)]
    code = run(argv)
    out = capsys.readouterr().out
    assert code == 0 and "local certified" in out and "ms per sample" in out
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 30
    assert all(float(r["local_radius"]) >= float(r["radius"]) for r in rows)
    acc = local_report["local"]["certified_accuracy"][1]
    assert acc > local_report["certified_accuracy"][1]
    code, rep = _json(capsys, argv[:-2] + ["--min-certified", str(acc)])
    assert code == 0 and rep["gate"]["passed"] and rep["gate"]["certified_accuracy"] == acc
    code, rep = _json(capsys, argv[:-2] + ["--min-certified", str(min(1.0, acc + 0.01))])
    assert code == 1 and not rep["gate"]["passed"]


@pytest.mark.parametrize("argv, message", [
    (["--local", "--fast"], "--local needs sound constants"),
    (["--local", "--input-range", "1,0"], "--input-range"),
    (["--local", "--tolerance", "2"], "--tolerance"),
    (["--local", "--input-range", "0.2,0.5"], "outside the input range"),
])
def test_local_user_errors_exit_2(model: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code = run(["certify", str(model), "--limit", "5", "--eps", "0.3", "--no-attack", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = load_dataset(None, limit=3)
    path = tmp_path_factory.mktemp("at") / "inputs.npz"
    np.savez(path, x=ds.x.numpy())
    return path


def test_bound_at_json_local_below_global(model: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["bound", str(model), "--at", str(inputs), "--eps", "0.1", "--input-range", "0,1"])
    assert code == 0 and rep["sound"] and rep["domain"] == [0.0, 1.0] and len(rep["samples"]) == 3
    ref = rep["global_reference"]
    for s in rep["samples"]:
        assert s["eps"] == 0.1
        assert s["global"] <= ref["global"]
        assert all(a <= b for a, b in zip(s["per_class"], ref["per_class"]))
        assert all(a <= b for row, ref_row in zip(s["pairwise"], ref["pairwise"]) for a, b in zip(row, ref_row))
        assert s["pairwise_mean"] < ref["pairwise_mean"]


def test_bound_at_table(model: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["bound", str(model), "--at", str(inputs), "--eps", "0.05", "--per-class"])
    out = capsys.readouterr().out
    assert code == 0 and "local L" in out and "global mean L_ij" in out and "per-class" in out


@pytest.mark.parametrize("argv, message", [
    (["--eps", "0.1"], "--at and --eps go together"),
    (["--at", "missing.npz", "--eps", "0.1"], "no such file"),
    (["--at", "INPUTS", "--eps", "0.1,0.2"], "one radius"),
])
def test_bound_at_user_errors_exit_2(model: Path, inputs: Path, capsys: pytest.CaptureFixture[str], argv, message) -> None:
    argv = [str(inputs) if a == "INPUTS" else a for a in argv]
    code = run(["bound", str(model), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_help_defaults_of_the_local_options_are_the_library_defaults() -> None:
    """``--tolerance`` / ``--local-batch`` defaults are repeated in the CLI (help imports no torch)."""
    from liplt_cli.cli import certify as certify_cli
    from liplt_cli.local import LocalSettings

    assert certify_cli.DEFAULT_TOLERANCE == LocalSettings().tolerance
    assert certify_cli.DEFAULT_LOCAL_BATCH == LocalSettings().batch_size
    assert LocalSettings().domain == (0.0, 1.0)  # what --input-range auto means


def test_local_options_without_local_are_warned_about(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["certify", str(model), "--limit", "5", "--eps", "0.3", "--no-attack", "--tolerance", "0.1"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: --input-range, --tolerance and --local-batch are ignored without --local" in err


def test_bound_at_keeps_eps_as_typed(model: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = _json(capsys, ["bound", str(model), "--at", str(inputs), "--eps", "26/255"])
    assert code == 0 and rep["eps_text"] == "26/255" and rep["samples"][0]["eps"] == 26 / 255
    assert rep["warnings"] == []
    code = run(["bound", str(model), "--at", str(inputs), "--eps", "26/255"])
    assert code == 0 and "radius 26/255 around" in capsys.readouterr().out


def test_bound_options_that_at_does_not_use_are_warned_about(model: Path, inputs: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["bound", str(model), "--at", str(inputs), "--eps", "0.1", "--method", "naive", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and "warning: --method naive is ignored with --at" in captured.err
    assert any("--method naive" in w for w in json.loads(captured.out)["warnings"])
    code = run(["bound", str(model), "--input-range", "0,1", "--json"])
    assert code == 0 and "warning: --input-range is ignored without --at" in capsys.readouterr().err
