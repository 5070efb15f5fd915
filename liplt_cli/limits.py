"""The memory budget: sizes a file *declares* are checked against it before anything is allocated.

A model or dataset file can declare a tensor of 10¹² values in a few bytes (a shape in a header),
and an input shape typed on the command line can be as large as one likes.  Every loader turns
such declarations into a byte count first and refuses, with a one-line error naming the value
and the budget, any single allocation larger than the budget:

* the budget is ``$LIPLT_MEMORY_BUDGET`` when set (bytes, or with a suffix ``K``/``M``/``G``/``T``,
  powers of 1024, e.g. ``64G``), else half of the machine's physical memory (8 GiB when that is
  unknown);
* a float32 tensor of ``n`` values counts ``4·n`` bytes; shapes are multiplied in exact Python
  integers, so a product that would overflow 64 bits is simply "too large".

The budget is a guard against hostile or mistaken declarations, not an accounting of liplt's
working memory: a model within it can still be too large for a given machine.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

BUDGET_ENV = "LIPLT_MEMORY_BUDGET"
FLOAT32_BYTES = 4
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_FALLBACK = 8 << 30


def _physical_memory() -> int | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def parse_size(text: str) -> int:
    """``"64G"`` → 68719476736 (``K``/``M``/``G``/``T`` are powers of 1024, plain digits are bytes).

    Raises ``ValueError`` when ``text`` is not a positive size.
    """
    t = text.strip().upper()
    for suffix in ("IB", "B"):
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[: -len(suffix)]
            break
    unit = t[-1] if t[-1:] in ("K", "M", "G", "T") else ""
    amount = float(t[: len(t) - len(unit)])
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"not a positive size: {text!r}")
    return int(amount * _UNITS[unit])


def memory_budget() -> int:
    """The largest single allocation (bytes) a declared size may ask for (see module docstring)."""
    from liplt_cli.errors import ArgumentError

    env = os.environ.get(BUDGET_ENV)
    if env:
        try:
            return parse_size(env)
        except ValueError:
            raise ArgumentError(f"${BUDGET_ENV} must be a size like 8G or 500M, got '{env}'") from None
    physical = _physical_memory()
    return physical // 2 if physical else _FALLBACK


def scientific(n: int) -> str:
    """An integer of any size in three significant digits: ``123456789`` → ``"1.23e8"`` (exact below 10⁵)."""
    if abs(n) < 10**5:
        return str(n)
    digits = str(abs(n))
    return f"{'-' if n < 0 else ''}{digits[0]}.{digits[1:3]}e{len(digits) - 1}"


def format_bytes(n: int) -> str:
    """``3221225472`` → ``"3 GiB"`` (three significant digits; any size, no float overflow)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            whole = n // scale
            return f"{scientific(whole)} {unit}" if whole >= 1000 else f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def element_count(shape: Iterable[int]) -> int:
    """The exact number of values of a tensor of ``shape`` (Python integers: no overflow)."""
    return math.prod(int(s) for s in shape)


def over_budget(nbytes: int, what: str) -> str | None:
    """``None`` when ``nbytes`` fits the budget, else the one-line reason (to raise as an error)."""
    budget = memory_budget()
    if nbytes <= budget:
        return None
    return (f"{what} needs {format_bytes(nbytes)}, more than liplt's memory budget of {format_bytes(budget)} "
            f"(set ${BUDGET_ENV} to change it)")


def shape_over_budget(shape: Iterable[int], what: str, itemsize: int = FLOAT32_BYTES) -> str | None:
    """Like :func:`over_budget` for a tensor of ``shape`` (``itemsize`` bytes per value)."""
    dims = [int(s) for s in shape]
    count = element_count(dims)
    return over_budget(count * itemsize, f"{what} of shape {format_shape(dims)} ({scientific(count)} values)")


def format_shape(shape: Iterable[int]) -> str:
    """``[1, 28, 28]``; dimensions of any size in short scientific notation, at most 8 shown."""
    dims = [int(s) for s in shape]
    shown = [scientific(d) for d in dims[:8]] + (["…"] if len(dims) > 8 else [])
    return "[" + ", ".join(shown) + "]"
