"""Hostile command lines: the error handler, Click's usage errors, output paths, `train`'s order.

* Any unexpected exception is one ``internal error: …`` line and exit 3, whatever the installed
  Typer/Click layout (the handler once raised AttributeError on ``click_exceptions.Abort``).
* Click's usage errors (unknown option, missing value, bad choice, bad number …) are liplt's one
  ``error: …`` line with exit 2, not Click's three-line usage block.
* Output paths are checked before any computation: the computation is replaced by a function
  that fails the test if it is ever called.
* ``train`` validates everything before it creates ``--out`` or prints anything else.
"""

from __future__ import annotations

import os
import pickle
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import typer

from liplt_cli.cli import app as app_module
from tests.hostile import FifoGuard, MarkerPayload, assert_one_line_error, expect_error, run_cli
from tests.train_standin import install

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mlp_relu.onnx"

pytestmark = pytest.mark.usefixtures("single_thread")


def _never(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} ran although the command line was invalid")
    return fail


# ============================================================================ the internal-error handler
def _raise_from_loader(monkeypatch, exc):
    import liplt_cli.load

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(liplt_cli.load, "load_model", boom)


@pytest.mark.parametrize(
    "exc, words",
    [(RuntimeError("boom\nsecond line\n  third"), ["RuntimeError: boom second line third"]),
     (AttributeError("module 'x' has no attribute 'Abort'"), ["AttributeError"]),
     (MemoryError(), ["out of memory"]),
     (KeyError("k"), ["KeyError"]),
     (RecursionError("deep"), ["RecursionError"])],
    ids=["multiline", "attribute", "memory", "key", "recursion"],
)
def test_unexpected_error_is_one_line_exit_3(monkeypatch, capsys, exc, words):
    monkeypatch.delenv("LIPLT_DEBUG", raising=False)
    _raise_from_loader(monkeypatch, exc)
    line = expect_error(capsys, ["inspect", EXAMPLE], *words, "rerun with LIPLT_DEBUG=1", exit_code=3)
    assert line.startswith("internal error: ")


def test_debug_mode_reraises(monkeypatch, capsys):
    monkeypatch.setenv("LIPLT_DEBUG", "1")
    _raise_from_loader(monkeypatch, RuntimeError("show me"))
    with pytest.raises(RuntimeError, match="show me"):
        app_module.run(["inspect", str(EXAMPLE)])


@pytest.fixture
def loader_raises(monkeypatch):
    return lambda exc: _raise_from_loader(monkeypatch, exc)


@pytest.mark.parametrize("which", ["Abort", "Exit"])
def test_handler_survives_a_typer_without_abort_or_exit(monkeypatch, capsys, loader_raises, which):
    """The original bug: the handler looked up a class the installed Typer does not have."""
    import typer.exceptions

    monkeypatch.delenv("LIPLT_DEBUG", raising=False)
    monkeypatch.delattr(typer.exceptions, which, raising=False)
    loader_raises(ValueError("unexpected"))
    expect_error(capsys, ["inspect", EXAMPLE], "ValueError: unexpected", exit_code=3)


def test_handler_that_fails_itself_still_gives_exit_3(monkeypatch, capsys, loader_raises):
    monkeypatch.delenv("LIPLT_DEBUG", raising=False)

    def broken(name):
        raise AttributeError("no such class")

    monkeypatch.setattr(app_module, "_exception_classes", broken)
    loader_raises(ValueError("unexpected"))
    expect_error(capsys, ["inspect", EXAMPLE], "ValueError", "AttributeError while reporting it", exit_code=3)


def test_handler_knows_the_installed_typers_classes():
    """Run the installed Typer: the classes it raises are the ones the handler looks for."""
    assert typer.Abort in app_module._exception_classes("Abort")
    assert typer.Exit in app_module._exception_classes("Exit")
    try:
        app_module.app(args=["bound", "--no-such-flag"], standalone_mode=False, prog_name="liplt")
    except Exception as exc:  # noqa: BLE001
        raised = exc
    else:  # pragma: no cover
        pytest.fail("Typer accepted an unknown option")
    assert isinstance(raised, app_module._exception_classes("UsageError")), type(raised)


def test_installed_typer_is_in_the_tested_range():
    from importlib.metadata import version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("typer"))
    low = re.search(r">=\s*([\d.]+)", spec)
    high = re.search(r"<\s*([\d.]+)", spec)
    assert low and high, f"typer is not pinned to a tested range in pyproject.toml: {spec}"

    def key(v):
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    installed = key(version("typer"))
    assert key(low.group(1)) <= installed < key(high.group(1)), (spec, version("typer"))


def test_abort_and_exit_from_a_command(monkeypatch, capsys, loader_raises):
    loader_raises(typer.Abort())
    code, _, err = run_cli(capsys, ["inspect", EXAMPLE])
    assert code == 130 and err.strip() == "aborted"
    loader_raises(typer.Exit(0))
    assert run_cli(capsys, ["inspect", EXAMPLE])[0] == 0


def test_keyboard_interrupt(monkeypatch, capsys, loader_raises):
    loader_raises(KeyboardInterrupt())
    code, _, err = run_cli(capsys, ["inspect", EXAMPLE])
    assert code == 130 and "Traceback" not in err


def test_multiline_user_error_is_one_line(monkeypatch, capsys, loader_raises):
    from liplt_cli.errors import ModelLoadError

    loader_raises(ModelLoadError("first\nsecond"))
    assert expect_error(capsys, ["inspect", EXAMPLE]) == "error: first second"


# ============================================================================ Click's usage errors
USAGE_CASES = {
    "unknown-option": (["bound", str(EXAMPLE), "--bogus"], ["No such option: --bogus"]),
    "unknown-option-certify": (["certify", "--frobnicate", "3"], ["No such option"]),
    "missing-value": (["certify", str(EXAMPLE), "--eps"], ["--eps", "requires an argument"]),
    "bad-choice-norm": (["bound", str(EXAMPLE), "--norm", "7"], ["--norm"]),
    "bad-choice-method": (["bound", str(EXAMPLE), "--method", "crown"], ["--method"]),
    "bad-choice-device": (["bound", str(EXAMPLE), "--device", "tpu"], ["--device"]),
    "bad-int": (["certify", "--limit", "abc"], ["--limit"]),
    "bad-float": (["certify", "--min-certified", "half"], ["--min-certified"]),
    "int-below-min": (["bound", str(EXAMPLE), "--iterations", "0"], ["--iterations"]),
    "missing-argument": (["bound"], ["Missing argument"]),
    "extra-argument": (["bound", str(EXAMPLE), "extra.onnx"], ["unexpected extra argument"]),
    "unknown-command": (["frobnicate"], ["No such command"]),
    "compare-without-models": (["compare"], ["Missing argument"]),
    "bad-int-train": (["train", "--epochs", "ten"], ["--epochs"]),
    "bad-float-train": (["train", "--lr", "fast"], ["--lr"]),
    "conflicting-flags": (["bound", str(EXAMPLE), "--pairwise", "--per-class"], ["at most one of"]),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors_are_one_liplt_line(capsys, case):
    argv, words = USAGE_CASES[case]
    line = expect_error(capsys, argv, *words)
    assert "Usage:" not in line and "--help" in line


def test_no_arguments_shows_help(capsys):
    code, out, err = run_cli(capsys, [])
    assert code == 2 and "Usage" in out + err and "Traceback" not in out + err


# ============================================================================ output paths, before computing
@pytest.fixture
def no_certify(monkeypatch):
    import liplt_cli.certify
    import liplt_cli.data

    monkeypatch.setattr(liplt_cli.certify, "certify", _never("certify"))
    monkeypatch.setattr(liplt_cli.data, "load_dataset", _never("load_dataset"))


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_issue_13_plot_with_unsupported_suffix_is_refused_up_front(tmp_path, capsys, no_certify):
    """`certify MODEL --data mnist --limit 200 --no-attack --plot x.txt` once crashed after computing."""
    expect_error(capsys, ["certify", EXAMPLE, "--data", "mnist", "--limit", "200", "--no-attack",
                          "--plot", tmp_path / "x.txt"], "--plot", ".txt", "PNG/PDF/SVG")
    assert not (tmp_path / "x.txt").exists()


def _file(tmp_path):
    (tmp_path / "file").write_text("keep")
    return tmp_path / "file"


CERTIFY_OUTPUT_CASES = {
    # id: (argv builder given tmp_path, expected words)
    "plot-jpg": (lambda t: ["--plot", t / "a.jpg"], [".jpg"]),
    "plot-into-proc": (lambda t: ["--plot", "/proc/liplt-test.png"], ["/proc"]),
    "plot-is-a-directory": (lambda t: (t / "d.png").mkdir() or ["--plot", t / "d.png"], ["directory"]),
    "plot-missing-folder": (lambda t: ["--plot", t / "no" / "p.png"], ["does not exist"]),
    "plot-under-a-file": (lambda t: ["--plot", _file(t) / "p.png"], ["not a directory"]),
    "per-sample-into-proc": (lambda t: ["--per-sample", "/proc/liplt-test.csv"], ["--per-sample", "/proc"]),
    "per-sample-is-a-directory": (lambda t: ["--per-sample", t], ["--per-sample", "directory"]),
    "per-sample-missing-folder": (lambda t: ["--per-sample", t / "no" / "r.csv"], ["does not exist"]),
    "per-sample-under-a-file": (lambda t: ["--per-sample", _file(t) / "r.csv"], ["not a directory"]),
    "per-sample-is-a-fifo": (lambda t: os.mkfifo(t / "r.csv") or ["--per-sample", t / "r.csv"], ["FIFO"]),
    "plot-and-per-sample-same": (lambda t: ["--plot", t / "x.png", "--per-sample", t / "x.png"], ["same file"]),
}


@pytest.mark.parametrize("case", list(CERTIFY_OUTPUT_CASES))
def test_certify_output_paths_are_checked_before_computing(tmp_path, capsys, no_certify, case):
    build, words = CERTIFY_OUTPUT_CASES[case]
    extra = build(tmp_path)
    before = _tree(tmp_path)
    expect_error(capsys, ["certify", EXAMPLE, "--no-attack", *extra], *words)
    assert _tree(tmp_path) == before, "a file was created although the command failed"
    assert (tmp_path / "file").read_text() == "keep" if (tmp_path / "file").exists() else True


@pytest.mark.parametrize(
    "build, words",
    [(lambda t: "/proc/liplt-compare.png", ["/proc"]), (lambda t: (t / "c.png").mkdir() or t / "c.png", ["directory"]),
     (lambda t: t / "c.svg", [".png"]), (lambda t: _file(t) / "c.png", ["not a directory"])],
    ids=["proc", "directory", "svg", "under-a-file"],
)
def test_compare_plot_path_is_checked_before_computing(tmp_path, capsys, monkeypatch, build, words):
    import liplt_cli.compare

    monkeypatch.setattr(liplt_cli.compare, "compare_models", _never("compare_models"))
    plot = build(tmp_path)
    before = _tree(tmp_path)
    expect_error(capsys, ["compare", EXAMPLE, "--plot", plot], *words)
    assert _tree(tmp_path) == before


def test_plot_without_suffix_prints_the_file_it_wrote(tmp_path, capsys):
    plot = tmp_path / "some_dir"
    code, out, err = run_cli(capsys, ["certify", EXAMPLE, "--limit", "8", "--no-attack", "--plot", plot,
                                      "--device", "cpu"])
    assert code == 0, err
    written = tmp_path / "some_dir.png"
    assert written.is_file() and not plot.exists()
    assert f"plot written to {written}" in out


def test_valid_outputs_are_still_written(tmp_path, capsys):
    csv, pdf = tmp_path / "r.csv", tmp_path / "p.pdf"
    code, out, err = run_cli(capsys, ["certify", EXAMPLE, "--limit", "6", "--no-attack", "--per-sample", csv,
                                      "--plot", pdf, "--device", "cpu"])
    assert code == 0, err
    assert csv.read_text().startswith("index,label") and pdf.read_bytes()[:4] == b"%PDF"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".liplt-write-probe")]


# ============================================================================ train validates first
@pytest.fixture
def train_env(monkeypatch):
    install(monkeypatch)


def _train(tmp_path, *extra):
    return ["train", "--arch", "mlp:8", "--limit", "64", "--epochs", "1", "--device", "cpu",
            "--out", tmp_path / "run", *extra]


def _recipe_fifo(t):
    os.mkfifo(t / "r.toml")
    return ["--recipe", t / "r.toml"]


TRAIN_CASES = {
    # id: (extra argv builder, expected words); --out is tmp_path/run unless the case overrides it
    "arch-mlp-0": (lambda t: ["--arch", "mlp:0"], ["positive"]),
    "arch-mlp-negative": (lambda t: ["--arch", "mlp:-5"], ["positive"]),
    "arch-mlp-huge": (lambda t: ["--arch", "mlp:100000000000"], ["memory budget"]),
    "arch-unknown": (lambda t: ["--arch", "9Z9"], ["unknown architecture"]),
    "activation-unknown": (lambda t: ["--activation", "swoosh"], ["swoosh"]),
    "dataset-missing": (lambda t: ["--dataset", t / "nope.npz"], ["neither a known name"]),
    "data-dir-missing": (lambda t: ["--dataset", "mnist", "--data-dir", t / "nowhere"], ["does not exist"]),
    "data-dir-empty": (lambda t: (t / "empty").mkdir() or ["--dataset", "mnist", "--data-dir", t / "empty"],
                       ["missing"]),
    "recipe-missing": (lambda t: ["--recipe", "no_such_recipe"], ["neither a file nor a shipped recipe"]),
    "recipe-not-toml": (lambda t: (t / "r.toml").write_text("arch = [") and ["--recipe", t / "r.toml"], ["not valid"]),
    "recipe-unknown-key": (lambda t: (t / "r.toml").write_text("rm_rf = 1\n") and ["--recipe", t / "r.toml"],
                           ["unknown key"]),
    "recipe-directory": (lambda t: (t / "rdir").mkdir() or ["--recipe", t / "rdir"], ["directory"]),
    "recipe-fifo": (_recipe_fifo, ["FIFO"]),
    "epochs-zero": (lambda t: ["--epochs", "0"], ["epochs must be positive"]),
    "lr-negative": (lambda t: ["--lr", "-1"], ["lr must be positive"]),
    "lr-infinite": (lambda t: ["--lr", "inf"], ["lr", "finite"]),
    "lam-nan": (lambda t: ["--lam", "nan"], ["lam"]),
    "batch-zero": (lambda t: ["--batch-size", "0"], ["batch-size must be positive"]),
    "limit-zero": (lambda t: ["--limit", "0"], ["limit"]),
    "val-size-negative": (lambda t: ["--val-size", "-1"], ["val-size"]),
    "eps-negative": (lambda t: ["--eps", "-1"], ["ε"]),
    "train-range-reversed": (lambda t: ["--train-range", "9:3"], ["START < STOP"]),
    "out-is-a-file": (lambda t: ["--out", _file(t)], ["not a directory"]),
    "out-under-a-file": (lambda t: ["--out", _file(t) / "run"], ["not a directory"]),
    "out-in-proc": (lambda t: ["--out", "/proc/liplt-run"], ["/proc", "does not accept new files"]),
    "resume-without-checkpoint": (lambda t: ["--resume"], ["no checkpoint"]),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_validates_everything_before_creating_out(tmp_path, capsys, train_env, monkeypatch, case):
    from liplt_cli.train import loop

    monkeypatch.setattr(loop, "_train", _never("the training loop"))
    build, words = TRAIN_CASES[case]
    extra = build(tmp_path)
    before = _tree(tmp_path)
    fifo = tmp_path / "r.toml"
    if fifo.exists() and not fifo.is_file():
        with FifoGuard(fifo) as guard:
            line = expect_error(capsys, _train(tmp_path, *extra), *words)
        assert not guard.fired
    else:
        line = expect_error(capsys, _train(tmp_path, *extra), *words)
    assert "note:" not in line
    assert _tree(tmp_path) == before, "train created files although its arguments were invalid"
    assert not (tmp_path / "run").exists()


def test_resume_never_unpickles_code(tmp_path, capsys, train_env):
    marker = tmp_path / "pwned"
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32), y=np.arange(40) % 3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(pickle.dumps({"model": MarkerPayload(marker)}, protocol=2))
    expect_error(capsys, _train(tmp_path, "--dataset", data, "--resume", "--json"), "cannot read checkpoint")
    assert not marker.exists(), "the checkpoint's pickle ran code"


def test_npz_with_a_pickled_object_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([MarkerPayload(marker)], dtype=object), y=np.array([0]))
    expect_error(capsys, ["certify", EXAMPLE, "--data", path, "--eps", "0.1", "--no-attack"], "not a readable .npz")
    assert not marker.exists()
