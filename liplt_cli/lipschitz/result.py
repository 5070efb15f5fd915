"""Result objects of the Lipschitz engines, and the guarantee labels every number carries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from liplt_cli.notes import warnings_in


class Guarantee(str, Enum):
    """How much a reported number can be trusted.

    * ``exact`` -- computed exactly (dense SVD / eigenvalue in float64 or a closed form), up to
      floating-point round-off, which is covered by a relative safety margin;
    * ``upper bound`` -- provably at least the true value (products of exact norms, FFT bounds of
      convolutions, absolute-value propagation), i.e. sound but possibly loose;
    * ``estimate`` -- power iteration, which converges from *below*: not a guarantee.
    """

    EXACT = "exact"
    UPPER_BOUND = "upper bound"
    ESTIMATE = "estimate"

    def __str__(self) -> str:  # the label, as every table and the JSON show it
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @staticmethod
    def weakest(labels: list["Guarantee"]) -> "Guarantee":
        """The label of a quantity composed of terms with ``labels`` (sums/products of them)."""
        if Guarantee.ESTIMATE in labels:
            return Guarantee.ESTIMATE
        if Guarantee.UPPER_BOUND in labels:
            return Guarantee.UPPER_BOUND
        return Guarantee.EXACT

    @property
    def sound(self) -> bool:
        return self is not Guarantee.ESTIMATE


def norm_name(p: float) -> str:
    return {2.0: "2", 1.0: "1"}.get(p, "inf" if math.isinf(p) else str(p))


@dataclass(frozen=True)
class MethodBound:
    """Lipschitz bounds of one method (``naive`` or ``liplt``) on one model, input norm p.

    ``global_`` bounds the logit map x ↦ z(x) (from ℓp to ℓq, q = p); ``per_class[i]`` bounds
    x ↦ z_i(x); ``pairwise[i][j]`` bounds x ↦ z_i(x) − z_j(x) (eq. 4 uses it), with zeros on the
    diagonal.  ``guarantee`` is the weakest label of the terms that went into the numbers;
    ``term_counts`` says how many norm terms were exact / upper bounds / estimates.
    """

    method: str
    global_: float
    per_class: list[float]
    pairwise: list[list[float]]
    guarantee: Guarantee
    term_counts: dict[str, int]
    seconds: float
    iterations: int | None = None
    last_relative_change: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.per_class)

    def _pairs(self) -> list[tuple[int, int]]:
        k = self.num_classes
        return [(i, j) for i in range(k) for j in range(i + 1, k)]

    @property
    def pairwise_mean(self) -> float:
        pairs = self._pairs()
        return sum(self.pairwise[i][j] for i, j in pairs) / max(len(pairs), 1)

    @property
    def pairwise_max(self) -> float:
        return max((self.pairwise[i][j] for i, j in self._pairs()), default=0.0)

    @property
    def sum_per_class_mean(self) -> float:
        """Mean over pairs of L_i + L_j (the GloRo-style proxy for L_ij)."""
        pairs = self._pairs()
        return sum(self.per_class[i] + self.per_class[j] for i, j in pairs) / max(len(pairs), 1)

    @property
    def sqrt2_global(self) -> float:
        """√2·L, the proxy for L_ij used by Huang et al. (valid in ℓ2)."""
        return math.sqrt(2.0) * self.global_

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "global": self.global_,
            "per_class": list(self.per_class),
            "pairwise": [list(r) for r in self.pairwise],
            "pairwise_mean": self.pairwise_mean,
            "pairwise_max": self.pairwise_max,
            "sum_per_class_mean": self.sum_per_class_mean,
            "sqrt2_global": self.sqrt2_global,
            "guarantee": self.guarantee.value,
            "term_counts": dict(self.term_counts),
            "seconds": self.seconds,
            "iterations": self.iterations,
            "last_relative_change": self.last_relative_change,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class BoundResult:
    """Bounds of several methods on one model.

    ``notes``: what the caller should know about these numbers (e.g. the loader's warning that
    a final Softmax was stripped, so the bounds are about the logits); ``warnings`` lists the
    notes that are warnings (:mod:`liplt_cli.notes`).
    """

    norm: float
    methods: dict[str, MethodBound]
    device: str
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "norm": norm_name(self.norm),
            "device": self.device,
            "settings": dict(self.settings),
            "methods": {name: m.to_dict() for name, m in self.methods.items()},
            "notes": list(self.notes),
            "warnings": warnings_in(self.notes),
        }
