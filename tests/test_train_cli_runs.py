"""`liplt train` runs through the CLI entry point: resume from the run's own config, no silent
overwrites, per-dataset defaults, checks before anything is written, readable epoch lines."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from liplt_cli.cli.app import run
from tests.train_standin import install

TINY = ["--limit", "48", "--batch-size", "16", "--power-iterations", "1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _engine(monkeypatch):
    install(monkeypatch)


@pytest.fixture()
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.random((40, 1, 6, 6)).astype(np.float32), y=rng.integers(0, 3, 40))
    return path


def _json(capsys, code):
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads(cap.out), cap.err


def test_resume_reads_the_runs_own_config(tmp_path, capsys, npz):
    """The README's `liplt train --out RUN --resume` continues with the run's settings, not the defaults."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'arch = "mlp:8"\ndataset = "{npz}"\nepochs = 2\nwarmup_epochs = 0\nlam = 2.0\n'
                      'g = "hinge"\nval_every = 1\n')
    out = tmp_path / "run"
    first, _ = _json(capsys, run(["train", "--recipe", str(recipe), "--epochs", "1", "--out", str(out), "--json"]
                                 + TINY))
    assert first["config"]["epochs"] == 1
    doc, err = _json(capsys, run(["train", "--out", str(out), "--resume", "--epochs", "2", "--json"]))
    c = doc["config"]
    assert (c["arch"], c["dataset"], c["lam"], c["g"], c["limit"], c["epochs"]) == ("mlp:8", str(npz), 2.0, "hinge",
                                                                                    48, 2)
    assert doc["resumed_from_epoch"] == 0 and [r["epoch"] for r in doc["records"]] == [1, 2]
    assert "embedded" not in err
    saved = json.loads((out / "config.json").read_text())
    assert (saved["arch"], saved["dataset"], saved["epochs"]) == ("mlp:8", str(npz), 2)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "mlp:16"], "holds a different model (arch mlp:8) than --arch mlp:16"),
        (["--input-mean", "0.5", "--input-std", "0.5"], "holds a different model (input mean None) than --input-mean"),
        (["--dataset", "mnist"], "holds different data (dataset"),
        (["--limit", "40"], "holds different data (limit 48) than --limit 40"),
        (["--seed", "3"], "holds different data (seed 0) than --seed 3"),
        (["--recipe", "mnist_4c3f"], "--recipe cannot be combined with --resume"),
        (["--overwrite"], "give one of them"),
    ],
)
def test_resume_refuses_to_change_the_model_or_the_data(tmp_path, capsys, npz, extra, message):
    out = tmp_path / "run"
    base = ["train", "--dataset", str(npz), "--arch", "mlp:8", "--epochs", "1", "--out", str(out), "--json"] + TINY
    _json(capsys, run(base))
    before = (out / "config.json").read_text()
    code = run(["train", "--out", str(out), "--resume", "--epochs", "2"] + extra)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert (out / "config.json").read_text() == before  # nothing rewritten


def test_a_non_empty_out_is_refused_unless_resume_or_overwrite(tmp_path, capsys, npz):
    out = tmp_path / "run"
    base = ["train", "--dataset", str(npz), "--arch", "mlp:8", "--epochs", "1", "--out", str(out), "--json"] + TINY
    _json(capsys, run(base))
    model = out / "model.safetensors"
    stamp = model.stat().st_mtime_ns, model.read_bytes()
    code = run(base + ["--lr", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and f"error: --out {out} is not empty (checkpoint.pt, config.json," in err
    assert "--resume continues" in err and "--overwrite replaces" in err
    assert (model.stat().st_mtime_ns, model.read_bytes()) == stamp
    # a recipe whose `out` names that run is refused the same way
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'arch = "mlp:8"\ndataset = "{npz}"\nout = "{out}"\n')
    code = run(["train", "--recipe", str(recipe), "--epochs", "1"] + TINY)
    assert code == 2 and "is not empty" in capsys.readouterr().err
    assert model.read_bytes() == stamp[1]
    doc, _ = _json(capsys, run(base + ["--lr", "0.1", "--overwrite"]))
    assert doc["config"]["lr"] == 0.1 and json.loads((out / "config.json").read_text())["lr"] == 0.1


def test_written_files_follow_the_umask(tmp_path, capsys, npz):
    old = os.umask(0o022)
    try:
        _json(capsys, run(["train", "--dataset", str(npz), "--arch", "mlp:8", "--epochs", "1", "--json",
                           "--out", str(tmp_path / "run")] + TINY))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").iterdir()}
    assert modes == {name: 0o644 for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "model.safetensors",
                                              "model.onnx")}


def _tiny_cifar(folder, per_batch: int = 12) -> None:
    rng = np.random.default_rng(1)
    bins = folder / "cifar-10-batches-bin"
    bins.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, (per_batch, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        (bins / f"{name}.bin").write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_validation_eps_defaults_to_the_datasets_value(tmp_path, capsys):
    _tiny_cifar(tmp_path / "cifar")
    base = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"), "--arch", "mlp:8", "--epochs", "1",
            "--json", "--fast-validation"] + TINY
    doc, _ = _json(capsys, run(base + ["--out", str(tmp_path / "a")]))
    assert doc["config"]["eps"] == 36 / 255
    doc, _ = _json(capsys, run(base + ["--out", str(tmp_path / "b"), "--eps", "8/255"]))
    assert doc["config"]["eps"] == 8 / 255
    # a recipe without its own ε takes the ε of the dataset the flags name
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "mlp:8"\n')
    doc, _ = _json(capsys, run(base + ["--out", str(tmp_path / "c"), "--recipe", str(recipe)]))
    assert doc["config"]["eps"] == 36 / 255
    mnist, _ = _json(capsys, run(["train", "--arch", "mlp:8", "--epochs", "1", "--json", "--out", str(tmp_path / "m")]
                                 + TINY))
    assert mnist["config"]["eps"] == 1.58


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "9Z9"], "unknown architecture"),
        (["--arch", "mlp:a"], "an mlp needs integer widths"),
        (["--dataset", "nosuchset"], "neither a known name"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["--activation", "swishy"], "unknown activation"),
        (["--weight-decay", "-1"], "--weight-decay must be non-negative"),
        (["--eps", "nan"], "must be a finite non-negative number"),
        (["--lr", "inf"], "--lr must be a finite number"),
    ],
)
def test_bad_arguments_stop_before_anything_is_written(tmp_path, capsys, extra, message):
    out = tmp_path / "nested" / "run"
    code = run(["train", "--epochs", "1", "--out", str(out)] + TINY + extra)
    cap = capsys.readouterr()
    assert code == 2 and message in cap.err, cap.err
    assert cap.out == "" and not (tmp_path / "nested").exists()


def test_epoch_lines_name_the_loss_terms_and_keep_short_epochs_visible(tmp_path, capsys, npz):
    code = run(["train", "--dataset", str(npz), "--arch", "mlp:8", "--epochs", "1", "--warmup-epochs", "0",
                "--out", str(tmp_path / "run")] + TINY)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    header, line = cap.out.splitlines()[:2]

    def cells(text):  # fixed-width columns: 9 characters, 2 apart
        return [text[i : i + 9].strip() for i in range(0, len(text), 11)]

    columns = cells(header)
    assert columns[2:6] == ["loss", "CE", "λ·robust", "robust"]
    values = dict(zip(columns, cells(line)))
    assert float(values["loss"]) == pytest.approx(float(values["CE"]) + float(values["λ·robust"]), abs=2e-3)
    assert float(values["s"]) > 0  # an epoch under a second is not shown as 0


def test_a_warm_up_as_long_as_the_run_is_warned_about(tmp_path, capsys, npz):
    code = run(["train", "--dataset", str(npz), "--arch", "mlp:8", "--epochs", "1", "--warmup-epochs", "1",
                "--json", "--out", str(tmp_path / "run")] + TINY)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    warnings = [ln for ln in cap.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "the robust term never starts" in warnings[0]
    assert json.loads(cap.out)["config"]["warmup_epochs"] == 1


def test_every_recipe_key_is_an_option_with_its_default_in_the_help(capsys):
    from liplt_cli.train.config import TrainConfig
    import dataclasses

    code = run(["train", "--help"])
    text = capsys.readouterr().out
    assert code == 0
    for f in dataclasses.fields(TrainConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag.split("/")[0] in text, f.name
    for shown in ("[default: (512)]", "[default: (30.0)]", "[default: (0.001)]", "[default: (10)]"):
        assert shown in " ".join(text.split()), shown
