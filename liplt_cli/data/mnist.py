"""MNIST in the IDX format (``train-images-idx3-ubyte[.gz]`` …), as distributed by LeCun et al.

IDX: a big-endian header ``0x0000 <type 0x08 = uint8> <ndim>`` then ``ndim`` uint32 sizes, then
the payload in row-major order.  Images are magic 2051 (3 dims: N, 28, 28), labels 2049 (1 dim).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.data.files import find_file, read_bytes
from liplt_cli.errors import DataError

PREFIX = {"train": "train", "test": "t10k"}


def expected_files(split: str) -> list[str]:
    """The two file names (without ``.gz``) a split needs."""
    p = PREFIX[split]
    return [f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"]


def has_mnist(directory: Path) -> bool:
    return any(find_file(directory, [name, name.replace("-idx", ".idx")]) for s in PREFIX for name in expected_files(s))


def parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Decode one IDX uint8 array with ``ndim`` dimensions; :class:`DataError` if it is not one."""
    if len(data) < 4 + 4 * ndim or data[0:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
        raise DataError(f"'{path}' is not an IDX uint8 file with {ndim} dimension(s) (bad header)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    need = math.prod(dims)  # exact: a crafted header cannot overflow it
    if len(data) - start != need:
        raise DataError(f"'{path}' is truncated or padded: header says {dims}, payload has {len(data) - start} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def load_mnist(directory: Path, split: str, limit: int | None, indices: IndexSpec) -> Dataset:
    """Read one MNIST split from ``directory`` (files gzipped or not)."""
    if split not in PREFIX:
        raise DataError(f"MNIST has splits 'train' and 'test', not '{split}'")
    img_name, lab_name = expected_files(split)
    img_path = find_file(directory, [img_name, img_name.replace("-idx", ".idx")])
    lab_path = find_file(directory, [lab_name, lab_name.replace("-idx", ".idx")])
    missing = [n for n, p in ((img_name, img_path), (lab_name, lab_path)) if p is None]
    if missing:
        raise DataError(
            f"MNIST {split} split: missing {' and '.join(m + '[.gz]' for m in missing)} in '{directory}' "
            f"(expected {img_name}[.gz] and {lab_name}[.gz]; pass --data-dir DIR to point elsewhere)"
        )
    assert img_path is not None and lab_path is not None
    images = parse_idx(read_bytes(img_path), img_path, 3)
    labels = parse_idx(read_bytes(lab_path), lab_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"'{img_path}' has {images.shape[0]} images but '{lab_path}' has {labels.shape[0]} labels")
    rows = select_rows(images.shape[0], indices, limit, f"MNIST {split}")
    desc = f"MNIST {split} split, {rows.size} of {images.shape[0]} images from {img_path} and {lab_path.name}"
    return finish(images[:, None, :, :], labels, rows, num_classes=10, description=desc, name="mnist",
                  class_names=[str(d) for d in range(10)])
