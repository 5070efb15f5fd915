"""Typed per-epoch records of a training run: what one ``metrics.jsonl`` line holds.

:class:`EpochRecord` is frozen; :meth:`EpochRecord.to_dict` gives the JSON line (its keys, in
order, are the file's format), and ``record["loss"]`` reads a key of that line, so code that
read the records as dictionaries keeps working.  :class:`StepTotals` sums the steps of one epoch
(per-sample means are taken at the end); :class:`Validation` is the held-out evaluation of an
epoch that validates (every field ``None`` on the others).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from liplt_cli.train.config import TrainConfig


@dataclass
class StepTotals:
    """Running sums over the optimisation steps of one epoch (sample-weighted)."""

    lr: float
    loss: float = 0.0
    ce: float = 0.0
    robust: float = 0.0
    active: int = 0
    correct: int = 0
    seen: int = 0
    lip_seconds: float = 0.0
    lip_mean: float = 0.0
    radius: float = 0.0
    radius_n: int = 0


@dataclass(frozen=True)
class Validation:
    """Clean and certified accuracy on the validation split (eq. 4 at the run's ε), or nothing."""

    val_samples: int | None = None
    val_acc: float | None = None
    val_certified: float | None = None
    mean_lij: float | None = None
    certified_source: str | None = None
    val_seconds: float = 0.0


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: loss terms, accuracy, timings, and its :class:`Validation`.

    ``loss = ce + lam * robust`` (eq. 6, per-sample means over the epoch); ``robust`` is the
    robust term before the weight λ (negative with ``g="lse"``: minus the soft radius).
    """

    epoch: int  # 1-based
    epochs: int
    lam: float
    cutoff: float
    lr: float
    loss: float
    ce: float
    robust: float
    active_fraction: float
    train_acc: float
    train_mean_radius: float | None
    mean_lij_estimate: float | None
    train_seconds: float
    lip_seconds: float
    samples_rank0: int
    world_size: int
    validation: Validation = Validation()
    seconds_total: float | None = None

    @classmethod
    def from_totals(cls, epoch: int, epochs: int, lam: float, cutoff: float, totals: StepTotals, seconds: float,
                    world: int, estimates: bool) -> "EpochRecord":
        """The training half of a record from the step sums (``estimates``: L_ij were computed)."""
        seen = max(1, totals.seen)
        return cls(
            epoch=epoch + 1, epochs=epochs, lam=lam, cutoff=cutoff, lr=totals.lr,
            loss=totals.loss / seen, ce=totals.ce / seen, robust=totals.robust / seen,
            active_fraction=totals.active / seen, train_acc=totals.correct / seen,
            train_mean_radius=totals.radius / totals.radius_n if totals.radius_n else None,
            mean_lij_estimate=totals.lip_mean / seen if estimates else None,
            train_seconds=seconds, lip_seconds=totals.lip_seconds, samples_rank0=totals.seen, world_size=world,
        )

    def with_validation(self, validation: Validation, seconds_total: float) -> "EpochRecord":
        """This record completed with the epoch's validation and the run's elapsed seconds."""
        return dataclasses.replace(self, validation=validation, seconds_total=seconds_total)

    @property
    def seconds(self) -> float:
        """Wall time of the epoch: training plus validation."""
        return self.train_seconds + self.validation.val_seconds

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` line (the same keys, in the same order, as every earlier run):
        the validation fields flattened in place of ``validation``."""
        line: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            line.update(dataclasses.asdict(value) if f.name == "validation" else {f.name: value})
        return line

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EpochRecord":
        """Read a record back from a checkpoint or a ``metrics.jsonl`` line."""
        names = {f.name for f in dataclasses.fields(cls)} - {"validation"}
        checked = {f.name for f in dataclasses.fields(Validation)}
        validation = Validation(**{k: v for k, v in data.items() if k in checked})
        return cls(**{k: v for k, v in data.items() if k in names}, validation=validation)

    def __getitem__(self, key: str) -> Any:
        """``record["loss"]``: the value of a key of the JSON line."""
        line = self.to_dict()
        if key not in line:
            raise KeyError(key)
        return line[key]


@dataclass
class TrainResult:
    """What a run produced: per-epoch records, files written, timings."""

    config: "TrainConfig"
    records: list[EpochRecord]
    out_dir: Path
    data_description: str
    embedded_data: bool
    seconds: float
    resumed_from_epoch: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    model: "nn.Module | None" = None

    def to_dict(self) -> dict[str, Any]:
        records = [r.to_dict() for r in self.records]
        return {
            "config": self.config.to_dict(),
            "records": records,
            "out_dir": str(self.out_dir),
            "data": self.data_description,
            "embedded_data": self.embedded_data,
            "seconds": self.seconds,
            "resumed_from_epoch": self.resumed_from_epoch,
            "files": dict(self.files),
            "final": records[-1] if records else None,
        }
