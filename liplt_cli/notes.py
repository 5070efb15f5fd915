"""Notes the library attaches to its results, and the ones that are warnings.

The library never prints.  What it did or noticed goes into the ``notes`` of a graph or result
as plain strings ("ONNX opset 11 converted to 17").  A note the user should act on, because
the numbers may not mean what they think (a final Softmax stripped, accuracy at chance level,
an ε larger than the data's range, a setting that was ignored), is a :class:`WarningNote`: still a
``str`` wherever notes go (JSON, ``to_dict``), and the command line prints it as a
``warning:`` line on stderr.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["WarningNote", "warning", "warnings_in"]


class WarningNote(str):
    """A note that is a warning (see the module docstring)."""

    __slots__ = ()


def warning(text: str) -> WarningNote:
    """``text`` as a warning note."""
    return WarningNote(text)


def warnings_in(notes: Iterable[str]) -> list[WarningNote]:
    """The warnings among ``notes``, in order."""
    return [n for n in notes if isinstance(n, WarningNote)]
