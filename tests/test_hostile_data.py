"""Hostile datasets: one clean error line and exit 2; no read outside the dataset; no bomb decoded.

Each case goes through ``liplt certify`` with the computation replaced by a function that fails
the test if it is reached: every problem must be found while the data is being read.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import FifoGuard, expect_error, png_bytes, run_cli, small_png

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mlp_relu.onnx"
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def no_certify(monkeypatch):
    import liplt_cli.certify

    def never(*args, **kwargs):
        raise AssertionError("certify ran on a hostile dataset")

    monkeypatch.setattr(liplt_cli.certify, "certify", never)


def _certify(data) -> list:
    return ["certify", EXAMPLE, "--data", data, "--eps", "0.1", "--no-attack", "--device", "cpu"]


# ============================================================================ the data path itself
def test_fifo_as_dataset_does_not_block(tmp_path, capsys):
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    with FifoGuard(fifo) as guard:
        expect_error(capsys, _certify(fifo), "FIFO")
    assert not guard.fired


def test_device_as_dataset(capsys):
    expect_error(capsys, _certify("/dev/zero"), "character device")


def test_fifo_as_data_dir(tmp_path, capsys):
    os.mkfifo(tmp_path / "dir")
    with FifoGuard(tmp_path / "dir") as guard:
        expect_error(capsys, [*_certify("mnist"), "--data-dir", tmp_path / "dir"], "FIFO", "not a directory")
    assert not guard.fired


# ============================================================================ .npz
def _npz(path, **arrays):
    x = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    np.savez(path, **{"x": x, "y": np.arange(8) % 4, **arrays})
    return path


def _npy_member(shape, dtype="<f4", payload=b""):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


NPZ_CASES = {
    # id: (builder(path) -> path, expected words)
    "num-classes-below-labels": (lambda p: _npz(p, num_classes=3), ["num_classes is 3", "labels go up to 3"]),
    "num-classes-zero": (lambda p: _npz(p, num_classes=0), ["num_classes"]),
    "num-classes-negative": (lambda p: _npz(p, num_classes=-1), ["num_classes"]),
    "num-classes-array": (lambda p: _npz(p, num_classes=np.array([10, 10])), ["num_classes must be one integer"]),
    "num-classes-fraction": (lambda p: _npz(p, num_classes=2.5), ["num_classes"]),
    "num-classes-text": (lambda p: _npz(p, num_classes=np.array("ten")), ["num_classes"]),
    "num-classes-nan": (lambda p: _npz(p, num_classes=np.nan), ["num_classes"]),
    "npy-named-npz": (lambda p: np.save(open(p, "wb"), np.zeros(3)) or p, ["not a readable .npz"]),
    "random-bytes": (lambda p: p.write_bytes(os.urandom(256)) and p, ["not a readable .npz"]),
    "huge-declared-array": (lambda p: _zip(p, {"x.npy": _npy_member((10**12, 784)), "y.npy": _npy_member((4,), "<i8")}),
                            ["memory budget"]),
    "object-array": (lambda p: _zip(p, {"x.npy": _npy_member((1,), "|O"), "y.npy": _npy_member((1,), "<i8")}),
                     ["Python objects"]),
    "truncated-array": (lambda p: _zip(p, {"x.npy": _npy_member((8, 28, 28), "|u1", b"\0" * 10),
                                           "y.npy": _npy_member((8,), "<i8", b"\0" * 64)}), ["not a readable .npz"]),
    "labels-not-integers": (lambda p: np.savez(p, x=np.zeros((2, 28, 28), np.float32), y=np.array([0.5, 1.0])) or p,
                            ["integer class labels"]),
    "pixels-nan": (lambda p: np.savez(p, x=np.full((2, 28, 28), np.nan, np.float32), y=np.array([0, 1])) or p,
                   ["[0, 1]"]),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_crafted_npz(tmp_path, capsys, case):
    build, words = NPZ_CASES[case]
    path = build(tmp_path / "d.npz")
    expect_error(capsys, _certify(path), *words)


# ============================================================================ MNIST / CIFAR files
def test_gzip_bomb_in_mnist_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIPLT_MEMORY_BUDGET", "1M")
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0" * (3 << 20)))  # 3 MiB from ~3 KiB
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + (2).to_bytes(4, "big") + b"\0\0"))
    expect_error(capsys, _certify(folder), "decompresses to more than", "memory budget")


def test_idx_header_declaring_huge_dims(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    dims = b"".join(d.to_bytes(4, "big") for d in (2**32 - 1, 2**32 - 1, 2**32 - 1))
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + dims + b"\0" * 16)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + (2).to_bytes(4, "big") + b"\0\0")
    expect_error(capsys, _certify(folder), "truncated or padded")


def test_fifo_inside_mnist_folder_is_not_read(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    os.mkfifo(folder / "t10k-images-idx3-ubyte")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + (2).to_bytes(4, "big") + b"\0\0")
    with FifoGuard(folder / "t10k-images-idx3-ubyte") as guard:
        code, out, err = run_cli(capsys, _certify(folder))
    assert not guard.fired
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


# ============================================================================ image folders
def _tiny_imagenet(tmp_path, annotation_lines, *, wnids="n01\nn02\n"):
    """root/wnids.txt, root/val/val_annotations.txt, root/val/images/ok.png, and a secret outside."""
    root = tmp_path / "tiny"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text(wnids)
    small_png(root / "val" / "images" / "ok.png", size=28)
    secret = tmp_path / "secret.png"
    small_png(secret, value=7, size=28)
    (root / "val" / "val_annotations.txt").write_text("".join(f"{line}\n" for line in annotation_lines))
    return root


def _annotations(*names):
    return lambda t: _tiny_imagenet(t, [f"{n}\tn01" for n in names])


def _symlinked_annotations(t):
    root = _tiny_imagenet(t, ["ok.png\tn01"])
    (t / "evil.txt").write_text(f"ok.png\tn01\n")
    os.remove(root / "val" / "val_annotations.txt")
    (root / "val" / "val_annotations.txt").symlink_to(t / "evil.txt")
    return root


def _symlinked_wnids(t):
    root = _tiny_imagenet(t, ["ok.png\tn01"])
    os.remove(root / "wnids.txt")
    (root / "wnids.txt").symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else t / "secret.png")
    return root


def _class_folders(t):
    root = t / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        small_png(root / c / "img.png", size=28)
    return root


def _symlinked_image(t):
    root = _class_folders(t)
    small_png(t / "secret.png", value=7, size=28)
    (root / "a" / "zz_link.png").symlink_to(t / "secret.png")
    return root


def _symlinked_class(t):
    root = _class_folders(t)
    outside = t / "elsewhere"
    outside.mkdir()
    small_png(outside / "img.png", value=7, size=28)
    (root / "c").symlink_to(outside, target_is_directory=True)
    return root


def _fifo_annotation(t):
    root = _tiny_imagenet(t, ["pipe.png\tn01"])
    os.mkfifo(root / "val" / "images" / "pipe.png")
    return root


def _bomb(t):
    root = _tiny_imagenet(t, ["bomb.png\tn01"])
    (root / "val" / "images" / "bomb.png").write_bytes(png_bytes(100_000, 100_000))
    return root


def _not_an_image(t):
    root = _class_folders(t)
    (root / "a" / "fake.png").write_bytes(b"GIF89a but not really")
    return root


IMAGE_CASES = {
    # id: (builder(tmp_path) -> dataset root, expected words)
    "annotation-absolute-etc-passwd": (_annotations("/etc/passwd"), ["/etc/passwd", "relative"]),
    "annotation-absolute-secret": (lambda t: _annotations(str(t / "secret.png"))(t), ["relative"]),
    "annotation-dotdot": (_annotations("../../secret.png"), [".."]),
    "annotation-dotdot-inside": (_annotations("images/../../../secret.png"), [".."]),
    "annotation-backslash-dotdot": (_annotations("..\\..\\secret.png"), [".."]),
    "annotation-file-symlinked-outside": (_symlinked_annotations, ["outside the dataset folder"]),
    "wnids-symlinked-outside": (_symlinked_wnids, ["outside the dataset folder"]),
    "image-symlinked-outside": (_symlinked_image, ["outside the dataset folder"]),
    "class-folder-symlinked-outside": (_symlinked_class, ["outside the dataset folder"]),
    "annotation-names-a-fifo": (_fifo_annotation, ["FIFO"]),
    "decompression-bomb": (_bomb, ["decompression bomb"]),
    "not-an-image": (_not_an_image, ["cannot decode"]),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_folder_is_confined_and_bombs_refused(tmp_path, capsys, case):
    build, words = IMAGE_CASES[case]
    root = build(tmp_path)
    fifo = root / "val" / "images" / "pipe.png"
    if fifo.exists():
        with FifoGuard(fifo) as guard:
            expect_error(capsys, _certify(root), *words)
        assert not guard.fired
    else:
        expect_error(capsys, _certify(root), *words)


def test_image_over_the_memory_budget(tmp_path, capsys, monkeypatch):
    root = _class_folders(tmp_path)
    monkeypatch.setenv("LIPLT_MEMORY_BUDGET", "1K")
    expect_error(capsys, _certify(root), "memory budget")


def test_symlinks_inside_the_folder_still_load(tmp_path):
    """Confinement is about where a path leads, not about symlinks as such."""
    from liplt_cli.data import load_dataset

    root = _class_folders(tmp_path)
    (root / "b" / "copy.png").symlink_to(root / "a" / "img.png")
    ds = load_dataset(str(root))
    assert len(ds) == 3 and ds.sample_shape == (1, 28, 28)
    tiny = _tiny_imagenet(tmp_path / "t", ["ok.png\tn02"])
    ds = load_dataset(str(tiny), split="val")
    assert len(ds) == 1 and int(ds.y[0]) == 1
