"""Shared output sinks: Rich consoles (stdout for results, stderr for progress and notes) and JSON."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterable, TextIO

from liplt_cli.display import significant

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def stdout_console() -> Console:
    """Console for results; when stdout is a pipe or file, wide enough for the tables."""
    from rich.console import Console

    console = Console(file=sys.stdout, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, soft_wrap=False, width=max(console.width, 160))
    return console


def stderr_console() -> Console:
    from rich.console import Console

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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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
    """``value`` with ``digits`` significant digits (:func:`liplt_cli.display.significant`), ``—`` for None."""
    if value is None:
        return "—"
    return significant(value, digits)


class StageProgress:
    """Shows the library's ``progress(label, done, total)`` reports while a command runs.

    On a terminal: one Rich bar per stage (the label's part before the first ``": "``, e.g.
    ``constants``), advancing with an ETA and restarting with each phase.  On a pipe or file:
    lines on stderr, ``[  12.3 s] constants: explicit maps (lt): exact norms 3/10, about 40 s
    left``: one when a phase starts, one after each step that took ``long_step_s`` seconds or
    more, and one every ``every_s`` seconds in between, also while one step runs on without a
    report (``…, step running (no report for 20 s)``, from a background thread: one long exact
    norm does not look hung); nothing during the first ``quiet_s`` seconds (a quick run prints
    nothing).
    Disabled (``--json``): nothing.  Use as a context manager; the object itself is the callback.
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, quiet_s: float = 0.5,
                 long_step_s: float = 2.0, every_s: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.quiet_s, self.long_step_s, self.every_s = quiet_s, long_step_s, every_s
        self.start = self.last_update = time.monotonic()
        self.bar: Progress | None = None
        self.tasks: dict[str, tuple[Any, int, int]] = {}  # stage → (bar task, done, total)
        self.label: str | None = None
        self.label_shown = False
        self.last_line = self.start
        self.rate: dict[str, tuple[float, int]] = {}  # stage → (time, done) of its first report
        self.current: tuple[str, int, int] | None = None  # the last report (pipe mode)
        self.reports = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.heartbeat: threading.Thread | None = None

    def __enter__(self) -> "StageProgress":
        if self.enabled and self.stream.isatty():
            self.bar = progress(enabled=True)
            self.bar.__enter__()
        elif self.enabled:
            self.heartbeat = threading.Thread(target=self._beat, name="liplt-progress", daemon=True)
            self.heartbeat.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop.set()
        if self.heartbeat is not None:
            self.heartbeat.join()
        if self.bar is not None:
            self.bar.__exit__(kind, exc, tb)

    def _beat(self) -> None:
        """Pipe mode: a line every ``every_s`` seconds while a step runs on without a report."""
        seen, silent = -1, 0
        while not self.stop.wait(self.every_s):
            with self.lock:
                if self.reports != seen:  # something was reported since the last beat
                    seen, silent = self.reports, 0
                    continue
                silent += 1
                if self.current is None or not self.label_shown:
                    continue
                label, done, total = self.current
                if total and done >= total:
                    continue
                now = time.monotonic()
                print(f"[{now - self.start:6.1f} s] {label} {done}/{total}, step running "
                      f"(no report for {silent * self.every_s:.0f} s)", file=self.stream, flush=True)
                self.last_line = now

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        stage = label.split(": ", 1)[0]
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = (self.bar.add_task(label, total=total, completed=done), done, total)
                return
            task, before, before_total = self.tasks[stage]
            if done < before or total != before_total:
                self.bar.reset(task, total=total, completed=done, description=label)  # a new phase: a new ETA
            else:
                self.bar.update(task, completed=done, description=label)
            self.tasks[stage] = (task, done, total)
            return
        with self.lock:
            self._report(label, done, total)

    def _report(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        self.current = (label, done, total)
        self.reports += 1
        first = self.rate.get(label)
        if first is None or done < first[1]:
            self.rate[label] = first = (now, done)
        if label != self.label:
            self.label, self.label_shown = label, False
        due = (not self.label_shown or now - self.last_line >= self.every_s
               or now - self.last_update >= self.long_step_s)
        self.last_update = now
        if due and now - self.start >= self.quiet_s:
            self._line(label, done, total, now, first)

    def _line(self, label: str, done: int, total: int, now: float, first: tuple[float, int]) -> None:
        text = f"[{now - self.start:6.1f} s] {label} {done}/{total}"
        since, done_then = first
        if total and done > done_then and done < total:
            left = (now - since) / (done - done_then) * (total - done)
            text += f", about {left:.0f} s left"
        print(text, file=self.stream, flush=True)
        self.label_shown, self.last_line = True, now


def warn(text: str) -> None:
    """One ``warning: …`` line on stderr."""
    print(f"warning: {' '.join(str(text).split())}", file=sys.stderr, flush=True)


def print_warnings(notes: Iterable[str]) -> None:
    """Each warning among ``notes`` (:mod:`liplt_cli.notes`) as one ``warning: …`` line on stderr."""
    from liplt_cli.notes import warnings_in

    for note in warnings_in(notes):
        warn(note)


def other_notes(notes: Iterable[str]) -> list[str]:
    """The notes that are not warnings (printed as ``note: …`` with the results)."""
    from liplt_cli.notes import WarningNote

    return [n for n in notes if not isinstance(n, WarningNote)]


def add_warnings(result: Any, texts: Iterable[str]) -> Any:
    """``result`` (a frozen dataclass with ``notes``) with the command line's own warnings added."""
    from dataclasses import replace

    from liplt_cli.notes import warning

    added = tuple(warning(t) for t in texts)
    return replace(result, notes=tuple(result.notes) + added) if added else result
