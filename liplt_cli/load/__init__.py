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
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" and size > 2 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "onnx"


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise ModelLoadError(f"'{path}' is a directory, not a model file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if not data:
        raise ModelLoadError(f"'{path}' is empty")
    return data


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
    data = _read(p)
    kind = sniff_format(data[:16], len(data))
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
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
    if (mean is None) != (std is None):
        from liplt_cli.errors import ArgumentError

        raise ArgumentError("--mean and --std go together: give both or neither")
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
