"""Perturbation radii ε as people write them: ``1.58``, ``36/255``, or a list ``0.5,1.0,36/255``.

An :class:`Epsilon` keeps the value *and* the text it was given as, so a result can print
``36/255`` where the user typed it instead of ``0.1412``.  The library's ``certify`` accepts
the same forms as the command line (:func:`parse_epsilons`).  No heavy imports: the command
line's ``--help`` uses this module.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Union

from liplt_cli.errors import ArgumentError


@dataclass(frozen=True)
class Epsilon:
    """One radius ε ≥ 0: its ``value`` and the ``text`` it was written as (``"36/255"``)."""

    value: float
    text: str

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return self.text


EpsilonLike = Union[str, float, int, Epsilon]


def _number_text(value: float) -> str:
    """A label for a number given as a number: its shortest exact text (``1.58``, ``0.5``) when
    that is short, else four significant digits (``36/255`` passed as a float shows as ``0.1412``)."""
    value = float(value)
    if value == int(value):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 8 else f"{value:.4g}"


def _parse_one(item: str) -> Epsilon:
    text = item.strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            d = float(den)
            if d == 0:
                raise ArgumentError(f"ε '{text}' divides by zero")
            value = float(num) / d
        else:
            value = float(text)
    except ValueError:
        raise ArgumentError(f"ε '{text}' is not a number or a fraction like 36/255") from None
    return _checked(value, text)


def _checked(value: float, text: str) -> Epsilon:
    if not math.isfinite(value) or value < 0:
        raise ArgumentError(f"ε '{text}' must be a finite non-negative number")
    return Epsilon(float(value), text)


def parse_epsilons(spec: EpsilonLike | Iterable[EpsilonLike]) -> tuple[Epsilon, ...]:
    """ε values from ``"36/255"``, ``"0.5,1.0,1.58"``, a number, an :class:`Epsilon` or a list of these.

    Raises :class:`~liplt_cli.errors.ArgumentError` on ``36/0``, ``abc``, negative or
    non-finite values, and when no value is given.
    """
    items = [spec] if isinstance(spec, (str, numbers.Real, Epsilon)) else list(spec)
    values: list[Epsilon] = []
    for item in items:
        if isinstance(item, Epsilon):
            values.append(_checked(item.value, item.text))
        elif isinstance(item, str):
            values.extend(_parse_one(part) for part in item.split(",") if part.strip())
        elif isinstance(item, numbers.Real) and not isinstance(item, bool):
            value = float(item)
            values.append(_checked(value, _number_text(value) if math.isfinite(value) else str(value)))
        else:
            raise ArgumentError(f"ε must be a number or a text like 36/255, got {item!r}")
    if not values:
        raise ArgumentError("no ε value given")
    return tuple(values)
