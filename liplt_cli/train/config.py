"""Training configuration: one dataclass, loadable from a small JSON or TOML recipe.

Learning rate (``lr_schedule``, one value per epoch):

* ``"constant"``: ``lr`` throughout;
* ``"cosine"``: cosine decay from ``lr`` to 0 at the last epoch;
* ``"exponential"``: the reference code's "exponential with stopping": ``lr`` for the first
  ``lr_decay_start`` epochs, then multiplied by
  :math:`\gamma = (\mathrm{lr_{min}} / \mathrm{lr})^{1/(E - s)}` at the end of every epoch, so the
  last epoch (0-based :math:`E-1`) runs at exactly ``lr_min``: the rate of 0-based epoch
  :math:`e` is :math:`\mathrm{lr}\cdot\gamma^{\max(0,\,\min(e, E-1) - \max(s, 1) + 1)}`
  (no decay at all when :math:`s \ge E`).

λ and cut-off schedules (``lam_schedule``, ``cutoff_schedule``; the paper's runs keep both constant):

* ``"constant"``: the value from the first robust epoch on;
* ``"linear"``: a linear warm-up from 0 to the value over ``ramp_epochs`` epochs, counted from
  the first epoch with the robust term (``warmup_epochs``).

Before ``warmup_epochs`` the robust term is off (λ = 0) and the step is plain cross-entropy,
as in the reference recipes ("robust term from epoch 10").
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from liplt_cli.errors import ArgumentError
from liplt_cli.train.loss import G_CHOICES

METHODS = ("liplt", "naive", "none")
SCHEDULES = ("constant", "linear")
LR_SCHEDULES = ("constant", "cosine", "exponential")
NORMALISATIONS = ("batch", "active")
POWER_GRADIENTS = ("iterations", "final")
# epoch-valued settings that ``TrainConfig.with_epochs`` rescales with the run length
SCALED_EPOCH_FIELDS = ("warmup_epochs", "lr_decay_start", "ramp_epochs")


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
    lr_schedule: str = "constant"  # "cosine" (to 0) or "exponential" (the reference's, to lr_min)
    lr_decay_start: int = 25  # "exponential": epochs at the full rate before the decay
    lr_min: float = 1e-6  # "exponential": the rate of the last epoch
    adam_eps: float = 1e-7  # the reference code's Adam ε (torch's default is 1e-8)
    weight_decay: float = 0.0
    lam: float = 30.0
    lam_schedule: str = "constant"
    cutoff: float = 2.2
    cutoff_schedule: str = "constant"
    ramp_epochs: int = 1
    temperature: float = 5.0
    g: str = "lse"
    robust_normalisation: str = "batch"  # divide the robust sum by the batch size, or by |A| ("active")
    method: str = "liplt"
    warmup_epochs: int = 1
    power_iterations: int = 10
    # gradient of the power estimates: through the step's iterations ("iterations", the reference
    # code's; smaller constants) or through the last product with the vectors held fixed ("final")
    power_gradient: str = "iterations"
    eps: float = 1.58
    input_mean: tuple[float, ...] | None = None  # per channel; with input_std puts x ↦ (x − mean)/std
    input_std: tuple[float, ...] | None = None  # first in the model, so radii are in raw pixel units
    augment_flip: bool = False
    augment_rotate: float = 0.0  # degrees
    augment_translate: float = 0.0  # fraction of the image size (whole pixels)
    augment_fill: float = 0.0  # pixel value of the area a rotation/translation uncovers
    val_fraction: float = 0.1  # share of the training split held out for validation
    val_size: int | None = None  # held-out count; overrides val_fraction when set
    val_every: int = 5  # validate on epochs 1, 1 + val_every, ... and the last
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
        if self.robust_normalisation not in NORMALISATIONS:
            raise ArgumentError(
                f"unknown robust_normalisation '{self.robust_normalisation}'; choose from {', '.join(NORMALISATIONS)}"
            )
        if self.power_gradient not in POWER_GRADIENTS:
            raise ArgumentError(
                f"unknown power_gradient '{self.power_gradient}'; choose from {', '.join(POWER_GRADIENTS)}"
            )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "temperature": self.temperature, "power_iterations": self.power_iterations,
                    "lr_min": self.lr_min, "adam_eps": self.adam_eps, "val_every": self.val_every}
        for name, value in positive.items():
            if not value > 0:
                raise ArgumentError(f"{name.replace('_', '-')} must be positive, got {value}")
        nonneg = {"lam": self.lam, "cutoff": self.cutoff, "eps": self.eps,
                  "warmup_epochs": self.warmup_epochs, "ramp_epochs": self.ramp_epochs,
                  "lr_decay_start": self.lr_decay_start,
                  "augment_rotate": self.augment_rotate, "augment_translate": self.augment_translate}
        if self.val_size is not None:
            nonneg["val_size"] = self.val_size
        for name, value in nonneg.items():
            if not value >= 0:
                raise ArgumentError(f"{name.replace('_', '-')} must be non-negative, got {value}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ArgumentError("input_mean and input_std go together: give both or neither")
        if self.input_std is not None and any(not v > 0 for v in self.input_std):
            raise ArgumentError(f"input_std must be positive, got {list(self.input_std)}")
        if not 0 <= self.val_fraction <= 0.25:
            raise ArgumentError(f"val-fraction must be in [0, 0.25], got {self.val_fraction}")
        if self.limit is not None and self.limit <= 0:
            raise ArgumentError(f"--limit must be positive, got {self.limit}")
        return self

    def lr_factor_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` divided by ``lr`` (see the module docstring)."""
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        if self.lr_schedule == "exponential":
            start, end = self.lr_decay_start, self.epochs
            steps = max(0, min(epoch, end - 1) - max(start, 1) + 1)
            if steps == 0:
                return 1.0
            gamma = (self.lr_min / self.lr) ** (1.0 / (end - start))
            return gamma**steps
        return 1.0

    def validates_at(self, epoch: int) -> bool:
        """Whether 0-based ``epoch`` ends with a validation (every ``val_every``-th from the first, and the last)."""
        return epoch % self.val_every == 0 or epoch == self.epochs - 1

    def with_epochs(self, epochs: int) -> "TrainConfig":
        """The same recipe over ``epochs`` epochs: warm-up, decay start and ramp scale with the length.

        Each epoch count ``v`` of :data:`SCALED_EPOCH_FIELDS` becomes ``round(v · epochs / self.epochs)``,
        kept at least 1 when ``v`` was (a warm-up stays a warm-up), and a warm-up shorter than the run
        when ``v`` was, so a short run still reaches the robust term.  The decay end is the last epoch.
        """
        if epochs == self.epochs:
            return self.replace(epochs=epochs)
        changes: dict[str, Any] = {"epochs": epochs}
        for name in SCALED_EPOCH_FIELDS:
            value = getattr(self, name)
            scaled = int(math.floor(value * epochs / self.epochs + 0.5))
            if value > 0:
                scaled = max(1, scaled)
            if name == "warmup_epochs" and value < self.epochs:
                scaled = min(scaled, max(0, epochs - 1))
            changes[name] = scaled
        return self.replace(**changes)

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
        for name in _TUPLE_FIELDS:
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (``None`` values are ignored), validated."""
        kept = {k: v for k, v in changes.items() if v is not None}
        unknown = set(kept) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ArgumentError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **kept).validate()


_TUPLE_FIELDS = ("train_indices", "input_mean", "input_std")


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
    for name in ("input_mean", "input_std"):
        if data.get(name) is not None:
            data[name] = tuple(float(v) for v in data[name])
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
