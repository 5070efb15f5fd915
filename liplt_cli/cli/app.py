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

from liplt_cli.errors import EXIT_INTERNAL_ERROR, LipltError

app = typer.Typer(
    name="liplt",
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


_register()


def _click_exceptions():
    """Click's exception module (recent Typer releases vendor Click as ``typer._click``)."""
    try:
        from click import exceptions
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from typer._click import exceptions  # type: ignore[no-redef]
    return exceptions


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (errors become one stderr line)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="liplt")
        return result if isinstance(result, int) else 0
    except LipltError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        click_exceptions = _click_exceptions()
        if isinstance(exc, click_exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click_exceptions.Abort):
            print("aborted", file=sys.stderr)
            return 130
        if isinstance(exc, click_exceptions.Exit):
            return exc.exit_code
        if os.environ.get("LIPLT_DEBUG"):
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with LIPLT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
