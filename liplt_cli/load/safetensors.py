"""liplt's safetensors format: weights plus the architecture, no code.

A liplt safetensors file is an ordinary safetensors file whose ``__metadata__`` (string → string)
holds

* ``liplt_format``: ``"1"``;
* ``liplt_graph``: the layer graph's JSON description (:mod:`liplt_cli.graph.serialize`): nodes,
  kinds, inputs, shapes, op attributes, activation names/parameters and, per op, the key of each
  of its tensors in this file;
* ``input_shape``: the per-sample input shape, e.g. ``"1,28,28"``;
* ``arch`` (optional): the architecture name (``4C3F``, ``mlp:512,512``, ...);
* any ``extra_metadata`` given to :func:`save_safetensors` (values stored as strings).

When saved from an ``nn.Module`` the tensors are the module's ``state_dict`` under its own keys
(so the file also loads with ``module.load_state_dict``), plus tensors the graph derives from
them (e.g. BatchNorm's scale) under ``liplt.<node>.<field>``.

A plain safetensors file (a bare ``state_dict``) has no architecture; it loads with an
:class:`~liplt_cli.load.architecture.Architecture` given by the caller (e.g.
``liplt_cli.train.architecture.architecture("4C3F")``): the loader builds it, then loads the
weights with a strict ``load_state_dict``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from liplt_cli.errors import GraphError, InputShapeError, ModelLoadError
from liplt_cli.graph import LayerGraph
from liplt_cli.graph.serialize import graph_from_dict, graph_to_dict
from liplt_cli.load.architecture import Architecture
from liplt_cli.notes import warning

FORMAT_VERSION = "1"
_RESERVED = {"liplt_format", "liplt_graph", "input_shape", "arch"}


def _parse_shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        return tuple(int(p) for p in parts)
    return tuple(int(v) for v in value)


def _module_graph(module: nn.Module, arch: str | Architecture | None, input_shape: tuple[int, ...] | None) -> LayerGraph:
    from liplt_cli.load.fx import graph_from_module

    if input_shape is None and isinstance(arch, Architecture):
        input_shape = arch.default_input_shape()
    if input_shape is None:
        raise InputShapeError("save_safetensors needs the input shape of a module: pass input_shape=(C, H, W)")
    return graph_from_module(module, input_shape)


def save_safetensors(
    module_or_graph: nn.Module | LayerGraph,
    path: str | Path,
    arch: str | Architecture | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> None:
    """Write ``module_or_graph`` to ``path`` as a liplt safetensors file (atomically).

    For a module the input shape comes from ``input_shape``, else ``extra_metadata["input_shape"]``,
    else the default of ``arch`` (an :class:`Architecture`; a string only names it in the metadata).
    """
    from safetensors.torch import save

    extra = {str(k): v for k, v in (extra_metadata or {}).items()}
    shape = _parse_shape(input_shape) or _parse_shape(extra.get("input_shape"))
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(module_or_graph, LayerGraph):
        graph = module_or_graph
        desc = graph_to_dict(graph)
        for name, t in graph.tensors():
            tensors[name] = t
    else:
        module = module_or_graph
        graph = _module_graph(module, arch, shape)
        by_id: dict[int, str] = {}
        for key, t in module.state_dict(keep_vars=True).items():
            tensors[key] = t
            by_id.setdefault(id(t), key)

        def key_of(node: str, field: str, t: torch.Tensor) -> str:
            if id(t) in by_id:
                return by_id[id(t)]
            key = f"liplt.{node}.{field}"
            tensors[key] = t
            by_id[id(t)] = key
            return key

        desc = graph_to_dict(graph, key_of)
    shape = tuple(graph.input_shape)
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items() if k not in _RESERVED}
    metadata.update({
        "liplt_format": FORMAT_VERSION,
        "liplt_graph": json.dumps(desc, separators=(",", ":")),
        "input_shape": ",".join(str(s) for s in shape),
    })
    if arch is not None:
        metadata["arch"] = arch.name if isinstance(arch, Architecture) else str(arch)
    # separate contiguous CPU copies: safetensors refuses shared storage
    payload = {k: t.detach().to("cpu").contiguous().clone() for k, t in tensors.items()}
    _write_atomically(Path(path), save(payload, metadata=metadata))


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it over ``target``.

    The file gets the permissions a plain ``open`` would give (0666 less the umask), not the
    0600 of a temporary file.
    """
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=str(target.parent) if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# bytes per value of the safetensors dtypes
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
               "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_header(data: bytes, path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor entries and the ``__metadata__`` of a safetensors file, checked strictly.

    Each entry must have a known ``dtype``, a ``shape`` of non-negative integers and
    ``data_offsets`` [begin, end] inside the data that hold exactly ``shape``'s bytes; entries
    may not overlap, and the declared sizes must fit the memory budget.  The metadata must map
    strings to strings.  Anything else is a :class:`ModelLoadError` naming the entry.
    """
    from liplt_cli.limits import element_count, format_shape, over_budget

    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ModelLoadError(f"'{path}' is a truncated safetensors file (its header runs past the end)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelLoadError(f"'{path}' is a truncated or corrupt safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"'{path}': the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelLoadError(f"'{path}': the safetensors __metadata__ must map strings to strings")
    buffer = len(data) - 8 - n
    spans = []
    total = 0
    for key, entry in header.items():
        where = f"'{path}' is a truncated or corrupt safetensors file: tensor '{key[:80]}'"
        if not isinstance(entry, dict):
            raise ModelLoadError(f"{where} is described by {type(entry).__name__}, not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise ModelLoadError(f"{where} has unknown dtype {str(dtype)[:20]!r}; known: {', '.join(DTYPE_SIZES)}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ModelLoadError(f"{where} has shape {str(shape)[:60]}; a shape is a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= buffer):
            raise ModelLoadError(
                f"{where} has data_offsets {str(offsets)[:60]}; they must be [begin, end] with "
                f"0 <= begin <= end <= {buffer} (the size of the data)"
            )
        size = element_count(shape) * DTYPE_SIZES[dtype]
        reason = over_budget(size, f"'{path}': tensor '{key[:80]}' of shape {format_shape(shape)}")
        if reason:
            raise ModelLoadError(reason)
        if offsets[1] - offsets[0] != size:
            raise ModelLoadError(
                f"{where}: {dtype} of shape {format_shape(shape)} needs {size} bytes, its data_offsets "
                f"span {offsets[1] - offsets[0]}"
            )
        total += size
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ModelLoadError(f"'{path}' is a corrupt safetensors file: tensors '{k0[:80]}' and '{k1[:80]}' "
                                 f"overlap (bytes {b1}…{min(e0, e1)})")
    return header, meta


def read_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (clear error when malformed)."""
    return read_header(data, path)[1]


def _tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:
        raise ModelLoadError(f"'{path}' is a truncated or corrupt safetensors file ({exc})") from None


def _flat_order(key: str) -> tuple:
    """Sort key of a state_dict entry by its numeric path (``layers.10`` after ``layers.2``)."""
    return tuple(int(p) if p.isdigit() else -1 for p in key.split("."))


def _from_arch(path: Path, tensors: dict[str, torch.Tensor], arch: Architecture, input_shape: tuple[int, ...] | None,
               activation: str = "relu") -> LayerGraph:
    """Build ``arch`` for the classes (and, for an MLP, the input width) its dense weights give,
    load the weights strictly, and trace it."""
    from liplt_cli.load.fx import graph_from_module

    mats = [(k, t) for k, t in tensors.items() if k.endswith("weight") and t.dim() == 2]
    if not mats:
        raise ModelLoadError(f"'{path}' has no dense weight; it does not look like a {arch.name} state_dict")
    num_classes = int(max(mats, key=lambda kt: _flat_order(kt[0]))[1].shape[0])
    if input_shape is None:
        first = min(mats, key=lambda kt: _flat_order(kt[0]))[1]
        input_shape = arch.default_input_shape(int(first.shape[1]))
    module = arch.build(tuple(input_shape), num_classes, activation)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = " ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else ""
        raise ModelLoadError(
            f"the weights in '{path}' do not fit {{arch}} {arch.name} with input shape {list(input_shape)}: "
            f"{detail[:300]}",
            parameters=("arch",),
        ) from None
    graph = graph_from_module(module, tuple(input_shape))
    return graph.with_notes(f"weights from a plain safetensors file, read as architecture {arch.name}")


def _plain_file(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str], input_shape: tuple[int, ...] | None,
                arch: Architecture | None) -> LayerGraph:
    """A bare ``state_dict``: the caller's architecture, the input shape given or in the metadata."""
    if arch is None:
        raise ModelLoadError(
            f"'{path}' is a plain safetensors file without liplt metadata, so its architecture is unknown; "
            "give it as {arch} (e.g. {arch} 4C3F, {arch} 6C2F, {arch} mlp:512,512)",
            parameters=("arch",),
        )
    if input_shape is None and meta.get("input_shape"):
        try:
            input_shape = _parse_shape(meta["input_shape"])
        except ValueError:
            input_shape = None
        if input_shape is not None:
            from liplt_cli.load.inputs import check_input_shape

            input_shape = check_input_shape(input_shape)
    return _from_arch(path, tensors, arch, input_shape, meta.get("activation", "relu"))


def _liplt_file(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str],
                input_shape: tuple[int, ...] | None) -> LayerGraph:
    """A liplt file: the layer graph from its description, checked."""
    if meta.get("liplt_format") != FORMAT_VERSION:
        raise ModelLoadError(f"'{path}' has liplt format {meta.get('liplt_format')!r}; this liplt reads format {FORMAT_VERSION}")
    try:
        desc = json.loads(meta["liplt_graph"])
    except (json.JSONDecodeError, RecursionError):
        raise ModelLoadError(f"'{path}' has a corrupt layer-graph description") from None
    try:
        graph = graph_from_dict(desc, tensors)
    except GraphError as exc:
        raise GraphError(f"'{path}': {exc}") from None
    if input_shape is not None and tuple(input_shape) != tuple(graph.input_shape):
        raise InputShapeError(
            f"{{input_shape}} {list(input_shape)} contradicts the model's input shape {list(graph.input_shape)}",
            parameters=("input_shape",),
        )
    try:
        graph.validate()
    except GraphError as exc:
        raise GraphError(f"'{path}': {exc}") from None
    return graph


def load_safetensors_bytes(path: Path, data: bytes, input_shape: tuple[int, ...] | None = None,
                           arch: Architecture | None = None) -> LayerGraph:
    """Load a liplt safetensors file (or a plain one with ``arch``) as a layer graph."""
    meta = read_metadata(data, path)
    tensors = _tensors(data, path)
    if "liplt_graph" not in meta:
        return _plain_file(path, tensors, meta, input_shape, arch)
    graph = _liplt_file(path, tensors, meta, input_shape)
    if arch is not None:
        graph = graph.with_notes(warning(f"architecture {arch.name} ignored: '{path.name}' is a liplt file, "
                                         "which describes its own layers"))
    return graph
