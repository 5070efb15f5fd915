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

# (no torch import here: ``liplt train --help`` builds its options from this module)
METHODS = ("liplt", "naive", "none")
G_CHOICES = ("lse", "exp", "hinge")  # the robust loss g of eq. 6 (liplt_cli.train.loss)
SCHEDULES = ("constant", "linear")
LR_SCHEDULES = ("constant", "cosine", "exponential")
NORMALISATIONS = ("batch", "active")
POWER_GRADIENTS = ("iterations", "final")
# epoch-valued settings that ``TrainConfig.with_epochs`` rescales with the run length
SCALED_EPOCH_FIELDS = ("warmup_epochs", "lr_decay_start", "ramp_epochs")


# Panels of ``liplt train --help``, in the order they are shown.
PANELS = ("Model", "Data", "Method", "Optimisation", "Validation", "Output")
# ε of the validation certified accuracy when none is given: the paper's value for the dataset
DATASET_EPS = {"mnist": 1.58, "embedded": 1.58, "cifar10": 36 / 255}
DEFAULT_EPS = 1.58
# settings that define which model and which data a run trains on (fixed once a run exists)
MODEL_FIELDS = ("arch", "activation", "input_mean", "input_std")
DATA_FIELDS = ("dataset", "data_dir", "train_indices", "limit", "val_fraction", "val_size", "seed")  # seed: the split


def setting(default: Any, help: str, panel: str, *, flag: str | None = None, text: str | None = None,
            choices: tuple[str, ...] | None = None, shown: str | None = None) -> Any:
    """A :class:`TrainConfig` field with what ``liplt train`` needs to offer it as an option.

    ``help`` and ``panel`` (one of :data:`PANELS`) describe it; ``flag`` is the option's name when
    it is not ``--`` + the field name with dashes (``"--a/--b"`` for an on/off pair); ``text``
    names how a command-line string becomes the value (``"fraction"``: a number or ``36/255``,
    ``"floats"``: ``0.5,0.5,0.5``, ``"range"``: ``START:STOP``); ``choices`` are listed in the
    help; ``shown`` replaces the default in the help when the plain value would mislead.
    """
    meta = {"help": help, "panel": panel, "flag": flag, "text": text, "choices": choices, "shown": shown}
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every knob of a CRM training run (defaults: the paper's MNIST recipe, shortened).

    Each field carries its help text, panel and option name (:func:`setting`): ``liplt train``
    builds its options from them, so every recipe key is also a flag.  ``eps=None`` means the
    dataset's value (:data:`DATASET_EPS`).
    """

    arch: str = setting(
        "4C3F", "4C3F, 6C2F, 8C2F, 2C2F, mlp:W1,W2,..., or Proposition 2 residual layers: prop2-mlp:KxN (linear stem "
        "to N, K dense layers, linear head) or prop2-conv:KxC1-C2-... (conv stem, K conv layers per stage, "
        "stride-2 downsampling, linear head); options ,sn|aol|sll (T choice, default sll) and ,rho=learn|VALUE "
        "(default learn).", "Model")
    activation: str = setting("relu", "Activation of every hidden layer: relu, tanh, leaky_relu, gelu, ...", "Model")
    dataset: str = setting("mnist", "mnist, cifar10, or a dataset path (IDX/CIFAR folder, image folder, .npz).", "Data")
    data_dir: str | None = setting(
        None, "Folder holding the dataset files; without it, mnist means the embedded 5,000-image sample.", "Data",
        shown="none")
    train_indices: tuple[int, int] | None = setting(
        None, "START:STOP training indices to use, e.g. 5848:60000.", "Data", flag="--train-range", text="range",
        shown="all")
    epochs: int = setting(10, "Number of epochs. With --recipe it rescales the recipe's warm-up, lr decay start "
                          "and ramp with the run length (flags given explicitly win).", "Optimisation")
    batch_size: int = setting(512, "Global batch size (split across ranks).", "Optimisation")
    lr: float = setting(1e-3, "Adam learning rate.", "Optimisation")
    lr_schedule: str = setting(
        "constant", "Learning-rate schedule: constant, cosine (to 0) or exponential (the reference's: constant "
        "until --lr-decay-start, then ×γ per epoch to --lr-min at the last epoch).", "Optimisation",
        choices=LR_SCHEDULES)
    lr_decay_start: int = setting(25, "Exponential schedule: epochs at the full rate before the decay.", "Optimisation")
    lr_min: float = setting(1e-6, "Exponential schedule: the rate of the last epoch.", "Optimisation")
    adam_eps: float = setting(1e-7, "Adam's ε (the reference code's 1e-7; torch's default is 1e-8).", "Optimisation")
    weight_decay: float = setting(0.0, "Adam's weight decay (L2 penalty).", "Optimisation")
    lam: float = setting(30.0, "Weight λ of the robust term.", "Method")
    lam_schedule: str = setting(
        "constant", "λ from the first robust epoch on (constant) or ramped from 0 over --ramp-epochs (linear).",
        "Method", choices=SCHEDULES)
    cutoff: float = setting(2.2, "Cut-off radius: points certified beyond it are not penalised.", "Method")
    cutoff_schedule: str = setting(
        "constant", "Cut-off from the first robust epoch on (constant) or ramped over --ramp-epochs (linear).",
        "Method", choices=SCHEDULES)
    ramp_epochs: int = setting(1, "Epochs of a linear λ / cut-off ramp, from the first robust epoch.", "Method")
    temperature: float = setting(5.0, "Soft-min temperature t (eq. 5).", "Method")
    g: str = setting("lse", "Robust loss g: lse (the paper's), exp or hinge.", "Method", choices=G_CHOICES)
    robust_normalisation: str = setting(
        "batch", "Divide the robust sum by the batch size (batch, the reference's) or by the number of "
        "penalised points (active).", "Method", choices=NORMALISATIONS)
    method: str = setting("liplt", "Pairwise constants in the loss: liplt, naive (the paper's ablation) or none "
                          "(plain cross-entropy).", "Method", choices=METHODS)
    warmup_epochs: int = setting(1, "Epochs of plain cross-entropy before the robust term.", "Method")
    power_iterations: int = setting(10, "Warm-started power iterations per step.", "Method")
    power_gradient: str = setting(
        "iterations", "Differentiate the power estimates through the step's iterations (iterations, the "
        "reference's) or through the last product only (final).", "Method", choices=POWER_GRADIENTS)
    eps: float | None = setting(
        None, "ε (ℓ2, pixel units) of the validation certified accuracy, e.g. 1.58 or 36/255.", "Validation",
        text="fraction", shown="1.58 for mnist, 36/255 for cifar10")
    input_mean: tuple[float, ...] | None = setting(
        None, "Per-channel mean, e.g. 0.5,0.5,0.5: the model starts with (x − mean)/std, so radii and ε are in "
        "raw pixel units.", "Model", text="floats", shown="none")
    input_std: tuple[float, ...] | None = setting(
        None, "Per-channel std used with --input-mean.", "Model", text="floats", shown="none")
    augment_flip: bool = setting(False, "Random horizontal flips.", "Data", flag="--augment-flip/--no-augment-flip")
    augment_rotate: float = setting(0.0, "Random rotation up to this many degrees.", "Data")
    augment_translate: float = setting(0.0, "Random translation up to this fraction of the image size (whole "
                                       "pixels).", "Data")
    augment_fill: float = setting(0.0, "Pixel value of the area a rotation/translation uncovers.", "Data")
    val_fraction: float = setting(0.1, "Share of the training split held out for validation (the reference's "
                                  "90/10 split).", "Validation")
    val_size: int | None = setting(None, "Held-out validation samples (at most a quarter); overrides "
                                   "--val-fraction.", "Validation", shown="from --val-fraction")
    val_every: int = setting(5, "Validate after epoch 1, every N-th epoch after it and the last.", "Validation")
    seed: int = setting(0, "Random seed (weights, split, sampling, augmentation).", "Optimisation")
    limit: int | None = setting(None, "Use only the first N training samples.", "Data", shown="all")
    device: str = setting("auto", "Where to train: cuda when available (auto), or force cpu / cuda.", "Output",
                          choices=("auto", "cpu", "cuda"))
    out: str = setting("runs/train", "Run folder (config.json, metrics.jsonl, checkpoint, exported model).",
                       "Output")
    sound_validation: bool = setting(
        True, "Validation certified accuracy from the sound compute_bounds (--sound-validation) or from the "
        "training estimate, labelled (--fast-validation).", "Validation",
        flag="--sound-validation/--fast-validation")

    def __post_init__(self) -> None:
        if self.eps is None:
            self.eps = DATASET_EPS.get(str(self.dataset).lower(), DEFAULT_EPS)

    def validate(self) -> "TrainConfig":
        """Raise :class:`ArgumentError` on an impossible value; return self.

        Messages name the setting as ``{field}`` (see :class:`~liplt_cli.errors.LipltError`):
        ``str(error)`` shows the field's name, the command line its flag.
        """
        choices = {"method": METHODS, "g": G_CHOICES, "lam_schedule": SCHEDULES, "cutoff_schedule": SCHEDULES,
                   "lr_schedule": LR_SCHEDULES, "robust_normalisation": NORMALISATIONS,
                   "power_gradient": POWER_GRADIENTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ArgumentError(f"unknown {name} '{getattr(self, name)}'; choose from {', '.join(allowed)}")
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                _refuse(name, f"{{{name}}} must be a finite number, got {value}")
        for name in ("epochs", "batch_size", "lr", "temperature", "power_iterations", "lr_min", "adam_eps",
                     "val_every"):
            if not getattr(self, name) > 0:
                _refuse(name, f"{{{name}}} must be positive, got {getattr(self, name)}")
        for name in ("lam", "cutoff", "eps", "warmup_epochs", "ramp_epochs", "lr_decay_start", "augment_rotate",
                     "augment_translate", "weight_decay", "val_size"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                _refuse(name, f"{{{name}}} must be non-negative, got {value}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ArgumentError("{input_mean} and {input_std} go together: give both or neither",
                                parameters=("input_mean", "input_std"))
        if self.input_std is not None and any(not v > 0 for v in self.input_std):
            _refuse("input_std", f"{{input_std}} must be positive, got {list(self.input_std)}")
        if not 0 <= self.val_fraction <= 0.25:
            _refuse("val_fraction", f"{{val_fraction}} must be in [0, 0.25], got {self.val_fraction}")
        if self.limit is not None and self.limit <= 0:
            _refuse("limit", f"{{limit}} must be positive, got {self.limit}")
        if self.train_indices is not None and not 0 <= self.train_indices[0] < self.train_indices[1]:
            _refuse("train_indices", f"{{train_indices}} needs 0 <= start < stop, got {list(self.train_indices)}")
        return self

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not what was meant (the command line prints them)."""
        notes = []
        if self.method != "none" and self.lam > 0 and self.warmup_epochs >= self.epochs:
            notes.append(
                f"the warm-up ({self.warmup_epochs} epochs of plain cross-entropy) is not shorter than the run "
                f"({self.epochs} epochs): the robust term never starts"
            )
        return notes

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


def _refuse(name: str, message: str) -> None:
    raise ArgumentError(message, parameters=(name,))


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


def read_recipe(path_or_name: str | Path) -> dict[str, Any]:
    """The mapping a recipe holds: a ``.toml`` / ``.json`` file, or the name of a shipped one (``mnist_4c3f``)."""
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
    if not isinstance(data, dict):
        raise ArgumentError(f"recipe {path} must hold a table of settings")
    return data


def load_recipe(path_or_name: str | Path) -> TrainConfig:
    """Read a recipe (:func:`read_recipe`) as a validated :class:`TrainConfig`."""
    return config_from_dict(read_recipe(path_or_name))
