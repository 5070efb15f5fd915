"""`liplt train` through the CLI entry point: output, files, and every error path."""

from __future__ import annotations

import json

import pytest

from liplt_cli.cli.app import run
from tests.train_standin import install


@pytest.fixture(autouse=True)
def _engine(monkeypatch):
    install(monkeypatch)


def _base(tmp_path) -> list[str]:
    return ["train", "--arch", "mlp:16", "--limit", "64", "--epochs", "1", "--batch-size", "32",
            "--warmup-epochs", "0", "--power-iterations", "1", "--device", "cpu", "--out", str(tmp_path / "run")]


def test_json_run_on_embedded_data_says_so(tmp_path, capsys):
    code = run(_base(tmp_path) + ["--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert doc["embedded_data"] is True and "embedded MNIST" in doc["data"]
    assert "embedded MNIST sample" in cap.err and "--data-dir" in cap.err
    final = doc["final"]
    assert final["epoch"] == 1 and 0 <= final["val_certified"] <= final["val_acc"] <= 1
    assert doc["config"]["arch"] == "mlp:16" and doc["config"]["limit"] == 64
    for key in ("safetensors", "onnx", "checkpoint", "metrics"):
        assert (tmp_path / "run").joinpath(doc["files"][key].rsplit("/", 1)[-1]).exists()


def test_table_output_and_resume(tmp_path, capsys):
    assert run(_base(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "val cert" in out and "1/1" in out and "model.safetensors" in out
    code = run(_base(tmp_path)[:-2] + ["--out", str(tmp_path / "run"), "--epochs", "2", "--resume", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert doc["resumed_from_epoch"] == 0 and [r["epoch"] for r in doc["records"]] == [1, 2]


def test_recipe_with_overrides(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "mlp:8"\nlam = 3.0\ng = "hinge"\nwarmup_epochs = 0\n')
    code = run(["train", "--recipe", str(recipe), "--limit", "48", "--epochs", "1", "--lam", "2",
                "--device", "cpu", "--out", str(tmp_path / "r"), "--json", "--fast-validation"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert (doc["config"]["arch"], doc["config"]["lam"], doc["config"]["g"]) == ("mlp:8", 2.0, "hinge")
    assert doc["final"]["certified_source"].startswith("estimate")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "exact"], "unknown method 'exact'"),
        (["--g", "square"], "unknown g 'square'"),
        (["--eps", "36/0"], "divides by zero"),
        (["--eps", "1,2"], "--eps takes one value"),
        (["--train-range", "10-20"], "--train-range must look like"),
        (["--train-range", "20:10"], "START < STOP"),
        (["--epochs", "0"], "epochs must be positive"),
        (["--arch", "9Z9"], "unknown architecture"),
        (["--recipe", "nope_recipe"], "neither a file nor a shipped recipe"),
        (["--resume"], "no checkpoint"),
        (["--dataset", "/nonexistent/data.npz"], "neither a known name"),
        (["--input-mean", "0.5"], "go together"),
        (["--input-mean", "a", "--input-std", "1"], "comma-separated numbers"),
        (["--robust-normalisation", "mean"], "unknown robust_normalisation"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code = run(_base(tmp_path) + extra)
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_npz_dataset_with_train_range_is_recorded(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.random((40, 1, 6, 6)).astype(np.float32), y=rng.integers(0, 3, 40))
    code = run(["train", "--dataset", str(path), "--train-range", "8:40", "--arch", "mlp:8", "--epochs", "1",
                "--warmup-epochs", "0", "--device", "cpu", "--out", str(tmp_path / "n"), "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    # the default split holds out 10% (the reference's 90/10): 32 − int(32·0.9) = 4
    assert "training indices 8–39" in doc["data"] and "4 of them held out for validation" in doc["data"]
    assert doc["final"]["samples_rank0"] == 28 and doc["final"]["val_samples"] == 4
    assert "embedded" not in cap.err
    code = run(["train", "--dataset", str(path), "--train-range", "8:40", "--arch", "mlp:8", "--epochs", "1",
                "--warmup-epochs", "0", "--device", "cpu", "--out", str(tmp_path / "m"), "--json", "--val-size", "1000"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "8 of them held out for validation" in doc["data"]  # never more than a quarter
    assert doc["final"]["samples_rank0"] == 24 and doc["final"]["val_samples"] == 8


def test_epochs_rescales_a_recipe_and_explicit_flags_win(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "mlp:8"\nepochs = 40\nwarmup_epochs = 10\nlr_schedule = "exponential"\n'
                      'lr_decay_start = 20\nval_every = 1\n')
    base = ["train", "--recipe", str(recipe), "--limit", "48", "--device", "cpu", "--json", "--fast-validation"]
    code = run(base + ["--epochs", "4", "--out", str(tmp_path / "a")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    doc = json.loads(cap.out)
    assert (doc["config"]["epochs"], doc["config"]["warmup_epochs"], doc["config"]["lr_decay_start"]) == (4, 1, 2)
    assert [r["lam"] for r in doc["records"]] == [0.0, 30.0, 30.0, 30.0]
    assert [r["lr"] for r in doc["records"]] == pytest.approx([1e-3, 1e-3, 1e-3 * 1e-3**0.5, 1e-6], rel=1e-9)
    code = run(base + ["--epochs", "2", "--warmup-epochs", "0", "--lr-decay-start", "5", "--out", str(tmp_path / "b"),
                       "--input-mean", "0.5", "--input-std", "0.25", "--robust-normalisation", "active",
                       "--adam-eps", "1e-8", "--val-fraction", "0.2", "--val-every", "2", "--lr-min", "1e-5",
                       "--augment-fill", "0.5"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    c = json.loads(cap.out)["config"]
    assert (c["warmup_epochs"], c["lr_decay_start"], c["input_mean"], c["input_std"]) == (0, 5, [0.5], [0.25])
    assert (c["robust_normalisation"], c["adam_eps"], c["val_fraction"], c["val_every"], c["lr_min"], c["augment_fill"]) == (
        "active", 1e-8, 0.2, 2, 1e-5, 0.5)


def test_resume_from_unreadable_checkpoint(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code = run(_base(tmp_path) + ["--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "error: --resume: cannot read checkpoint" in err and "Traceback" not in err


def test_resume_with_another_arch_and_divergence(tmp_path, capsys):
    assert run(_base(tmp_path) + ["--json"]) == 0
    capsys.readouterr()
    code = run(_base(tmp_path)[:2] + ["mlp:32"] + _base(tmp_path)[3:] + ["--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "holds a different model (arch mlp:16)" in err
    code = run(_base(tmp_path)[:-2] + ["--out", str(tmp_path / "big"), "--lr", "1e30"])
    err = capsys.readouterr().err
    assert code == 2 and "error: training diverged" in err, err
