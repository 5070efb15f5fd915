"""Shared output sinks: Rich consoles (stdout for results, stderr for progress and notes) and JSON."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def stdout_console() -> Console:
    """Console for results; when stdout is a pipe or file, wide enough for the tables."""
    console = Console(file=sys.stdout, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, soft_wrap=False, width=max(console.width, 160))
    return console


def stderr_console() -> Console:
    return Console(file=sys.stderr, soft_wrap=False)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def print_json(data: dict[str, Any]) -> None:
    """Write one JSON document to stdout and nothing else."""
    sys.stdout.write(json.dumps(_jsonable(data), indent=2) + "\n")
    sys.stdout.flush()


def progress(enabled: bool = True) -> Progress:
    """A progress bar on stderr (hidden with ``--json`` or when stderr is not a terminal)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
        disable=not enabled,
    )


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"
