"""Error hierarchy of liplt.

Every error a user can cause is a :class:`LipltError` subclass carrying the process exit code
the CLI uses for it.  Exit codes: 0 success, 1 a failed gate (certified accuracy below
``--min-certified``), 2 a user or input error, 3 an internal error.
"""

from __future__ import annotations

from typing import Mapping

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


class LipltError(Exception):
    """Base class of errors caused by the user's input; the message is one line for stderr.

    A message about a value the caller gave names that value's parameter (the library's keyword,
    e.g. ``input_shape``) as ``{input_shape}``, listed in ``parameters``.  ``str(error)`` shows
    the keyword itself; :meth:`naming` shows other names in its place (the command line shows its
    flags, e.g. ``--input-shape``), so the library never speaks in the command line's words.
    """

    exit_code: int = EXIT_USER_ERROR

    def __init__(self, message: str = "", *, parameters: tuple[str, ...] = ()):
        self.template = message
        self.parameters = tuple(parameters)
        super().__init__(self.naming({}))

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with each parameter called ``names[parameter]`` (default: its own name)."""
        text = self.template
        for parameter in self.parameters:
            text = text.replace("{" + parameter + "}", names.get(parameter, parameter))
        return text

    def renamed(self, names: Mapping[str, str]) -> "LipltError":
        """A copy of this error (same class and attributes) whose message uses :meth:`naming`."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.args = (self.naming(names),)
        return other


class ModelLoadError(LipltError):
    """A model file is missing, malformed, truncated, or of an unknown format."""


class UnsupportedOpError(ModelLoadError):
    """One or more operators of the model cannot be represented in the layer graph."""

    def __init__(self, problems: list[tuple[str, str]], supported: list[str]):
        self.problems = problems
        self.supported = sorted(supported)
        listed = "; ".join(f"node '{name}' (op {op})" for name, op in problems)
        super().__init__(
            f"unsupported operator(s): {listed}. Supported ops: {', '.join(self.supported)}"
        )


class GraphError(LipltError):
    """The layer graph is inconsistent (bad topological order, shape mismatch, NaN weights...)."""


class InputShapeError(LipltError):
    """The input shape is unknown, dynamic, or does not match the data."""


class DataError(LipltError):
    """A dataset is missing, malformed, empty, or has labels the model cannot produce."""


class ArgumentError(LipltError):
    """A value given by the caller is malformed (e.g. an epsilon like ``36/0``, a negative std)."""
