"""Progress that moves: the engine reports every chunk of basis vectors and every exact norm, and
the command line shows it (one line per phase and per long step when stderr is not a terminal)."""

from __future__ import annotations

import re

import pytest

from liplt_cli.cli.app import run
from liplt_cli.lipschitz import EngineOptions, compute_bounds
from tests.oracle import mlp

EXAMPLE = "examples/mlp_relu.onnx"


def test_explicit_maps_report_each_chunk_and_each_norm_with_a_total() -> None:
    graph = mlp([24, 16, 12, 10, 3], "relu", seed=3)
    calls: list[tuple[str, int, int]] = []
    compute_bounds(graph, EngineOptions(chunk=4), progress=lambda *a: calls.append(a))
    modes = {label[len("explicit maps ("):].split(")")[0] for label, _, _ in calls if label.startswith("explicit maps")}
    assert "lt" in modes
    for mode in modes:
        reports = [(d, t) for label, d, t in calls if label.startswith(f"explicit maps ({mode})")]
        totals = {t for _, t in reports}
        assert len(totals) == 1, reports
        total = totals.pop()
        # 24 input coordinates in chunks of 4 → at least 6 propagation steps, plus one step per norm
        assert total >= 6 + 1
        done = [d for d, _ in reports]
        assert done == sorted(done) and done[0] == 0 and done[-1] == total
        assert len(set(done)) == total + 1  # every step reported
        assert {label.split(": ")[1] for label, _, _ in calls if label.startswith(f"explicit maps ({mode})")} == {
            "basis vectors", "exact norms"}
    assert any(label.startswith("structural bounds") for label, _, _ in calls)


class _Clock:
    """A monotonic clock that moves 3 s per reading (every step looks long)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 3.0
        return self.now


def test_piped_bound_prints_one_line_per_phase_and_long_step(monkeypatch, capsys) -> None:
    monkeypatch.setattr("liplt_cli.cli.render.time.monotonic", _Clock())
    assert run(["bound", EXAMPLE]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert lines, err
    for ln in lines:
        assert re.match(r"\[ *\d+\.\d s\] .+ \d+/\d+", ln), ln
    phases = {re.sub(r" \d+/\d+.*$", "", ln.split("] ", 1)[1]) for ln in lines}
    assert {"structural bounds (cut)", "explicit maps (lt): basis vectors", "explicit maps (lt): exact norms"} <= phases
    assert any("s left" in ln for ln in lines)  # an ETA once a phase has a rate


def test_quick_piped_run_and_json_print_no_progress(capsys) -> None:
    assert run(["bound", EXAMPLE, "--json"]) == 0
    assert "explicit maps" not in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["constants: explicit maps (lt)", "radii", "attack"])
def test_piped_certify_reports_every_stage(stage, monkeypatch, capsys) -> None:
    monkeypatch.setattr("liplt_cli.cli.render.time.monotonic", _Clock())
    assert run(["certify", EXAMPLE, "--limit", "20", "--eps", "0.01"]) == 0
    err = capsys.readouterr().err
    assert any(ln.split("] ", 1)[-1].startswith(stage) for ln in err.splitlines()), err


def test_piped_compare_reports_inside_each_method(monkeypatch, capsys) -> None:
    monkeypatch.setattr("liplt_cli.cli.render.time.monotonic", _Clock())
    argv = ["compare", EXAMPLE, "--methods", "liplt,lower", "--samples", "8", "--ascent-steps", "2"]
    assert run(argv) == 0
    err = capsys.readouterr().err
    assert f"{EXAMPLE}: liplt: explicit maps (lt)" in err
    assert re.search(rf"{re.escape(EXAMPLE)}: lower: ascent \d+/\d+", err), err


def test_piped_progress_keeps_moving_while_one_step_runs_long() -> None:
    """One exact norm can take a minute: on a pipe a line still comes every ``every_s`` seconds."""
    import io
    import time

    from liplt_cli.cli.render import StageProgress

    stream = io.StringIO()
    with StageProgress(stream=stream, quiet_s=0.0, every_s=0.2) as report:
        report("constants: explicit maps (cut): exact norms", 6, 7)
        time.sleep(1.0)  # the seventh norm, without a report
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("constants: explicit maps (cut): exact norms 6/7"), lines
    running = [ln for ln in lines if "exact norms 6/7, step running (no report for" in ln]
    assert len(running) >= 2, lines
    with StageProgress(stream=(quiet := io.StringIO()), quiet_s=0.0, every_s=0.2) as report:
        report("radii", 5, 5)  # finished: nothing more to say
        time.sleep(0.6)
    (line,) = quiet.getvalue().splitlines()
    assert line.endswith("] radii 5/5"), line
