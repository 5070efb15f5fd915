"""The error handler through the installed entry point, in a fresh interpreter.

``liplt``'s console script calls :func:`liplt_cli.cli.app.main`; these tests run that function
(and ``python -m liplt_cli``) as a separate process with the installed Typer, so the exit code
and stderr are what a user sees.  The in-process cases (every exception kind, a Typer without
``Abort``) are in ``tests/test_hostile_cli.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/mlp_relu.onnx"


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LIPLT_DEBUG"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def _main_with_loader_raising(exception: str) -> subprocess.CompletedProcess[str]:
    """``liplt inspect EXAMPLE`` through ``main()`` with the model loader raising ``exception``."""
    script = (
        "import sys, typer\n"
        "import liplt_cli.load\n"
        "def boom(*args, **kwargs):\n"
        f"    raise {exception}\n"
        "liplt_cli.load.load_model = boom\n"
        "from liplt_cli.cli.app import main\n"
        f"sys.argv = ['liplt', 'inspect', {EXAMPLE!r}]\n"
        "main()\n"
    )
    return _python("-c", script)


@pytest.mark.parametrize("exception, code, line", [
    ("RuntimeError('boom')", 3, "internal error: RuntimeError: boom (rerun with LIPLT_DEBUG=1 for the traceback)"),
    ("typer.Abort()", 130, "aborted"),
    ("KeyboardInterrupt()", 130, "interrupted"),
], ids=["internal", "abort", "interrupt"])
def test_main_turns_every_exception_into_one_line_and_its_code(exception, code, line) -> None:
    done = _main_with_loader_raising(exception)
    assert done.returncode == code, done.stderr
    assert done.stderr.strip().splitlines() == [line]
    assert "Traceback" not in done.stderr


def test_certify_refuses_a_plot_suffix_up_front() -> None:
    """The command from the bug report: it crashed after computing, with exit 1 and two tracebacks."""
    done = _python("-m", "liplt_cli", "certify", EXAMPLE, "--data", "mnist", "--limit", "200", "--no-attack",
                   "--plot", "x.txt")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --plot") and ".txt" in line, line
    assert not (ROOT / "x.txt").exists()
