"""Shared test helpers: the real-data folder and ONNX export with either torch exporter."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import pytest
import torch


def shared_data_path() -> Path:
    """``$LIPLT_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("LIPLT_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real-data folder; the test is skipped (with the reason) when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set LIPLT_SHARED_DATA to its location)")
    return path


def export_onnx(
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    *,
    dynamo: bool = False,
    opset: int | None = 17,
    **kwargs,
) -> Path:
    """Export ``module`` (eval mode, batch-1 example input) with the TorchScript (``dynamo=False``)
    or the dynamo exporter; ``opset=None`` takes the exporter's default."""
    module = module.eval()
    example = (torch.zeros(1, *input_shape),)
    options = dict(kwargs)
    if opset is not None:
        options["opset_version"] = opset
    if dynamo:
        options.setdefault("verbose", False)
        options.setdefault("external_data", False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=dynamo, **options)
    return path


@pytest.fixture
def tmp_onnx(tmp_path):
    """``tmp_onnx(module, input_shape, dynamo=False, opset=17, name="model.onnx")`` → exported path."""

    def _export(module, input_shape, *, dynamo=False, opset=17, name="model.onnx", **kwargs) -> Path:
        return export_onnx(module, input_shape, tmp_path / name, dynamo=dynamo, opset=opset, **kwargs)

    return _export


@contextlib.contextmanager
def one_thread():
    """Run a block with one torch thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """Run a test with one torch thread (restored afterwards).

    On this shared 2-core machine, torch's default two OpenMP threads spin against the other
    processes and small convolutions get ~100× slower; one thread avoids that.
    """
    with one_thread():
        yield
