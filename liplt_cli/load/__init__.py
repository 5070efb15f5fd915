"""Model loaders: everything becomes a :class:`~liplt_cli.graph.LayerGraph`.

* :func:`graph_from_module` -- any torch.fx-traceable ``nn.Module`` (shares its parameters);
* :func:`load_model` -- an ONNX file or a liplt safetensors file, recognised by its content
  (not its extension); PyTorch pickles are refused, since unpickling can run code;
* :func:`save_safetensors` -- weights plus the layer graph's description in one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from liplt_cli.errors import ModelLoadError
from liplt_cli.graph import LayerGraph, prepend_normalization
from liplt_cli.load.fx import graph_from_module

if TYPE_CHECKING:
    import torch

__all__ = ["graph_from_module", "load_model", "save_safetensors", "sniff_format"]


def sniff_format(head: bytes, size: int) -> str:
    """``"safetensors"``, ``"pickle"``, ``"zip"`` or ``"onnx"`` (the fallback) from a file's first bytes.

    A safetensors file starts with a little-endian u64 ``N`` (the JSON header's length), then ``{``.
    """
    if size >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
        if head[8:9] == b"{" and head[:1] != b"\x08":  # a header longer than the file: truncated
            return "safetensors"
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" and size > 2 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "onnx"


def _read(path: Path) -> bytes:
    """The file's bytes; only a regular file within the memory budget is read (a FIFO would block)."""
    from liplt_cli.paths import read_regular_file

    data = read_regular_file(path, "model file", ModelLoadError)
    if not data:
        raise ModelLoadError(f"'{path}' is empty")
    return data


def check_input_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints whose float32 sample fits the memory budget."""
    from liplt_cli.errors import InputShapeError
    from liplt_cli.limits import format_shape, shape_over_budget

    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError, OverflowError):
        raise InputShapeError(f"the input shape must be a list of integers, got {shape!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputShapeError(f"the input shape {format_shape(dims)} must have positive dimensions")
    reason = shape_over_budget(dims, "one input sample")
    if reason:
        raise InputShapeError(reason)
    return dims


def check_normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    """Finite means and strictly positive, finite standard deviations (a std is never ≤ 0)."""
    import math

    from liplt_cli.errors import ArgumentError

    means, stds = [float(m) for m in mean], [float(s) for s in std]
    if not means or not stds:
        raise ArgumentError("the normalisation needs at least one mean and one std")
    if not all(math.isfinite(m) for m in means):
        raise ArgumentError(f"the normalisation mean must be finite, got {means}")
    bad = [s for s in stds if not (math.isfinite(s) and s > 0)]
    if bad:
        raise ArgumentError(
            f"the normalisation std must be positive and finite (a standard deviation), got {bad[0]:g}"
        )
    return means, stds


def check_classifier_output(graph: LayerGraph, path: Path) -> None:
    """The output must be a non-empty vector of K logits per sample: shape [K], [1, K] or [K, 1, 1].

    Any other shape (e.g. a segmentation map [2, 8, 8]) is refused instead of being read as
    2·8·8 = 128 classes.
    """
    from liplt_cli.limits import format_shape

    shape = tuple(graph.output_shape)
    k = graph.num_classes
    if sum(1 for s in shape if s != 1) > 1:
        raise ModelLoadError(
            f"'{path}' outputs a tensor of shape {format_shape(shape)} per sample; liplt bounds classifiers whose "
            f"output is a vector of K class scores (shape [K], [1, K] or [K, 1, 1]). If these {k} values are "
            "the class scores, add a Flatten at the end of the model"
        )
    if k < 1:
        raise ModelLoadError(f"'{path}' outputs an empty tensor (shape {format_shape(shape)}) per sample")


def load_model(
    path: str | Path,
    input_shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    arch: str | None = None,
) -> LayerGraph:
    """Load an ONNX or liplt safetensors model as a layer graph.

    ``input_shape`` is per sample (no batch axis); it is required when the ONNX input has
    dynamic per-sample dimensions, and for plain safetensors files (with ``arch``) whose
    architecture's default does not fit.  ``mean``/``std`` (per channel) prepend
    ``x ↦ (x − mean)/std`` so that ε and radii are in raw-data units.  ``arch`` (e.g. ``4C3F``,
    ``mlp:512,512``) gives the architecture of a safetensors file that lacks liplt metadata.
    """
    p = Path(path)
    shape = check_input_shape(input_shape) if input_shape is not None else None
    if (mean is None) != (std is None):
        from liplt_cli.errors import ArgumentError

        raise ArgumentError("--mean and --std go together: give both or neither")
    if mean is not None and std is not None:
        mean, std = check_normalization(mean, std)
    data = _read(p)
    kind = sniff_format(data[:16], len(data))
    if kind == "safetensors":
        from liplt_cli.load.safetensors import load_safetensors_bytes

        graph = load_safetensors_bytes(p, data, input_shape=shape, arch=arch)
    elif kind in ("zip", "pickle"):
        raise ModelLoadError(
            f"'{p}' is a PyTorch pickle checkpoint; liplt does not unpickle (it can run code). "
            "Export the model to ONNX, or save it with liplt_cli.load.save_safetensors"
        )
    else:
        from liplt_cli.load.onnx import load_onnx

        graph = load_onnx(p, data, input_shape=shape)
    check_classifier_output(graph, p)
    if mean is not None and std is not None:
        graph = prepend_normalization(graph, list(mean), list(std))
        graph.validate()
    return graph


def save_safetensors(
    module_or_graph: "torch.nn.Module | LayerGraph",
    path: str | Path,
    arch: str | None = None,
    extra_metadata: dict | None = None,
    input_shape: Sequence[int] | None = None,
) -> None:
    """Write weights plus the layer graph's description (see :mod:`liplt_cli.load.safetensors`).

    ``path`` is replaced atomically; for a module the input shape comes from ``input_shape``,
    ``extra_metadata["input_shape"]`` or ``arch``'s default.
    """
    from liplt_cli.load.safetensors import save_safetensors as _save

    _save(module_or_graph, path, arch=arch, extra_metadata=extra_metadata, input_shape=input_shape)
