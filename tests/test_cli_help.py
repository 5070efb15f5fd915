"""``--help`` and ``--version``: fast (no torch), grouped panels, every default shown, plain metavars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from liplt_cli.cli.app import app, run

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "onnx", "onnx2torch", "safetensors", "matplotlib")
COMMANDS = ("inspect", "bound", "certify", "compare")  # train's options come from its config (done with it)
HELP_CALLS = [["--help"], ["--version"], *[[c, "--help"] for c in (*COMMANDS, "train")]]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_help_and_version_import_no_heavy_module() -> None:
    """Every help page and --version, through the real entry point, without torch/numpy/onnx."""
    script = (
        "import sys\n"
        "from liplt_cli.cli.app import run\n"
        f"codes = [run(a) for a in {HELP_CALLS!r}]\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(codes, heavy, file=sys.stderr)\n"
    )
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"{[0] * len(HELP_CALLS)} []"


def test_module_entry_point_help_imports_no_torch() -> None:
    """``python -X importtime -m liplt_cli --help``: the import log names no heavy module."""
    done = _python("-X", "importtime", "-m", "liplt_cli", "--help")
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the log is there
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def _click_command(name: str):  # noqa: ANN202
    import typer.main

    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_a_panel_a_metavar_and_a_default(name: str) -> None:
    command = _click_command(name)
    options = [p for p in command.params if p.param_type_name == "option"]
    assert options
    for p in options:
        assert p.rich_help_panel, f"{name} {p.opts[0]} has no help panel"
        if p.is_flag:
            continue
        assert p.metavar, f"{name} {p.opts[0]} has no metavar"
        shown = isinstance(p.show_default, str) or (p.show_default and p.default is not None)
        assert shown, f"{name} {p.opts[0]} shows no default"
    panels = {p.rich_help_panel for p in options}
    assert {"Model", "Output"} <= panels


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_plain_metavars_in_panels(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([name, "--help"]) == 0
    out = capsys.readouterr().out
    for typed in ("<bool>", "<str>", "<int", "<float", "<path>", "<list", "{", "range]", "x>="):
        assert typed not in out, f"'{typed}' in liplt {name} --help"
    assert f"Usage: liplt {name} [OPTIONS] " in out and "MODEL" in out
    for panel in ("Model", "Output"):
        assert f"─ {panel} " in out
    assert "[default:" in out


def test_flags_show_no_type_anywhere(capsys: pytest.CaptureFixture[str]) -> None:
    """Also in ``liplt --help`` and the train command (whose options are not yet grouped)."""
    for call in (["--help"], ["train", "--help"]):
        assert run(call) == 0
        out = capsys.readouterr().out
        assert "<bool>" not in out and "--help" in out


def test_model_source_options_are_one_group() -> None:
    """--input-shape, --mean, --std, --arch: declared once, the same in every command that loads a model."""
    seen = {}
    for name in COMMANDS:
        opts = {p.opts[0]: p for p in _click_command(name).params if p.rich_help_panel == "Model"}
        assert set(opts) == {"--input-shape", "--mean", "--std", "--arch"}, name
        seen[name] = {k: (p.help, p.metavar, p.show_default) for k, p in opts.items()}
    assert all(v == seen["bound"] for v in seen.values())


def test_number_below_its_minimum_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["compare", "examples/mlp_relu.onnx", "--samples", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--samples" in err and "at least 1" in err
