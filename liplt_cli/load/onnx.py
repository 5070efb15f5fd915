"""ONNX file → layer graph: check, normalise, onnx2torch, then the fx loader.

Normalisation before onnx2torch (which converts a fixed set of operator versions):

* opsets above 17 are converted down to 17 (``onnx.version_converter``; onnx2torch 1.5.15 has
  no converter for e.g. AveragePool-19 or Constant-19), opsets below 11 (MATLAB's exporter
  writes opset 8 with Flatten-1) are converted up to 13;
* the rewrites of :mod:`liplt_cli.load.onnx_rewrites` (``Reshape`` ``allowzero``, ``Identity``
  over constants, Gelu/Mish written with older ops, ``auto_pad`` as explicit pads);
* the input's dynamic dimensions are fixed from the caller's ``input_shape`` (required when
  any per-sample dimension is dynamic; the first axis is the batch axis).

Every stored tensor is checked against its declared size first (:mod:`liplt_cli.load.onnx_tensors`).

Loading never executes code from the file: ONNX is a protobuf of tensors and operators.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from liplt_cli.errors import InputShapeError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import LayerGraph
from liplt_cli.load.onnx_rewrites import expand_new_ops, explicit_auto_pad, fix_allowzero, inline_constant_identities
from liplt_cli.load.onnx_tensors import FLOAT_TYPES, ITEMSIZE, check_tensor_sizes, load_external_data

MIN_OPSET = 11
UPGRADE_OPSET = 13
MAX_OPSET = 17


def _parse(data: bytes, path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        if data[:1] == b"\x08":  # field 1 (ir_version) as a varint: the start of an ONNX model
            raise ModelLoadError(f"'{path}' is a truncated or corrupt ONNX file ({exc})") from None
        raise ModelLoadError(f"'{path}' is neither an ONNX nor a safetensors file") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        if data[:1] == b"\x08" and model.ir_version > 0:
            raise ModelLoadError(f"'{path}' is a truncated ONNX file (its graph is missing or empty)")
        raise ModelLoadError(f"'{path}' is neither an ONNX nor a safetensors file")
    return model


def _check(model, path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"'{path}' is not a valid ONNX model (onnx.checker: {first}); is the file truncated?") from None


def _opset(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _convert_opset(model, target: int):
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot convert the ONNX model from opset {_opset(model)} to {target}: {first}") from None


def _graph_input(model):
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"the ONNX model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); exactly one is supported"
        )
    return inputs[0]


def _declared_dims(inp, input_shape: tuple[int, ...] | None) -> list[int | None]:
    """The input's declared dims (``None`` where dynamic), batch axis first."""
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        if input_shape is None:
            raise InputShapeError(f"the ONNX input '{inp.name}' has no shape; pass {{input_shape}} (e.g. 1,28,28)",
                                  parameters=("input_shape",))
        return [None] * (len(input_shape) + 1)
    # the batch axis may be anything (some exporters write 0 or -1 for "dynamic"); a per-sample
    # dimension that is negative or zero describes no tensor liplt can bound
    bad = [d.dim_value for d in list(tt.shape.dim)[1:] if d.HasField("dim_value") and d.dim_value <= 0]
    if bad:
        what = "a negative" if bad[0] < 0 else "an empty (zero)"
        raise InputShapeError(f"the ONNX input '{inp.name}' declares {what} dimension ({bad[0]})")
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]


def _per_sample_shape(name: str, dims: list[int | None], input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The per-sample shape: the declared one, or the caller's where it agrees with the declared."""
    per_sample = dims[1:]
    shown = ["?" if d is None else d for d in dims]
    if input_shape is None:
        if any(d is None for d in per_sample):
            raise InputShapeError(
                f"the ONNX input '{name}' has dynamic dimensions {shown}; pass {{input_shape}} "
                f"with the {len(per_sample)} per-sample dimensions (e.g. 1,28,28)",
                parameters=("input_shape",),
            )
        return tuple(int(d) for d in per_sample)  # type: ignore[arg-type]
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != len(per_sample):
        raise InputShapeError(
            f"{{input_shape}} {list(shape)} has {len(shape)} dimensions; the ONNX input '{name}' "
            f"has {len(per_sample)} per-sample dimensions (shape {shown}, batch first)",
            parameters=("input_shape",),
        )
    for given, declared in zip(shape, per_sample):
        if declared is not None and declared != given:
            raise InputShapeError(f"{{input_shape}} {list(shape)} contradicts the ONNX input shape {shown}",
                                  parameters=("input_shape",))
    return shape


def _fix_input_shape(model, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The per-sample input shape (ONNX dims without the first, batch, axis), written into the model."""
    from liplt_cli.limits import shape_over_budget

    inp = _graph_input(model)
    dims = _declared_dims(inp, input_shape)
    if len(dims) < 2:
        raise InputShapeError(
            f"the ONNX input '{inp.name}' has shape {dims}: liplt needs a batch axis first (e.g. [1, 784])"
        )
    shape = _per_sample_shape(inp.name, dims, input_shape)
    reason = shape_over_budget(shape, "one input sample")
    if reason:
        raise InputShapeError(f"the ONNX input '{inp.name}': {reason}")
    # Write the shape into the model so that shape inference (and onnx2torch) sees it.
    tt = inp.type.tensor_type
    del tt.shape.dim[:]
    batch = tt.shape.dim.add()
    if dims[0] is None:
        batch.dim_param = "batch"
    else:
        batch.dim_value = dims[0]
    for s in shape:
        tt.shape.dim.add().dim_value = s
    return shape


def _check_value_shapes(model, path: Path) -> None:
    """Every tensor whose shape is known after shape inference is non-empty and within the budget.

    This catches, before onnx2torch runs anything, a Pad / Expand / ConstantOfShape whose output
    would need more memory than the budget, and negative or zero dimensions declared in the file.
    """
    from liplt_cli.limits import format_shape, shape_over_budget

    graph = model.graph
    for vi in list(graph.value_info) + list(graph.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if dims and dims[0] is not None and dims[0] <= 0:
            dims[0] = None  # the batch axis: some exporters write 0 or -1 for "dynamic"
        known = [d for d in dims if d is not None]
        shown = format_shape([d if d is not None else -1 for d in dims]).replace("-1", "?")
        if any(d < 0 for d in known):
            raise ModelLoadError(f"'{path}': tensor '{vi.name}' declares a negative dimension {shown}")
        elem_type = vi.type.tensor_type.elem_type
        if 0 in known and elem_type in FLOAT_TYPES:  # (an empty integer tensor can be a legitimate shape)
            raise ModelLoadError(f"'{path}': tensor '{vi.name}' is empty (shape {shown}); liplt needs non-empty tensors")
        itemsize = ITEMSIZE.get(elem_type, 4)
        reason = shape_over_budget(known, f"tensor '{vi.name}'", itemsize)
        if reason:
            raise ModelLoadError(f"'{path}': {reason}")


def _name_unsupported(model, exc: Exception) -> UnsupportedOpError | None:
    """After onnx2torch failed: find which nodes it cannot convert (to name them)."""
    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    from liplt_cli.load.supported import supported_ops

    opsets = {imp.domain: imp.version for imp in model.opset_import}
    try:
        graph = OnnxGraph(model.graph)
    except Exception:
        return None
    problems = []
    for name, node in graph.nodes.items():
        version = opsets.get(node.domain, opsets.get("", 0))
        try:
            converter = get_converter(domain=node.domain, operation_type=node.operation_type, version=version)
            converter(node, graph)
        except NotImplementedError as err:
            problems.append((name, f"{node.operation_type} (opset {version}): {err}"))
        except Exception as err:
            problems.append((name, f"{node.operation_type}: {type(err).__name__}: {err}"))
    return UnsupportedOpError(problems, supported_ops()) if problems else None


def _normalise(model, path: Path, input_shape: tuple[int, ...] | None) -> tuple[object, tuple[int, ...], list[str]]:
    """The checked, rewritten, opset-converted model with its input shape fixed; notes on what changed."""
    import onnx

    check_tensor_sizes(model, path)
    load_external_data(model, path)
    _check(model, path)
    notes: list[str] = []
    opset = _opset(model)
    inline_constant_identities(model)  # an exact rewrite, no note
    rewritten = fix_allowzero(model)
    if rewritten:
        notes.append(f"Reshape allowzero=1 rewritten to 0 (no zero in the target shape): {', '.join(rewritten)}")
    if opset > MAX_OPSET:
        expanded = expand_new_ops(model)
        if expanded:
            notes.append(f"Gelu/Mish written with older ops before the opset conversion: {', '.join(expanded)}")
        model = _convert_opset(model, MAX_OPSET)
        notes.append(f"ONNX opset {opset} converted to {MAX_OPSET}")
    elif 0 < opset < MIN_OPSET:
        model = _convert_opset(model, UPGRADE_OPSET)
        notes.append(f"ONNX opset {opset} converted to {UPGRADE_OPSET}")
    shape = _fix_input_shape(model, input_shape)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass  # onnx2torch infers shapes again where it needs them
    _check_value_shapes(model, path)
    padded = explicit_auto_pad(model)
    if padded:
        notes.append(f"auto_pad SAME written as explicit pads: {', '.join(padded)}")
    return model, shape, notes


def _to_torch(model, path: Path):
    """onnx2torch's ``GraphModule`` and the ONNX op type of each of its modules."""
    import onnx2torch
    from onnx2torch.onnx_graph import OnnxGraph

    logging.getLogger("onnx2torch").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = onnx2torch.convert(model)
    except Exception as exc:
        named = _name_unsupported(model, exc)
        if named is not None:
            raise named from None
        raise ModelLoadError(f"onnx2torch cannot convert '{path}': {type(exc).__name__}: {exc}") from None
    try:
        onnx_ops = {name: node.operation_type for name, node in OnnxGraph(model.graph).nodes.items()}
    except Exception:
        onnx_ops = {}
    return gm, onnx_ops


def load_onnx(path: Path, data: bytes, input_shape: tuple[int, ...] | None = None) -> LayerGraph:
    """Load the ONNX model in ``data`` (read from ``path``) as a layer graph (see module docstring)."""
    from liplt_cli.load.fx import graph_from_module

    model, shape, notes = _normalise(_parse(data, path), path, input_shape)
    gm, onnx_ops = _to_torch(model, path)
    graph = graph_from_module(gm, shape, fuse=True, onnx_ops=onnx_ops)
    return LayerGraph(graph.nodes, graph.output, tuple(notes) + graph.notes) if notes else graph
