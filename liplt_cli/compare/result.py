"""Result objects of ``liplt compare``: one row per (model, method), the Table 2 columns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from liplt_cli.lipschitz.result import norm_name
from liplt_cli.notes import warnings_in

SKIPPED = "skipped"


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class MethodRow:
    """One method on one model: the paper's Table 2 columns plus guarantee and time.

    ``pairwise_mean`` = mean over pairs i < j of L_ij; ``sum_per_class_mean`` = mean of
    L_i + L_j; ``sqrt2_global`` = √2·L (the ℓ2 proxy; ``None`` for other norms).  For the
    ``lower`` method the numbers are lower bounds of the same quantities.  ``gap`` = this
    method's mean L_ij divided by the lower bound's (≥ 1 for a sound method), when both exist.
    """

    method: str
    guarantee: str
    seconds: float
    global_: float | None = None
    pairwise_mean: float | None = None
    sum_per_class_mean: float | None = None
    sqrt2_global: float | None = None
    gap: float | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.guarantee == SKIPPED

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "guarantee": self.guarantee,
            "skipped": self.skipped,
            "reason": self.reason,
            "global": _finite(self.global_),
            "pairwise_mean": _finite(self.pairwise_mean),
            "sum_per_class_mean": _finite(self.sum_per_class_mean),
            "sqrt2_global": _finite(self.sqrt2_global),
            "gap_to_lower": _finite(self.gap),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ModelComparison:
    """All requested methods on one model."""

    model: str
    num_classes: int
    rows: tuple[MethodRow, ...]
    notes: tuple[str, ...] = ()

    def row(self, method: str) -> MethodRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "num_classes": self.num_classes,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
            "warnings": warnings_in(self.notes),
        }


@dataclass(frozen=True)
class ComparisonResult:
    """``liplt compare`` on several models with the same methods and norm.

    ``notes`` are about the whole comparison (each model has its own); ``warnings`` lists every
    warning, the models' ones prefixed with the model.
    """

    norm: float
    device: str
    methods: tuple[str, ...]
    models: tuple[ModelComparison, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        own = [str(w) for w in warnings_in(self.notes)]
        return own + [f"{m.model}: {w}" for m in self.models for w in warnings_in(m.notes)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": norm_name(self.norm),
            "device": self.device,
            "methods": list(self.methods),
            "settings": dict(self.settings),
            "models": [m.to_dict() for m in self.models],
            "notes": list(self.notes),
            "warnings": self.warnings,
        }
