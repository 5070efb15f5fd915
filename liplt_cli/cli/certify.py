"""`liplt certify` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("certify", help="(not available yet)")
    def _cmd() -> None:
        raise typer.Exit(2)
