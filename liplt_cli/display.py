"""Numbers as tables and plots show them: a fixed number of significant digits, evenly.

No heavy imports (the command line's ``--help`` path may use it).
"""

from __future__ import annotations

import math


def significant(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros kept so a column reads evenly.

    With 4 digits: ``523.04`` → ``523.0`` (not ``523`` beside ``1.517``), ``0.5`` → ``0.5000``,
    ``12345.6`` → ``12346`` (integers are never put in scientific notation), ``0`` → ``0``,
    values below 1e-4 in scientific notation (``1.234e-05``), ``inf``/``nan`` as such.
    """
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(float(f"{value:.{digits}g}")) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    return f"{value:#.{digits}g}"
