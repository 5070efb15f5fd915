"""ONNX file → layer graph: check, normalise, onnx2torch, then the fx loader.

Normalisation before onnx2torch (which converts a fixed set of operator versions):

* opsets above 17 are converted down to 17 (``onnx.version_converter``; onnx2torch 1.5.15 has
  no converter for e.g. AveragePool-19 or Constant-19), opsets below 11 (MATLAB's exporter
  writes opset 8 with Flatten-1) are converted up to 13;
* ``Reshape`` with ``allowzero=1`` (torch's dynamo exporter) is rewritten to ``allowzero=0``
  when its target shape has no zero entry -- both then mean the same -- else it is an error;
* the input's dynamic dimensions are fixed from ``--input-shape`` (required when any
  per-sample dimension is dynamic; the first axis is the batch axis).

Loading never executes code from the file: ONNX is a protobuf of tensors and operators.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

from liplt_cli.errors import InputShapeError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import LayerGraph

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


# bytes per value of the ONNX tensor types liplt may meet (sub-byte and string types are absent)
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 24: 1}
# the typed field holding each type's values when it is not in raw_data (values per element)
_TYPED_FIELD = {1: ("float_data", 1), 2: ("int32_data", 1), 3: ("int32_data", 1), 4: ("int32_data", 1),
                5: ("int32_data", 1), 6: ("int32_data", 1), 7: ("int64_data", 1), 9: ("int32_data", 1),
                10: ("int32_data", 1), 11: ("double_data", 1), 12: ("uint64_data", 1), 13: ("uint64_data", 1),
                14: ("float_data", 2), 15: ("double_data", 2), 16: ("int32_data", 1)}


_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _all_tensors(model):
    """Every TensorProto of the model: initializers and tensor attributes, in subgraphs too."""
    from onnx import external_data_helper

    return list(external_data_helper._get_all_tensors(model))


def _declared_bytes(tensor, path: Path) -> int:
    """The byte size ``tensor``'s dims declare; :class:`ModelLoadError` for negative dims or over budget."""
    from liplt_cli.limits import element_count, format_shape, over_budget, scientific

    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"'{path}': tensor '{tensor.name}' declares a negative dimension {format_shape(dims)}")
    count = element_count(dims)
    size = count * _ITEMSIZE.get(tensor.data_type, 1)
    reason = over_budget(size, f"tensor '{tensor.name}' of shape {format_shape(dims)} ({scientific(count)} values)")
    if reason:
        raise ModelLoadError(f"'{path}': {reason}")
    return size


def _check_tensor_sizes(model, path: Path) -> None:
    """Each stored tensor holds exactly what its dims declare, within the memory budget.

    Runs before anything converts a tensor to an array, so that a few bytes declaring 10¹²
    values are refused instead of allocated.
    """
    from onnx import TensorProto

    from liplt_cli.limits import format_shape

    for tensor in _all_tensors(model):
        size = _declared_bytes(tensor, path)
        if tensor.data_location == TensorProto.EXTERNAL:
            continue  # checked against its file by _load_external_data
        itemsize = _ITEMSIZE.get(tensor.data_type)
        if itemsize is None:
            continue
        count = size // itemsize
        if tensor.HasField("raw_data") or tensor.raw_data:
            held, unit = len(tensor.raw_data), "bytes"
            want = size
        else:
            field, per = _TYPED_FIELD.get(tensor.data_type, (None, 1))
            if field is None:
                continue
            held, unit = len(getattr(tensor, field)), "values"
            want = count * per
        if held != want:
            raise ModelLoadError(
                f"'{path}': tensor '{tensor.name}' declares shape {format_shape(tensor.dims)} ({want} {unit}) "
                f"but holds {held} {unit}"
            )


def _external_entries(tensor, path: Path) -> tuple[str, int, int | None]:
    """(location, offset, length) of an external tensor; :class:`ModelLoadError` when malformed."""
    entries = {e.key: e.value for e in tensor.external_data}
    where = f"'{path}': external data of tensor '{tensor.name}'"
    location = entries.get("location", "")
    numbers: dict[str, int | None] = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        if text is None:
            numbers[key] = None
            continue
        try:
            numbers[key] = int(text)
        except ValueError:
            raise ModelLoadError(f"{where} has a non-integer {key} '{text[:40]}'") from None
        if numbers[key] < 0:  # type: ignore[operator]
            raise ModelLoadError(f"{where} has a negative {key} {numbers[key]}")
    return location, numbers["offset"] or 0, numbers["length"]


def _confined_external_file(location: str, folder: Path, where: str) -> Path:
    """The file ``location`` names, which must be a regular file inside ``folder`` (symlinks resolved).

    Refused: an empty or absolute location, any ``..`` component, a NUL byte, a symlink whose
    target leaves the folder, and anything that is not a regular file (FIFO, device, directory).
    """
    import os
    import stat as stat_module
    from pathlib import PurePosixPath, PureWindowsPath

    from liplt_cli.paths import file_kind

    if not location:
        raise ModelLoadError(f"{where} has no location")
    if "\x00" in location:
        raise ModelLoadError(f"{where} has a location with a NUL byte")
    shown = location if len(location) <= 80 else location[:80] + "…"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive:
        raise ModelLoadError(f"{where} names the absolute path '{shown}'; it must be a file beside the model")
    if ".." in PurePosixPath(location).parts or ".." in PureWindowsPath(location).parts:
        raise ModelLoadError(f"{where} names '{shown}', which uses '..'; it must be a file beside the model")
    root = folder.resolve()
    target = (folder / location).resolve()
    if target != root and root not in target.parents:
        raise ModelLoadError(f"{where} names '{shown}', which resolves outside the model's folder (to '{target}')")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise ModelLoadError(f"{where}: '{shown}' does not exist; keep the data file beside the model") from None
    except OSError as exc:
        raise ModelLoadError(f"{where}: cannot read '{shown}': {exc.strerror or exc}") from None
    if not stat_module.S_ISREG(st.st_mode):
        raise ModelLoadError(f"{where}: '{shown}' is {file_kind(st.st_mode)}, not a regular file")
    return target


def _load_external_data(model, path: Path) -> None:
    """Read tensors stored beside the file (``model.onnx.data``, as torch's dynamo exporter writes).

    Every location is confined to the model's folder (see :func:`_confined_external_file`), and
    every slice must lie inside its file and hold exactly the bytes the tensor's dims declare.
    The bytes are read by liplt itself and stored in the tensor (as ``raw_data``).
    """
    import os

    from onnx import TensorProto

    from liplt_cli.limits import over_budget

    external = [t for t in _all_tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    folder = path.parent
    total = 0
    plans = []
    for tensor in external:
        where = f"'{path}': external data of tensor '{tensor.name}'"
        location, offset, length = _external_entries(tensor, path)
        target = _confined_external_file(location, folder, where)
        size = os.stat(target).st_size
        itemsize = _ITEMSIZE.get(tensor.data_type)
        if itemsize is None:
            raise ModelLoadError(f"{where}: tensors of ONNX type {tensor.data_type} cannot be read from external data")
        want = _declared_bytes(tensor, path)
        span = want if length is None else length
        if offset + span > size:
            raise ModelLoadError(
                f"{where}: bytes {offset}…{offset + span} run past the end of '{location}' ({size} bytes; "
                f"the tensor's shape needs {want} bytes)"
            )
        if span != want:
            raise ModelLoadError(f"{where}: length {span} does not match the tensor's {want} bytes")
        total += want
        plans.append((tensor, target, offset, want))
    reason = over_budget(total, f"the external data of '{path}'")
    if reason:
        raise ModelLoadError(reason)
    for tensor, target, offset, want in plans:
        try:
            with open(target, "rb") as fh:
                fh.seek(offset)
                data = fh.read(want)
        except OSError as exc:
            raise ModelLoadError(f"'{path}': cannot read the external data of tensor '{tensor.name}': "
                                 f"{exc.strerror or exc}") from None
        if len(data) != want:
            raise ModelLoadError(f"'{path}': the external data of tensor '{tensor.name}' ended early")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT


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


def _constant_values(model) -> dict[str, "object"]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _fix_allowzero(model) -> list[str]:
    """Rewrite ``Reshape(allowzero=1)`` to 0 where the target shape has no zero entry."""
    notes = []
    constants = None
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        for attr in list(node.attribute):
            if attr.name == "allowzero" and attr.i == 1:
                if constants is None:
                    constants = _constant_values(model)
                shape = constants.get(node.input[1]) if len(node.input) > 1 else None
                if shape is not None and (shape == 0).any():
                    raise ModelLoadError(
                        f"Reshape node '{node.name}' uses allowzero=1 with a zero in its target shape "
                        f"{shape.tolist()} (an empty tensor); this is not supported"
                    )
                attr.i = 0
                notes.append(node.name)
    return notes


def _inline_constant_identities(model) -> list[str]:
    """Replace ``Identity`` nodes over initialisers (or Constant outputs) by initialisers.

    torch's TorchScript exporter deduplicates equal parameters: a second zero conv bias becomes
    ``Identity(first_bias)``; onnx2torch's Conv reads its weight and bias only from initialisers.
    Each such Identity output becomes an initialiser holding the same tensor (chains included).
    """
    from onnx import numpy_helper

    graph = model.graph
    tensors = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    tensors.setdefault(node.output[0], attr.t)
    outputs = {o.name for o in graph.output}
    inlined: list[str] = []
    changed = True
    while changed:
        changed = False
        keep = []
        for node in graph.node:
            if (node.op_type == "Identity" and node.domain in ("", "ai.onnx") and len(node.input) == 1
                    and node.input[0] in tensors and node.output[0] not in tensors and node.output[0] not in outputs):
                tensor = numpy_helper.from_array(numpy_helper.to_array(tensors[node.input[0]]), node.output[0])
                graph.initializer.append(tensor)
                tensors[node.output[0]] = tensor
                inlined.append(node.name or node.output[0])
                changed = True
            else:
                keep.append(node)
        if changed:
            del graph.node[:]
            graph.node.extend(keep)
    return inlined


def _expand_new_ops(model) -> list[str]:
    """Write Gelu-20 and Mish-18 with older ops (no opset converter goes below them).

    ``Gelu(x) = x · 0.5 · (1 + erf(x/√2))`` (``approximate="tanh"``:
    ``0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))``) and ``Mish(x) = x · tanh(softplus(x))``; the
    fx loader recognises these formulas again as one activation (:mod:`liplt_cli.load.elementwise`).
    """
    from onnx import helper, numpy_helper
    import numpy as np

    expanded: list[str] = []
    new_nodes = []
    consts: dict[str, float] = {}

    def const(value: float) -> str:
        name = f"liplt_const_{len(consts)}_{value:g}".replace(".", "_").replace("-", "m")
        consts.setdefault(name, value)
        return name

    for k, node in enumerate(model.graph.node):
        if node.op_type == "Gelu" and node.domain in ("", "ai.onnx"):
            approx = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")
            x, y, p = node.input[0], node.output[0], f"liplt_gelu{k}"
            if approx == "tanh":
                # ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
                new_nodes += [
                    helper.make_node("Mul", [x, x], [p + "_x2"], name=f"{node.name}/x2"),
                    helper.make_node("Mul", [p + "_x2", x], [p + "_x3"], name=f"{node.name}/x3"),
                    helper.make_node("Mul", [p + "_x3", const(0.044715)], [p + "_cx3"], name=f"{node.name}/cx3"),
                    helper.make_node("Add", [x, p + "_cx3"], [p + "_in"], name=f"{node.name}/inner"),
                    helper.make_node("Mul", [p + "_in", const(math.sqrt(2.0 / math.pi))], [p + "_k"], name=f"{node.name}/scale"),
                    helper.make_node("Tanh", [p + "_k"], [p + "_t"], name=f"{node.name}/tanh"),
                    helper.make_node("Add", [p + "_t", const(1.0)], [p + "_a"], name=f"{node.name}/add"),
                    helper.make_node("Mul", [x, p + "_a"], [p + "_m"], name=f"{node.name}/mul"),
                    helper.make_node("Mul", [p + "_m", const(0.5)], [y], name=f"{node.name}/half"),
                ]
                expanded.append(node.name or "Gelu")
                continue
            if approx != "none":
                new_nodes.append(node)
                continue
            new_nodes += [
                helper.make_node("Div", [x, const(math.sqrt(2.0))], [p + "_d"], name=f"{node.name}/div"),
                helper.make_node("Erf", [p + "_d"], [p + "_e"], name=f"{node.name}/erf"),
                helper.make_node("Add", [p + "_e", const(1.0)], [p + "_a"], name=f"{node.name}/add"),
                helper.make_node("Mul", [x, p + "_a"], [p + "_m"], name=f"{node.name}/mul"),
                helper.make_node("Mul", [p + "_m", const(0.5)], [y], name=f"{node.name}/half"),
            ]
            expanded.append(node.name or "Gelu")
        elif node.op_type == "Mish" and node.domain in ("", "ai.onnx"):
            x, y, p = node.input[0], node.output[0], f"liplt_mish{k}"
            new_nodes += [
                helper.make_node("Softplus", [x], [p + "_s"], name=f"{node.name}/softplus"),
                helper.make_node("Tanh", [p + "_s"], [p + "_t"], name=f"{node.name}/tanh"),
                helper.make_node("Mul", [x, p + "_t"], [y], name=f"{node.name}/mul"),
            ]
            expanded.append(node.name or "Mish")
        else:
            new_nodes.append(node)
    if expanded:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        for name, value in consts.items():
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    return expanded


def _explicit_auto_pad(model) -> list[str]:
    """Replace ``auto_pad=SAME_UPPER/SAME_LOWER`` of Conv/MaxPool/AveragePool by explicit pads.

    Along each axis the total padding is ``max((⌈n/s⌉ − 1)·s + d·(k − 1) + 1 − n, 0)``; SAME_UPPER
    puts the odd cell at the end, SAME_LOWER at the beginning (onnx2torch converts neither).
    """
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    rewritten = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
        if mode not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        dims = shapes.get(node.input[0])
        if "kernel_shape" in attrs:
            kernel = list(attrs["kernel_shape"].ints)
        elif node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            kernel = inits[node.input[1]][2:]
        else:
            continue
        if not dims or any(d is None for d in dims[2:]) or len(dims) - 2 != len(kernel):
            raise ModelLoadError(f"{node.op_type} node '{node.name}' uses auto_pad={mode} on an input of unknown shape")
        n = len(kernel)
        strides = list(attrs["strides"].ints) if "strides" in attrs else [1] * n
        dilations = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * n
        begin, end = [], []
        for size, k, st, dl in zip(dims[2:], kernel, strides, dilations):
            total = max((-(-size // st) - 1) * st + dl * (k - 1) + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else large)
            end.append(large if mode == "SAME_UPPER" else small)
        attrs["auto_pad"].s = b"NOTSET"
        if "pads" in attrs:
            del attrs["pads"].ints[:]
            attrs["pads"].ints.extend(begin + end)
        else:
            from onnx import helper

            node.attribute.append(helper.make_attribute("pads", begin + end))
        rewritten.append(node.name or node.op_type)
    return rewritten


def _graph_input(model):
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"the ONNX model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); exactly one is supported"
        )
    return inputs[0]


def _fix_input_shape(model, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The per-sample input shape (ONNX dims without the first, batch, axis)."""
    inp = _graph_input(model)
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        if input_shape is None:
            raise InputShapeError(f"the ONNX input '{inp.name}' has no shape; pass --input-shape (e.g. 1,28,28)")
        dims = [None] * (len(input_shape) + 1)
    else:
        # the batch axis may be anything (some exporters write 0 or -1 for "dynamic"); a per-sample
        # dimension that is negative or zero describes no tensor liplt can bound
        bad = [d.dim_value for d in list(tt.shape.dim)[1:] if d.HasField("dim_value") and d.dim_value <= 0]
        if bad:
            what = "a negative" if bad[0] < 0 else "an empty (zero)"
            raise InputShapeError(f"the ONNX input '{inp.name}' declares {what} dimension ({bad[0]})")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    if len(dims) < 2:
        raise InputShapeError(
            f"the ONNX input '{inp.name}' has shape {dims}: liplt needs a batch axis first (e.g. [1, 784])"
        )
    per_sample = dims[1:]
    if input_shape is None:
        if any(d is None for d in per_sample):
            shown = ["?" if d is None else d for d in dims]
            raise InputShapeError(
                f"the ONNX input '{inp.name}' has dynamic dimensions {shown}; pass --input-shape "
                f"with the {len(per_sample)} per-sample dimensions (e.g. 1,28,28)"
            )
        shape = tuple(int(d) for d in per_sample)  # type: ignore[arg-type]
    else:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != len(per_sample):
            raise InputShapeError(
                f"--input-shape {list(shape)} has {len(shape)} dimensions; the ONNX input '{inp.name}' "
                f"has {len(per_sample)} per-sample dimensions (shape {['?' if d is None else d for d in dims]}, batch first)"
            )
        for given, declared in zip(shape, per_sample):
            if declared is not None and declared != given:
                raise InputShapeError(
                    f"--input-shape {list(shape)} contradicts the ONNX input shape {['?' if d is None else d for d in dims]}"
                )
    from liplt_cli.limits import shape_over_budget

    reason = shape_over_budget(shape, "one input sample")
    if reason:
        raise InputShapeError(f"the ONNX input '{inp.name}': {reason}")
    # Write the shape into the model so that shape inference (and onnx2torch) sees it.
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
        if 0 in known and elem_type in _FLOAT_TYPES:  # (an empty integer tensor can be a legitimate shape)
            raise ModelLoadError(f"'{path}': tensor '{vi.name}' is empty (shape {shown}); liplt needs non-empty tensors")
        itemsize = _ITEMSIZE.get(elem_type, 4)
        reason = shape_over_budget(known, f"tensor '{vi.name}'", itemsize)
        if reason:
            raise ModelLoadError(f"'{path}': {reason}")


def _name_unsupported(model, exc: Exception) -> UnsupportedOpError | None:
    """After onnx2torch failed: find which nodes it cannot convert (to name them)."""
    from onnx2torch.node_converters.registry import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    from liplt_cli.load.fx import SUPPORTED_OPS

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
    return UnsupportedOpError(problems, SUPPORTED_OPS) if problems else None


def load_onnx(path: Path, data: bytes, input_shape: tuple[int, ...] | None = None) -> LayerGraph:
    """Load the ONNX model in ``data`` (read from ``path``) as a layer graph (see module docstring)."""
    import onnx

    from liplt_cli.load.fx import graph_from_module

    model = _parse(data, path)
    _check_tensor_sizes(model, path)
    _load_external_data(model, path)
    _check(model, path)
    notes: list[str] = []
    opset = _opset(model)
    _inline_constant_identities(model)  # an exact rewrite, no note
    rewritten = _fix_allowzero(model)
    if rewritten:
        notes.append(f"Reshape allowzero=1 rewritten to 0 (no zero in the target shape): {', '.join(rewritten)}")
    if opset > MAX_OPSET:
        expanded = _expand_new_ops(model)
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
    padded = _explicit_auto_pad(model)
    if padded:
        notes.append(f"auto_pad SAME written as explicit pads: {', '.join(padded)}")

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
    graph = graph_from_module(gm, shape, fuse=True, onnx_ops=onnx_ops)
    return LayerGraph(graph.nodes, graph.output, tuple(notes) + graph.notes) if notes else graph
