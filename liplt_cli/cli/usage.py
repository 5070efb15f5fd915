"""How ``--help`` shows parameters: plain metavars, in the panels the commands declare.

Typer's own rendering labels a flag ``<bool>``, an argument ``{model}`` in the usage line and
``<path>`` / ``<list[Path]>`` beside its name.  The two command classes here keep Typer's layout
and change only that:

* a flag (``--json``, ``--fast``, ``--help``) shows no type at all;
* an argument with a ``metavar`` is shown by its metavar alone: ``MODEL`` when required,
  ``[MODEL]`` when optional, in the usage line and in its panel;
* ``--help`` joins the last panel when the command groups its options in panels.

Every value option declares its own ``metavar`` where it is declared (``cli/options.py`` and the
command modules).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup


class PlainArgument(TyperArgument):
    """A positional argument shown by its metavar only (no ``<path>`` type, no braces)."""

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: D102 - Typer's hook
        return None if self.metavar is not None else super().display_type_rich(ctx)

    def _usage_display_name(self) -> str:
        if self.metavar is None:
            return super()._usage_display_name()
        return self.metavar if self.required else f"[{self.metavar}]"


def _plain(param: Any) -> Any:
    """``param`` as shown in plain help: flags lose their type label, arguments become :class:`PlainArgument`."""
    if type(param) is TyperArgument and param.metavar is not None:
        plain = PlainArgument.__new__(PlainArgument)
        plain.__dict__.update(param.__dict__)
        return plain
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


class _PlainHelp:
    """The shared part of :class:`PlainCommand` and :class:`PlainGroup`."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = [_plain(p) for p in self.params]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _plain(option)
            panels = [getattr(p, "rich_help_panel", None) for p in self.params if p.param_type_name == "option"]
            if panels and all(panels):
                option.rich_help_panel = panels[-1]
        return option


class PlainCommand(_PlainHelp, TyperCommand):
    """A Typer command whose help shows plain metavars (module docstring)."""


class PlainGroup(_PlainHelp, TyperGroup):
    """The ``liplt`` group, with the same plain help as its commands."""
