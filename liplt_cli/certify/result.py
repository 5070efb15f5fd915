"""The result of a certification run (a frozen record with one ``to_dict``) and the CI gate."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from liplt_cli.lipschitz.result import Guarantee, norm_name
from liplt_cli.notes import warnings_in


@dataclass(frozen=True)
class Gate:
    """``--min-certified X``: passes when the certified accuracy at *every* listed ε is ≥ X.

    Certified accuracy never increases with ε, so this is the check at the largest ε listed.
    """

    threshold: float
    eps: float
    certified_accuracy: float
    eps_text: str = ""

    @property
    def passed(self) -> bool:
        return self.certified_accuracy >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"min_certified": self.threshold, "eps": self.eps, "eps_text": self.eps_text or f"{self.eps:g}",
                "certified_accuracy": self.certified_accuracy, "passed": self.passed, "rule": "certified accuracy at every listed eps (i.e. the largest) >= min_certified"}


@dataclass(frozen=True, eq=False)
class CertifyResult:
    """Clean, certified (eq. 4) and PGD accuracy of one model on one dataset at each ε.

    Per-sample arrays (CPU tensors, length N): ``index`` (position in the source), ``label``,
    ``prediction``, ``radius`` (0 when misclassified), ``pgd_robust`` (len(eps) × N, or None
    with ``--no-attack``).  ``guarantee`` labels the pairwise constants and so the radii: with
    ``estimate`` the radii are *not* certificates.  ``eps_text`` holds each ε as it was given
    (``36/255``), for display; ``eps`` holds the values.
    """

    model: str
    data: dict[str, Any]
    norm: float
    eps: tuple[float, ...]
    index: torch.Tensor
    label: torch.Tensor
    prediction: torch.Tensor
    radius: torch.Tensor
    pgd_robust: torch.Tensor | None
    constants_method: str
    guarantee: Guarantee
    pairwise_mean: float
    constants_notes: tuple[str, ...] = ()
    attack: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    notes: tuple[str, ...] = ()
    gate: Gate | None = None
    eps_text: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.eps_text) != len(self.eps):
            object.__setattr__(self, "eps_text", tuple(f"{e:g}" for e in self.eps))

    # ---------------------------------------------------------------- aggregates
    @property
    def samples(self) -> int:
        return int(self.label.numel())

    @property
    def sound(self) -> bool:
        return self.guarantee.sound

    @property
    def clean_accuracy(self) -> float:
        return float((self.prediction == self.label).sum()) / max(self.samples, 1)

    @property
    def certified_accuracy(self) -> list[float]:
        """Fraction with R(x) > ε at each ε."""
        return [float((self.radius > e).sum()) / max(self.samples, 1) for e in self.eps]

    @property
    def pgd_accuracy(self) -> list[float] | None:
        if self.pgd_robust is None:
            return None
        return [float(r.sum()) / max(self.samples, 1) for r in self.pgd_robust]

    @property
    def violations(self) -> list[int] | None:
        """Samples certified at ε that PGD nevertheless broke (0 whenever the constants are sound)."""
        if self.pgd_robust is None:
            return None
        return [int(((self.radius > e) & ~r).sum()) for e, r in zip(self.eps, self.pgd_robust)]

    @property
    def mean_radius(self) -> float:
        return float(self.radius.mean()) if self.samples else 0.0

    @property
    def median_radius(self) -> float:
        """The lower median (an actual sample's radius) over all samples, misclassified ones at 0."""
        return float(self.radius.median()) if self.samples else 0.0

    def with_gate(self, threshold: float) -> "CertifyResult":
        """This result with the ``--min-certified`` gate evaluated (see :class:`Gate`)."""
        worst = max(range(len(self.eps)), key=lambda i: (self.eps[i], -self.certified_accuracy[i]))
        acc = min(self.certified_accuracy)
        return replace(self, gate=Gate(threshold=threshold, eps=self.eps[worst], certified_accuracy=acc,
                                       eps_text=self.eps_text[worst]))

    # ---------------------------------------------------------------- outputs
    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``liplt certify --json`` (documented in the README)."""
        finite = self.radius[torch.isfinite(self.radius)]
        return {
            "model": self.model,
            "data": dict(self.data),
            "norm": norm_name(self.norm),
            "eps": list(self.eps),
            "eps_text": list(self.eps_text),
            "samples": self.samples,
            "clean_accuracy": self.clean_accuracy,
            "certified_accuracy": self.certified_accuracy,
            "pgd_accuracy": self.pgd_accuracy,
            "violations": self.violations,
            "radius": {"mean": self.mean_radius, "median": self.median_radius,
                       "max_finite": float(finite.max()) if finite.numel() else None},
            "constants": {"method": self.constants_method, "guarantee": self.guarantee.value, "sound": self.sound,
                          "pairwise_mean": self.pairwise_mean, "notes": list(self.constants_notes)},
            "certificate": ("sound: every radius is a guaranteed lower bound on the distance to the decision boundary"
                            if self.sound else "estimate: radii use estimated constants and are NOT certificates"),
            "attack": self.attack,
            "timings": dict(self.timings),
            "device": self.device,
            "notes": list(self.notes),
            "warnings": warnings_in(self.notes),
            "gate": self.gate.to_dict() if self.gate else None,
        }

    def write_per_sample(self, path: str | Path) -> None:
        """CSV with columns index, label, prediction, radius (+ one ``pgd_robust@ε`` column per ε)."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            extra = [f"pgd_robust@{e:g}" for e in self.eps] if self.pgd_robust is not None else []
            w.writerow(["index", "label", "prediction", "radius", *extra])
            for n in range(self.samples):
                r = float(self.radius[n])
                row = [int(self.index[n]), int(self.label[n]), int(self.prediction[n]),
                       "inf" if math.isinf(r) else repr(r)]
                if self.pgd_robust is not None:
                    row += [int(self.pgd_robust[i, n]) for i in range(len(self.eps))]
                w.writerow(row)
