"""Builders and checks shared by the hostile-input tests (tests/test_hostile_*.py).

Every hostile case goes through the real entry point, ``liplt_cli.cli.app.run``, and must end
in exactly one line on stderr (``error: …`` with exit 2, or ``internal error: …`` with exit 3),
never a traceback, never exit 1 (reserved for a failed ``--min-certified`` gate).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from liplt_cli.cli.app import run


# ---------------------------------------------------------------------------- running the CLI
def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``run(argv)`` → (exit code, stdout, stderr)."""
    code = run([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_one_line_error(code: int, err: str, *contains: str, exit_code: int = 2) -> str:
    """Exit ``exit_code`` (2 by default) with one stderr line holding every string in ``contains``."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert code == exit_code, f"exit {code}, expected {exit_code}; stderr: {err}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    prefix = "error: " if exit_code == 2 else "internal error: "
    assert lines[0].startswith(prefix), lines[0]
    for text in contains:
        assert text.lower() in lines[0].lower(), f"{text!r} not in {lines[0]!r}"
    return lines[0]


def expect_error(capsys, argv: list[str], *contains: str, exit_code: int = 2) -> str:
    """Run ``argv`` and check the one-line error (see :func:`assert_one_line_error`); stdout stays empty."""
    code, out, err = run_cli(capsys, argv)
    line = assert_one_line_error(code, err, *contains, exit_code=exit_code)
    assert out == "", f"stdout should be empty on an error, got: {out[:300]}"
    return line


class FifoGuard:
    """Unblocks a reader stuck on ``fifo`` after ``seconds`` (so a regression fails, never hangs).

    ``fired`` tells whether the guard had to open the FIFO's write end, i.e. whether someone was
    blocked reading it.
    """

    def __init__(self, fifo: Path, seconds: float = 5.0):
        self.fifo, self.seconds = fifo, seconds
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        if self._stop.wait(self.seconds):
            return
        while not self._stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet (ENXIO)
                self._stop.wait(0.05)
                continue
            self.fired = True
            os.close(fd)
            return

    def __enter__(self) -> "FifoGuard":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------------------- ONNX models
def onnx_model(nodes, initializers, in_shape, out_shape, *, in_name="input", out_name="output", opset=13,
               ir_version=8):
    """An ONNX ModelProto with one float input and one float output (shapes may hold None/str)."""
    graph = helper.make_graph(
        nodes, "hostile",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def gemm_model(k: int = 3, d: int = 4, in_shape=None, w: np.ndarray | None = None):
    """``y = x·Wᵀ + b``: input [1, d] → output [1, k] (the smallest classifier)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, d)).astype(np.float32) if w is None else w
    b = np.zeros(k, np.float32)
    nodes = [helper.make_node("Gemm", ["input", "W", "b"], ["output"], transB=1, name="fc")]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")]
    return onnx_model(nodes, inits, in_shape or [1, d], [1, k])


def save_onnx(model, path: Path) -> Path:
    """Serialise ``model`` without any check (hostile models are invalid on purpose)."""
    path.write_bytes(model.SerializeToString())
    return path


def external_gemm(folder: Path, location: str, *, offset: int | None = None, length: int | None = None,
                  name: str = "model.onnx") -> Path:
    """A Gemm model whose weight W (3×4 float32) is stored externally at ``location``."""
    model = gemm_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        e = w.external_data.add()
        e.key, e.value = key, value
    return save_onnx(model, folder / name)


# ---------------------------------------------------------------------------- safetensors
def tiny_module(activation: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 5), activation or nn.ReLU(), nn.Linear(5, 3))


def liplt_safetensors(path: Path, activation: nn.Module | None = None) -> Path:
    """A valid liplt safetensors file of :func:`tiny_module` (input shape [4])."""
    from liplt_cli.load import save_safetensors

    save_safetensors(tiny_module(activation), path, input_shape=(4,))
    return path


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    """(header as a dict, tensor buffer) of a safetensors file's bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_safetensors(header: dict | bytes | str, buffer: bytes, length: int | None = None) -> bytes:
    """Safetensors bytes from a header (dict → JSON) and a buffer; ``length`` overrides the prefix."""
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + buffer


def edit_graph(path: Path, edit) -> Path:
    """Rewrite the liplt_graph metadata of ``path`` with ``edit(desc)`` (in place; returns path)."""
    header, buffer = split_safetensors(path.read_bytes())
    desc = json.loads(header["__metadata__"]["liplt_graph"])
    result = edit(desc)
    desc = desc if result is None else result
    header["__metadata__"]["liplt_graph"] = desc if isinstance(desc, str) else json.dumps(desc)
    path.write_bytes(join_safetensors(header, buffer))
    return path


def activation_node(desc: dict) -> dict:
    return next(n for n in desc["nodes"] if n["kind"] == "activation")


# ---------------------------------------------------------------------------- images
def png_bytes(width: int, height: int, *, idat: bytes | None = None) -> bytes:
    """A PNG of ``width``×``height`` 8-bit greyscale; only the header is real unless ``idat`` is given."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def small_png(path: Path, value: int = 128, size: int = 4) -> Path:
    from PIL import Image

    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


class MarkerPayload:
    """A pickle payload that, if ever unpickled, creates ``marker`` (proof that code ran)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
