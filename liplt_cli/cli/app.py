"""The ``liplt`` Typer application and the one place where errors become exit codes.

Usage::

    liplt inspect MODEL            # what the model became (layer graph)
    liplt bound MODEL --norm 2     # naive and LipLT Lipschitz upper bounds
    liplt certify [MODEL] --data mnist --eps 1.58 --min-certified 0.6
    liplt train --dataset mnist    # CRM training
    liplt compare MODEL [MODEL...] # methods side by side

Exit codes: 0 success, 1 failed gate (certified accuracy below ``--min-certified``),
2 user/input error, 3 internal error (rerun with ``LIPLT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperCommand

from liplt_cli.cli.usage import PlainCommand, PlainGroup
from liplt_cli.errors import EXIT_GATE_FAILED, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, LipltError

app = typer.Typer(
    name="liplt",
    cls=PlainGroup,
    help="Guaranteed Lipschitz bounds (naive, LipLT), certified radii and CRM training for classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from liplt_cli import __version__

        print(f"liplt {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Guaranteed Lipschitz bounds (naive, LipLT), certified radii and CRM training for classifiers."""


def _register() -> None:
    from liplt_cli.cli import bound, certify, compare, inspect, train

    for module in (inspect, bound, certify, train, compare):
        module.register(app)
    for command in app.registered_commands:  # every command prints the same plain help
        if command.cls in (None, TyperCommand):
            command.cls = PlainCommand


_register()


def _exception_classes(name: str) -> tuple[type, ...]:
    """Every class called ``name`` that the installed Typer/Click may raise.

    Typer up to 0.15 raises Click's own classes (``click.exceptions``); later releases vendor
    Click as ``typer._click`` and keep ``Abort``/``Exit`` in ``typer.exceptions``.  Looking in
    all of these places (and tolerating any of them missing) keeps the error handler working
    with either layout.
    """
    import importlib

    found: list[type] = []
    for module_name in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def one_line(text: object) -> str:
    """``text`` as one line: line breaks and runs of spaces become single spaces."""
    return " ".join(str(text).split())


def _usage_hint(exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    try:
        return f" (see '{ctx.command_path} --help')" if ctx is not None else " (see 'liplt --help')"
    except Exception:  # noqa: BLE001 - a hint is never worth a crash
        return ""


def _report_unexpected(exc: Exception) -> int:
    """Turn an exception that is not a :class:`LipltError` into an exit code and one stderr line."""
    no_args = _exception_classes("NoArgsIsHelpError")
    if no_args and isinstance(exc, no_args):  # ``liplt`` alone: the help text, exit 2
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USER_ERROR))
    usage = _exception_classes("UsageError")
    if usage and isinstance(exc, usage):  # unknown option, missing value, bad choice, bad number...
        print(f"error: {one_line(exc.format_message())}{_usage_hint(exc)}", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_USER_ERROR
    click_error = _exception_classes("ClickException")
    if click_error and isinstance(exc, click_error):
        print(f"error: {one_line(exc.format_message())}", file=sys.stderr)  # type: ignore[attr-defined]
        code = getattr(exc, "exit_code", EXIT_USER_ERROR)
        return code if isinstance(code, int) and code not in (0, EXIT_GATE_FAILED) else EXIT_USER_ERROR
    abort = _exception_classes("Abort")
    if abort and isinstance(exc, abort):
        print("aborted", file=sys.stderr)
        return 130
    exit_ = _exception_classes("Exit")
    if exit_ and isinstance(exc, exit_):
        code = getattr(exc, "exit_code", 0)
        return code if isinstance(code, int) else EXIT_INTERNAL_ERROR
    if os.environ.get("LIPLT_DEBUG"):
        raise exc
    if isinstance(exc, MemoryError):
        detail = "out of memory"
    else:
        detail = f"{type(exc).__name__}: {one_line(exc)}"
        if len(detail) > 500:
            detail = detail[:500] + "…"
    print(f"internal error: {detail} (rerun with LIPLT_DEBUG=1 for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (errors become one stderr line).

    0 success, 1 only for a failed ``--min-certified`` gate, 2 a user or input error (also
    Click's usage errors), 3 an internal error, 130 an interrupt.
    """
    try:
        result = app(args=argv, standalone_mode=False, prog_name="liplt")
        if result == 130:  # newer Typer turns Ctrl-C into a silent exit code 130 (older releases raise it)
            print("interrupted", file=sys.stderr)
        return result if isinstance(result, int) else 0
    except LipltError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place where every error becomes an exit code
        try:
            return _report_unexpected(exc)
        except Exception as failure:  # noqa: BLE001 - the handler itself must never escape
            if os.environ.get("LIPLT_DEBUG"):
                raise
            print(
                f"internal error: {type(exc).__name__} (and {type(failure).__name__} while reporting it; "
                "rerun with LIPLT_DEBUG=1 for the traceback)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL_ERROR


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
