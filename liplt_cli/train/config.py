"""Training configuration: one dataclass, loadable from a small JSON or TOML recipe.

Schedules (``lam_schedule``, ``cutoff_schedule``):

* ``"constant"``: the value from the first robust epoch on;
* ``"linear"``: a linear warm-up from 0 to the value over ``ramp_epochs`` epochs, counted from
  the first epoch with the robust term (``warmup_epochs``).

Before ``warmup_epochs`` the robust term is off (λ = 0) and the step is plain cross-entropy,
as in the reference recipes ("robust term from epoch 10").
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from liplt_cli.errors import ArgumentError
from liplt_cli.train.loss import G_CHOICES

METHODS = ("liplt", "naive", "none")
SCHEDULES = ("constant", "linear")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Every knob of a CRM training run (defaults: the paper's MNIST recipe, shortened)."""

    arch: str = "4C3F"
    activation: str = "relu"
    dataset: str = "mnist"
    data_dir: str | None = None
    train_indices: tuple[int, int] | None = None  # [start, stop) of the training split to use
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine" (per epoch, to 0 at the last epoch)
    weight_decay: float = 0.0
    lam: float = 30.0
    lam_schedule: str = "constant"
    cutoff: float = 2.2
    cutoff_schedule: str = "constant"
    ramp_epochs: int = 1
    temperature: float = 5.0
    g: str = "lse"
    method: str = "liplt"
    warmup_epochs: int = 1
    power_iterations: int = 10
    eps: float = 1.58
    augment_flip: bool = False
    augment_rotate: float = 0.0  # degrees
    augment_translate: float = 0.0  # fraction of the image size
    val_size: int = 1000
    seed: int = 0
    limit: int | None = None
    device: str = "auto"
    out: str = "runs/train"
    sound_validation: bool = True  # validation certified accuracy from the sound compute_bounds

    def validate(self) -> "TrainConfig":
        """Raise :class:`ArgumentError` on an impossible value; return self."""
        if self.method not in METHODS:
            raise ArgumentError(f"unknown method '{self.method}'; choose from {', '.join(METHODS)}")
        if self.g not in G_CHOICES:
            raise ArgumentError(f"unknown g '{self.g}'; choose from {', '.join(G_CHOICES)}")
        for name in ("lam_schedule", "cutoff_schedule"):
            if getattr(self, name) not in SCHEDULES:
                raise ArgumentError(f"unknown {name} '{getattr(self, name)}'; choose from {', '.join(SCHEDULES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ArgumentError(f"unknown lr_schedule '{self.lr_schedule}'; choose from {', '.join(LR_SCHEDULES)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "temperature": self.temperature, "power_iterations": self.power_iterations}
        for name, value in positive.items():
            if not value > 0:
                raise ArgumentError(f"{name.replace('_', '-')} must be positive, got {value}")
        nonneg = {"lam": self.lam, "cutoff": self.cutoff, "eps": self.eps, "val_size": self.val_size,
                  "warmup_epochs": self.warmup_epochs, "ramp_epochs": self.ramp_epochs,
                  "augment_rotate": self.augment_rotate, "augment_translate": self.augment_translate}
        for name, value in nonneg.items():
            if not value >= 0:
                raise ArgumentError(f"{name.replace('_', '-')} must be non-negative, got {value}")
        if self.limit is not None and self.limit <= 0:
            raise ArgumentError(f"--limit must be positive, got {self.limit}")
        return self

    def lam_at(self, epoch: int) -> float:
        """λ used during 0-based ``epoch`` (0 before the warm-up ends or with method 'none')."""
        return 0.0 if self.method == "none" else _scheduled(self.lam, self.lam_schedule, epoch, self)

    def cutoff_at(self, epoch: int) -> float:
        """Cut-off radius used during 0-based ``epoch``."""
        if epoch < self.warmup_epochs:
            return 0.0
        return _scheduled(self.cutoff, self.cutoff_schedule, epoch, self)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["train_indices"] is not None:
            d["train_indices"] = list(d["train_indices"])
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (``None`` values are ignored), validated."""
        kept = {k: v for k, v in changes.items() if v is not None}
        unknown = set(kept) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ArgumentError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **kept).validate()


def _scheduled(value: float, schedule: str, epoch: int, cfg: TrainConfig) -> float:
    if epoch < cfg.warmup_epochs:
        return 0.0
    if schedule == "linear":
        done = epoch - cfg.warmup_epochs + 1
        return value * min(1.0, done / max(1, cfg.ramp_epochs))
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a recipe mapping (unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(data) - names
    if unknown:
        raise ArgumentError(f"unknown key(s) in recipe: {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    data = dict(data)
    if data.get("train_indices") is not None:
        data["train_indices"] = tuple(int(v) for v in data["train_indices"])
    return TrainConfig(**data).validate()


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in ``liplt_cli/train/recipes/``."""
    folder = resources.files("liplt_cli.train") / "recipes"
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith((".toml", ".json")))


def load_recipe(path_or_name: str | Path) -> TrainConfig:
    """Read a recipe: a ``.toml`` / ``.json`` file, or the name of a shipped one (``mnist_4c3f``)."""
    path = Path(path_or_name)
    if not path.exists():
        folder = resources.files("liplt_cli.train") / "recipes"
        for ext in (".toml", ".json"):
            candidate = folder / f"{path_or_name}{ext}"
            if candidate.is_file():
                path = Path(str(candidate))
                break
        else:
            raise ArgumentError(
                f"recipe '{path_or_name}' is neither a file nor a shipped recipe ({', '.join(builtin_recipes())})"
            )
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArgumentError(f"recipe {path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {exc}") from None
    return config_from_dict(data)
