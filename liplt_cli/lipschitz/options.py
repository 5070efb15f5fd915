"""The settings of the Lipschitz engine, declared once: :class:`EngineOptions`."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

NORM_CHOICES = "2, inf or 1"

DENSE_EXPLICIT_CAP = 4e10
"""Largest cost (``min(d_k, d_s)² · max(d_k, d_s)``) for which a map is made explicit as a dense
matrix; above it, Gram matrices built by operator products cost less (see :mod:`.gram`)."""

GRAM_BUDGET_FACTOR = 6.0
"""The ℓ2 terms made exact by Gram matrices may cost, in total, this many times ``explicit_budget``."""

CUDA_SPEEDUP = 1000.0
"""On a CUDA device the Gram budget is this many times larger (float64 work per second of a
data-centre GPU against the 2-core CPU the defaults were set on) and Gram matrices may be twice
as wide (memory)."""


def parse_norm(norm: object) -> float:
    """The input norm p as a float ∈ {2.0, inf, 1.0}, from what the CLI accepts or a number.

    Accepted: ``2``, ``"2"``, ``"inf"``, ``float("inf")``, ``1``, ``"1"`` (also ``2.0``,
    ``"Inf"``, ``"infinity"``, ``"∞"``).  Anything else is a :class:`ValueError` naming the value.
    """
    value: float | None = None
    if isinstance(norm, str):
        text = norm.strip().lower()
        if text in ("inf", "infinity", "∞"):
            value = math.inf
        else:
            try:
                value = float(text)
            except ValueError:
                value = None
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        value = float(norm)
    if value is None or not (value in (1.0, 2.0) or math.isinf(value) and value > 0):
        raise ValueError(f"unsupported norm {norm!r}: the input norm must be {NORM_CHOICES}")
    return value


@dataclass(frozen=True)
class EngineOptions:
    """Settings of :func:`~liplt_cli.lipschitz.compute_bounds` (the only settings it takes).

    ``norm``: input norm p ∈ {2, ∞, 1} (given as anything :func:`parse_norm` accepts, stored as
    a float).  ``fast``: power-iteration *estimates* of the inner ℓ2 terms, ``iterations`` per
    norm, computed in float32 (default: sound terms in float64).  ``explicit_budget``: largest
    ``min(d_k, d_s)² · max(d_k, d_s)`` (≈ flops of the Gram product) for which a map is made
    explicit and its norm taken exactly; ``explicit_max_side``: largest narrow side made
    explicit; ``chunk``: basis vectors per propagation batch (small batches keep float64
    convolutions in cache; the numbers do not depend on it beyond round-off); ``seed``: of the power iteration's
    starting vectors.

    What is not a setting stays an argument of ``compute_bounds``: which ``methods`` to compute
    (a request), the ``device`` (where, not how), a ``progress`` callback and the ``model``
    label of the result.
    """

    norm: float = 2.0
    fast: bool = False
    iterations: int = 100
    explicit_budget: float = 4e10
    explicit_max_side: int = 4096
    chunk: int = 32
    seed: int = 0
    gram_budget: float | None = None
    gram_max_side: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))

    @property
    def dense_budget(self) -> float:
        """Largest dense cost of a map made explicit as a matrix."""
        return min(self.explicit_budget, DENSE_EXPLICIT_CAP)

    def gram_limits(self, device_type: str) -> tuple[float, int]:
        """(total multiply-adds, widest side) of the Gram matrices on a device of this type."""
        cuda = device_type == "cuda"
        total = self.gram_budget
        if total is None:
            total = GRAM_BUDGET_FACTOR * self.explicit_budget * (CUDA_SPEEDUP if cuda else 1.0)
        side = self.gram_max_side
        if side is None:
            side = 2 * self.explicit_max_side * (2 if cuda else 1)
        return total, side
