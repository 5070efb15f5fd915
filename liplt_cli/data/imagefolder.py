"""Image folders: one sub-folder of images per class (torchvision's ImageFolder layout), including
Tiny-ImageNet's (``train/<wnid>/images/*.JPEG``, ``val/images`` + ``val/val_annotations.txt``,
``wnids.txt``).  Images are decoded with Pillow (a dependency of matplotlib).

Split: when the root has a sub-folder named after the split it is used (``test`` falls back to
``val`` when there is no labelled ``test``); otherwise the root itself holds the class folders.
Classes are the sorted names in ``wnids.txt`` when present (torchvision's ImageFolder order), else
the sorted class folder names of ``train/`` (so
train and val agree) or of the chosen folder.  Samples are ordered by class, then file path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.errors import DataError
from liplt_cli.limits import memory_budget
from liplt_cli.paths import file_kind

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and _images_under(d))


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` looks like an image-folder dataset (class folders, maybe under splits)."""
    for d in (root, root / "train", root / "val", root / "test"):
        if d.is_dir() and ((d / "val_annotations.txt").is_file() or _class_dirs(d)):
            return True
    return False


def _labelled(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "val_annotations.txt").is_file() or bool(_class_dirs(folder)))


def _split_folder(root: Path, split: str) -> Path:
    candidates = [root / split] + ([root / "val"] if split == "test" else [])
    for c in candidates:
        if _labelled(c):
            return c
    if _labelled(root) and not any((root / s).is_dir() for s in ("train", "val", "test")):
        return root
    raise DataError(f"image folder '{root}': no labelled '{split}' split (expected {root}/{split}/<class>/<images> "
                    f"{'or ' + str(root / 'val') + ' ' if split == 'test' else ''}or class folders directly in {root})")


def _confined(path: Path, root: Path, what: str) -> Path:
    """``path`` itself when it is a regular file whose real location is inside ``root`` (resolved).

    A symlink is followed only while it stays in the dataset folder; anything else (a link to
    ``/etc/passwd``, a FIFO, a device) is a :class:`DataError`.
    """
    real = path.resolve()
    if real != root and root not in real.parents:
        raise DataError(f"{what} '{path}' leads outside the dataset folder '{root}' (to '{real}')")
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise DataError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{what} '{path}' is {file_kind(mode)}, not a regular file")
    return path


def _annotated_path(folder: Path, name: str, annotations: Path) -> Path:
    """The image an annotation line names: a relative path inside ``folder`` (no absolute path, no ``..``)."""
    if not name or "\x00" in name:
        raise DataError(f"'{annotations}' names an empty or malformed image path")
    if (PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive
            or ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts):
        raise DataError(f"'{annotations}' names '{name[:80]}'; image paths must be relative to the dataset folder, "
                        "without '..'")
    path = folder / "images" / name
    return path if os.path.lexists(path) else folder / name


def _read_text(path: Path, root: Path, what: str) -> str:
    from liplt_cli.paths import read_regular_file

    _confined(path, root, what)
    return read_regular_file(path, what, DataError).decode("utf-8", errors="replace")


def _decode(path: Path, budget_left: int) -> np.ndarray:
    """Decode one image as uint8 (L or RGB); refuses a decompression bomb before decoding it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from liplt_cli.limits import BUDGET_ENV, format_bytes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode = "L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB"
                width, height = im.size
                need = width * height * (1 if mode == "L" else 3)
                if need > budget_left:
                    raise DataError(f"image '{path}' ({width}×{height}) needs {format_bytes(need)} decoded, more than "
                                    f"what is left of liplt's memory budget ({format_bytes(budget_left)}; "
                                    f"set ${BUDGET_ENV} to change it)")
                return np.asarray(im.convert(mode), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image '{path}' is too large to decode safely (a decompression bomb?): {exc}") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image '{path}': {exc}") from None


def load_image_folder(root: Path, split: str, limit: int | None, indices: IndexSpec) -> Dataset:
    """Read an image-folder split; only the selected images are decoded."""
    folder = _split_folder(root, split)
    real_root = root.resolve()
    if (root / "wnids.txt").is_file():
        text = _read_text(root / "wnids.txt", real_root, "class list")
        classes = sorted({w.strip() for w in text.split() if w.strip()})
    elif (root / "train").is_dir() and _class_dirs(root / "train"):
        classes = _class_dirs(root / "train")
    else:
        classes = _class_dirs(folder)
    lookup = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    annotations = folder / "val_annotations.txt"
    if annotations.is_file():
        for line in _read_text(annotations, real_root, "annotation file").splitlines():
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                continue
            if parts[1] not in lookup:
                raise DataError(f"'{annotations}' names class '{parts[1]}', which is not among the {len(classes)} classes")
            files.append(_annotated_path(folder, parts[0], annotations))
            labels.append(lookup[parts[1]])
    else:
        for c in _class_dirs(folder):
            if c not in lookup:
                raise DataError(f"class folder '{folder / c}' is not among the classes of '{root}'")
            for p in _images_under(folder / c):
                files.append(p)
                labels.append(lookup[c])
    order = sorted(range(len(files)), key=lambda i: (labels[i], str(files[i])))
    files, labels = [files[i] for i in order], [labels[i] for i in order]
    if not files:
        raise DataError(f"the dataset is empty: no images in '{folder}'")
    rows = select_rows(len(files), indices, limit, f"image folder '{folder}'")
    if rows.size == 0:
        raise DataError(f"the dataset is empty: image folder '{folder}' after selection")
    budget = memory_budget()
    decoded = []
    for i in rows:  # only the images that are read, each confined to the dataset folder
        image = _decode(_confined(files[i], real_root, "image"), budget)
        budget -= image.nbytes
        decoded.append(image)
    shapes = {a.shape for a in decoded}
    if len(shapes) > 1:
        if {len(s) for s in shapes} == {2, 3}:  # mixed grey and colour: make everything RGB
            decoded = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in decoded]
            shapes = {a.shape for a in decoded}
        if len(shapes) > 1:
            raise DataError(f"images in '{folder}' have different sizes {sorted(shapes)[:3]}…; resize them to one size")
    stack = np.stack(decoded)
    stack = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    label_arr = np.asarray(labels, dtype=np.int64)[rows]
    desc = f"image folder {folder} ({split} split), {rows.size} of {len(files)} images, {len(classes)} classes"
    return finish(stack, label_arr, np.arange(rows.size), num_classes=len(classes), description=desc,
                  name=root.name, index=rows, class_names=classes)
