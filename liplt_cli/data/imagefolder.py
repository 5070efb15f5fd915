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

from pathlib import Path

import numpy as np

from liplt_cli.data.dataset import Dataset, IndexSpec, finish, select_rows
from liplt_cli.errors import DataError

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


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = "L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB"
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot decode image '{path}': {exc}") from None


def load_image_folder(root: Path, split: str, limit: int | None, indices: IndexSpec) -> Dataset:
    """Read an image-folder split; only the selected images are decoded."""
    folder = _split_folder(root, split)
    if (root / "wnids.txt").is_file():
        classes = sorted({w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()})
    elif (root / "train").is_dir() and _class_dirs(root / "train"):
        classes = _class_dirs(root / "train")
    else:
        classes = _class_dirs(folder)
    lookup = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    annotations = folder / "val_annotations.txt"
    if annotations.is_file():
        for line in annotations.read_text().splitlines():
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                continue
            if parts[1] not in lookup:
                raise DataError(f"'{annotations}' names class '{parts[1]}', which is not among the {len(classes)} classes")
            path = folder / "images" / parts[0]
            if not path.is_file():
                path = folder / parts[0]
            files.append(path)
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
    decoded = [_decode(files[i]) for i in rows]
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
