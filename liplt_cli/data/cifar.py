"""CIFAR-10 in its two official layouts.

* ``cifar-10-batches-bin``: ``data_batch_{1..5}.bin`` and ``test_batch.bin`` (each optionally
  ``.gz``), 10,000 records of 3,073 bytes: a label byte then the R, G, B 32×32 planes.
* ``cifar-10-batches-py``: the same batches as Python pickles of a dict with ``data``
  (N×3072 uint8) and ``labels``.  They are read with :class:`SafeUnpickler`, which only admits
  the numpy array reconstruction functions such a pickle needs, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.data.files import find_file, read_bytes
from liplt_cli.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD = 3073
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"


def batch_stems(split: str) -> list[str]:
    if split == "train":
        return [f"data_batch_{i}" for i in range(1, 6)]
    if split == "test":
        return ["test_batch"]
    raise DataError(f"CIFAR-10 has splits 'train' and 'test', not '{split}'")


def _allowed() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may reference: numpy array reconstruction and a codec."""
    import codecs

    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                            ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array/dtype/scalar reconstructors (and
    ``_codecs.encode``, which protocol-2 pickles use for bytes); any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data file") from None


def safe_unpickle(data: bytes, path: Path) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; :class:`DataError` on anything else."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"'{path}' is not a readable CIFAR pickle: {exc}") from None


def _read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_bytes(path)
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(f"'{path}' is not a CIFAR-10 binary batch: {len(data)} bytes is not a multiple of {RECORD}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0]


def _read_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = safe_unpickle(read_bytes(path), path)
    if not isinstance(obj, dict):
        raise DataError(f"'{path}' does not hold a CIFAR batch dictionary")
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731  (py2 pickles have bytes keys)
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"'{path}' lacks the 'data' array or the 'labels' list of a CIFAR batch")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataError(f"'{path}' has data {data.dtype}{list(data.shape)} and {labels.shape} labels; "
                        "expected uint8 N×3072 and N labels")
    return data.reshape(-1, 3, 32, 32), labels


def find_cifar_dir(directory: Path) -> Path | None:
    """``directory`` itself or its ``cifar-10-batches-{bin,py}`` child, whichever holds batches."""
    for d in (directory, directory / BIN_DIR, directory / PY_DIR):
        if d.is_dir() and (find_file(d, ["test_batch.bin", "test_batch", "data_batch_1.bin", "data_batch_1"])):
            return d
    return None


def load_cifar10(directory: Path, split: str, limit: int | None, indices: IndexSpec) -> Dataset:
    """Read a CIFAR-10 split from ``directory`` (or its ``cifar-10-batches-bin``/``-py`` child)."""
    stems = batch_stems(split)
    where = find_cifar_dir(directory)
    expected = (f"{BIN_DIR}/{stems[0]}.bin[.gz]" + (f" … {stems[-1]}.bin[.gz]" if len(stems) > 1 else "")
                + f" or {PY_DIR}/{stems[0]}" + (f" … {stems[-1]}" if len(stems) > 1 else ""))
    if where is None:
        raise DataError(f"CIFAR-10 {split} split: no batches in '{directory}' (expected {expected}; "
                        "pass --data-dir DIR to point elsewhere)")
    paths = []
    for stem in stems:
        path = find_file(where, [stem + ".bin", stem])
        if path is None:
            raise DataError(f"CIFAR-10 {split} split: missing {stem}[.bin][.gz] in '{where}' (expected {expected})")
        paths.append(path)
    parts = [(_read_bin(p) if ".bin" in p.name else _read_py(p)) for p in paths]
    images = np.concatenate([a for a, _ in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([b for _, b in parts]) if len(parts) > 1 else parts[0][1]
    rows = select_rows(images.shape[0], indices, limit, f"CIFAR-10 {split}")
    files = ", ".join(p.name for p in paths)
    desc = f"CIFAR-10 {split} split, {rows.size} of {images.shape[0]} images from {where} ({files})"
    return finish(images, labels, rows, num_classes=10, description=desc, name="cifar10", class_names=CLASSES)
