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
class LocalCertification:
    """Local radii of a certification run (``liplt certify --local``), CPU tensors of length N.

    ``radius``: the local radius (never below the global one; 0 when misclassified);
    ``certified``: (len(eps), N) certified at each listed ε (checked exactly, not through the
    search tolerance); ``evaluations``: certificate evaluations per sample; ``guarantee``: label
    of the local constants; ``settings``: domain, tolerance, what the analysis used.
    """

    radius: torch.Tensor
    certified: torch.Tensor
    evaluations: torch.Tensor
    guarantee: Guarantee
    settings: dict[str, Any]
    seconds: float

    @staticmethod
    def of(radii, settings, eps) -> "LocalCertification":  # noqa: ANN001
        """From :class:`~liplt_cli.local.LocalRadii` and :class:`~liplt_cli.local.LocalSettings`."""
        return LocalCertification(
            radius=radii.radius, certified=torch.stack([radii.certified(e) for e in eps]),
            evaluations=radii.evaluations, guarantee=radii.guarantee, settings=settings.to_dict(),
            seconds=radii.seconds)

    @property
    def certified_accuracy(self) -> list[float]:
        n = max(int(self.radius.numel()), 1)
        return [float(c.sum()) / n for c in self.certified]

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(int(self.radius.numel()), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"certified_accuracy": self.certified_accuracy, "guarantee": self.guarantee.value,
                "radius": {"mean": float(self.radius.mean()) if self.radius.numel() else 0.0,
                           "median": float(self.radius.median()) if self.radius.numel() else 0.0},
                "evaluations_mean": float(self.evaluations.float().mean()) if self.evaluations.numel() else 0.0,
                "seconds": self.seconds, "seconds_per_sample": self.seconds_per_sample, **self.settings}


@dataclass(frozen=True, eq=False)
class CertifyResult:
    """Clean, certified (eq. 4) and PGD accuracy of one model on one dataset at each ε.

    Per-sample arrays (CPU tensors, length N): ``index`` (position in the source), ``label``,
    ``prediction``, ``radius`` (0 when misclassified), ``pgd_robust`` (len(eps) × N, or None
    with ``--no-attack``).  ``guarantee`` labels the pairwise constants and so the radii: with
    ``estimate`` the radii are *not* certificates.  ``eps_text`` holds each ε as it was given
    (``36/255``), for display; ``eps`` holds the values.  ``local``: the local radii
    (``--local``) or ``None``; with them the gate uses the local certified accuracy.
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
    local: LocalCertification | None = None

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
        """Samples certified at ε (globally or locally) that PGD nevertheless broke (0 whenever
        the constants are sound)."""
        if self.pgd_robust is None:
            return None
        out = []
        for i, (e, r) in enumerate(zip(self.eps, self.pgd_robust)):
            certified = self.radius > e
            if self.local is not None:
                certified = certified | self.local.certified[i]
            out.append(int((certified & ~r).sum()))
        return out

    @property
    def local_certified_accuracy(self) -> list[float] | None:
        return None if self.local is None else self.local.certified_accuracy

    @property
    def mean_radius(self) -> float:
        return float(self.radius.mean()) if self.samples else 0.0

    @property
    def median_radius(self) -> float:
        """The lower median (an actual sample's radius) over all samples, misclassified ones at 0."""
        return float(self.radius.median()) if self.samples else 0.0

    def with_gate(self, threshold: float) -> "CertifyResult":
        """This result with the ``--min-certified`` gate evaluated (see :class:`Gate`)."""
        accuracy = self.certified_accuracy if self.local is None else self.local.certified_accuracy
        worst = max(range(len(self.eps)), key=lambda i: (self.eps[i], -accuracy[i]))
        acc = min(accuracy)
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
            "local": self.local.to_dict() if self.local is not None else None,
        }

    def write_per_sample(self, path: str | Path) -> None:
        """CSV with columns index, label, prediction, radius (+ ``local_radius`` with ``--local``, + one
        ``pgd_robust@ε`` column per ε)."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            extra = [f"pgd_robust@{e:g}" for e in self.eps] if self.pgd_robust is not None else []
            local = ["local_radius"] if self.local is not None else []
            w.writerow(["index", "label", "prediction", "radius", *local, *extra])
            for n in range(self.samples):
                r = float(self.radius[n])
                row = [int(self.index[n]), int(self.label[n]), int(self.prediction[n]),
                       "inf" if math.isinf(r) else repr(r)]
                if self.local is not None:
                    lr = float(self.local.radius[n])
                    row.append("inf" if math.isinf(lr) else repr(lr))
                if self.pgd_robust is not None:
                    row += [int(self.pgd_robust[i, n]) for i in range(len(self.eps))]
                w.writerow(row)
