"""The :class:`Dataset` record every reader returns, and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from liplt_cli.errors import DataError

IndexSpec = Sequence[int] | np.ndarray | torch.Tensor | range | None


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels, ready for a model that takes pixels in [0, 1].

    ``x`` is a float32 tensor of shape ``(N, C, H, W)`` with values in [0, 1]; ``y`` is int64 of
    shape ``(N,)``; ``index[n]`` is the position of sample ``n`` in its source (file row, image
    number within the split), which is what per-sample reports print.  ``num_classes`` is the
    number of classes of the source (not only those present); ``description`` says which files
    were read; ``name`` is the dataset's short name (``mnist``, ``cifar10``, ``embedded``, …);
    ``notes`` say what the loader did with the request (warnings when part of it was ignored).
    Any normalisation belongs to the model, so ε is in [0, 1]-pixel units.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    description: str
    name: str
    index: torch.Tensor
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "samples": len(self),
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
        }


def select_rows(total: int, indices: IndexSpec, limit: int | None, what: str) -> np.ndarray:
    """Rows to keep out of ``total``: ``indices`` (in the given order) first, then the first ``limit``.

    Raises :class:`DataError` when an index is out of range or ``limit`` is not positive.
    """
    if indices is None:
        rows = np.arange(total, dtype=np.int64)
    else:
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        rows = np.asarray(list(indices) if isinstance(indices, range) else indices)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise DataError(f"indices for {what} must be a flat list of integers")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= total):
            bad = int(rows[(rows < 0) | (rows >= total)][0])
            raise DataError(f"index {bad} is out of range for {what}, which has {total} samples (0–{total - 1})")
    if limit is not None:
        if int(limit) <= 0:
            raise DataError(f"limit must be a positive number of samples, got {limit}")
        rows = rows[: int(limit)]
    return rows


def finish(
    images: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    *,
    num_classes: int,
    description: str,
    name: str,
    index: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> Dataset:
    """Build a :class:`Dataset` from uint8 (0–255) or float ([0, 1]) NCHW ``images``.

    ``rows`` are already-selected rows of ``images``/``labels``; ``index`` gives their source
    positions (defaults to ``rows``).  Raises :class:`DataError` when nothing is left.
    """
    if rows.size == 0:
        raise DataError(f"the dataset is empty: {description}")
    imgs = images[rows]
    if imgs.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(imgs)).to(torch.float32).div_(255.0)
    else:
        x = torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels[rows]).astype(np.int64))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"labels must lie in 0…{num_classes - 1}; found {int(y.min())}…{int(y.max())} in {description}")
    idx = torch.from_numpy((rows if index is None else index[rows]).astype(np.int64))
    return Dataset(x=x, y=y, num_classes=int(num_classes), description=description, name=name, index=idx,
                   class_names=tuple(class_names))
