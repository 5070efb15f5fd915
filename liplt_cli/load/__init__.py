"""Model loaders: everything becomes a :class:`~liplt_cli.graph.LayerGraph`.

* :func:`graph_from_module` -- any torch.fx-traceable ``nn.Module`` (shares its parameters);
* :func:`load_model` -- an ONNX file or a liplt safetensors file, recognised by its content
  (not its extension); PyTorch pickles are refused, since unpickling can run code;
* :func:`save_safetensors` -- weights plus the layer graph's description in one file.

Layout of the package (each module has one job; imports only point down this list, the loader
never imports the training package):

* ``__init__`` (this file) -- the entry points above; ``inputs`` -- checks of the caller's values;
* ``onnx`` (ONNX file → checked, normalised, onnx2torch) with ``onnx_tensors`` (tensor sizes and
  external data) and ``onnx_rewrites`` (graph rewrites before onnx2torch); ``safetensors`` (liplt's
  file format; plain files with an ``architecture.Architecture`` from the caller);
* ``fx`` (trace, example input, prune, check) → ``walk`` (the fx walk) → ``dispatch`` (one node →
  its registered handler) and ``elementwise`` (elementwise formulas → activations, reading ops
  with ``op_formulas``, deciding with ``recognise``, in the terms of ``formula``);
* ``ops/`` (the handlers, one module per op family) → ``registry`` (the converter registry),
  ``builder`` (the interface handlers emit nodes with), ``values`` (``Sym``, ``Unsupported``),
  ``fxnodes`` (the fx graph's modules and node names); ``supported`` (the supported-op list,
  generated from the registry); ``check`` (graph vs module) and ``fuse`` (affine folding).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from liplt_cli.errors import ModelLoadError
from liplt_cli.graph import LayerGraph, prepend_normalization
from liplt_cli.load.architecture import Architecture
from liplt_cli.load.fx import graph_from_module
from liplt_cli.load.inputs import (
    check_classifier_output, check_input_shape, check_normalization, check_normalization_channels,
)
from liplt_cli.notes import warning

if TYPE_CHECKING:
    import torch

__all__ = ["Architecture", "graph_from_module", "load_model", "save_safetensors", "sniff_format"]


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


def _check_arch(arch: object) -> None:
    if arch is not None and not isinstance(arch, Architecture):
        raise TypeError(
            f"arch must be an Architecture (e.g. liplt_cli.train.architecture.architecture('4C3F')), "
            f"got {type(arch).__name__} {arch!r}"
        )


def load_model(
    path: str | Path,
    input_shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    arch: Architecture | None = None,
) -> LayerGraph:
    """Load an ONNX or liplt safetensors model as a layer graph.

    ``input_shape`` is per sample (no batch axis); it is required when the ONNX input has
    dynamic per-sample dimensions, and for plain safetensors files (with ``arch``) whose
    architecture's default does not fit.  ``mean``/``std`` (per channel) prepend
    ``x ↦ (x − mean)/std`` so that ε and radii are in raw-data units.  ``arch`` is the
    architecture of a safetensors file that lacks liplt metadata (e.g.
    ``liplt_cli.train.architecture.architecture("4C3F")``).
    """
    p = Path(path)
    _check_arch(arch)
    shape = check_input_shape(input_shape) if input_shape is not None else None
    normalization = check_normalization(mean, std)
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
        if arch is not None:
            graph = graph.with_notes(warning(f"architecture {arch.name} ignored: an ONNX file describes its own layers"))
    check_classifier_output(graph, p)
    if normalization is not None:
        means, stds = normalization
        check_normalization_channels(means, stds, graph.input_shape)
        graph = prepend_normalization(graph, means, stds)
        graph.validate()
    return graph


def save_safetensors(
    module_or_graph: "torch.nn.Module | LayerGraph",
    path: str | Path,
    arch: str | Architecture | None = None,
    extra_metadata: dict | None = None,
    input_shape: Sequence[int] | None = None,
) -> None:
    """Write weights plus the layer graph's description (see :mod:`liplt_cli.load.safetensors`).

    ``path`` is replaced atomically; for a module the input shape comes from ``input_shape``,
    ``extra_metadata["input_shape"]`` or the default of ``arch`` (an :class:`Architecture`; a
    string only names the architecture in the file's metadata).
    """
    from liplt_cli.load.safetensors import save_safetensors as _save

    _save(module_or_graph, path, arch=arch, extra_metadata=extra_metadata, input_shape=input_shape)
