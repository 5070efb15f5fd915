"""A generic ``.npz`` with arrays ``x`` (images) and ``y`` (integer labels).

``x`` may be uint8 (0–255, scaled by 1/255) or float in [0, 1]; its layout may be
``(N, C, H, W)``, ``(N, H, W, C)`` (C ∈ {1, 3, 4}: moved to channels-first), ``(N, H, W)``
(one channel) or flat ``(N, D)`` (kept as ``(N, 1, 1, D)``; a model taking D numbers reshapes
it).  An optional scalar ``num_classes`` overrides ``max(y) + 1``.  Pickled objects are refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.errors import DataError


def to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    """Bring an image array to ``(N, C, H, W)`` (see the module docstring for the rules)."""
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3, 4):
            return x
        if x.shape[3] in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        return x
    raise DataError(f"'{path}': x has shape {list(x.shape)}; expected (N,C,H,W), (N,H,W,C), (N,H,W) or (N,D)")


def check_npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the ``.npz`` at ``path``, read from the headers only.

    Refuses, before any array is read: a file that is not a zip of ``.npy`` arrays, arrays of
    Python objects (they would be unpickled), and arrays whose declared size exceeds the memory
    budget.
    """
    from liplt_cli.limits import format_shape, shape_over_budget

    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                if dtype.hasobject:
                    raise DataError(f"'{path}' is not a readable .npz file: array '{name}' holds Python objects "
                                    "(liplt does not unpickle data)")
                if any(int(d) < 0 for d in shape):
                    raise DataError(f"'{path}': array '{name}' declares a negative shape {format_shape(shape)}")
                reason = shape_over_budget(shape, f"'{path}': array '{name}'", max(1, dtype.itemsize))
                if reason:
                    raise DataError(reason)
                headers[name] = (tuple(int(d) for d in shape), dtype)
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file: {exc}") from None
    return headers


def _num_classes(value: np.ndarray, path: Path) -> int:
    """The optional ``num_classes`` entry: one integer (stored as an int or an integral float)."""
    if value.shape != () or not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise DataError(f"'{path}': num_classes must be one integer, got a {value.dtype} array of shape {list(value.shape)}")
    number = float(value)
    if not np.isfinite(number) or number != int(number) or number < 1:
        raise DataError(f"'{path}': num_classes must be a positive integer, got {value.item()}")
    return int(number)


def load_npz(path: Path, limit: int | None, indices: IndexSpec) -> Dataset:
    """Read ``x``/``y`` from ``path``; :class:`DataError` on missing keys or bad values."""
    keys = set(check_npz_headers(path))
    if not {"x", "y"} <= keys:
        raise DataError(f"'{path}' must hold arrays 'x' and 'y'; it has {sorted(keys) or 'none'}")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
            num_classes = _num_classes(f["num_classes"], path) if "num_classes" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, TypeError, AttributeError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file: {exc}") from None
    if x.shape[:1] != y.shape or y.ndim != 1:
        raise DataError(f"'{path}': x has {x.shape[0] if x.ndim else 0} samples but y has shape {list(y.shape)}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"'{path}': y must hold integer class labels, got {y.dtype}")
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise DataError(f"'{path}': float pixels must lie in [0, 1] (found {x.min():.4g}…{x.max():.4g}); "
                            "store uint8 0–255 or scale them, and put any normalisation in the model")
    elif np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"'{path}': integer pixels must lie in 0…255")
        x = x.astype(np.uint8)
    else:
        raise DataError(f"'{path}': x has unsupported dtype {x.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"'{path}': labels must be non-negative, found {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and int(y.max()) >= num_classes:
        raise DataError(f"'{path}': num_classes is {num_classes} but the labels go up to {int(y.max())}")
    x = to_nchw(x, path)
    rows = select_rows(x.shape[0], indices, limit, f"'{path}'")
    desc = f"{path} ({rows.size} of {x.shape[0]} samples, shape {list(x.shape[1:])})"
    return finish(x, y, rows, num_classes=num_classes, description=desc, name=path.stem)
