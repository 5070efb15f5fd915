"""Rewrites of an ONNX graph before onnx2torch, each exact (each returns what it rewrote).

* ``Reshape`` with ``allowzero=1`` (torch's dynamo exporter) becomes ``allowzero=0`` when its
  target shape has no zero entry -- both then mean the same -- else it is an error;
* ``Identity`` nodes over initialisers become initialisers (TorchScript writes a second equal
  bias that way, and onnx2torch reads Conv weights only from initialisers);
* Gelu-20 and Mish-18 are written with older ops before the opset is converted down;
* ``auto_pad=SAME_*`` becomes explicit pads (onnx2torch converts neither SAME mode).
"""

from __future__ import annotations

import math
from typing import Callable

from liplt_cli.errors import ModelLoadError

__all__ = ["expand_new_ops", "explicit_auto_pad", "fix_allowzero", "inline_constant_identities"]


def _constant_values(model) -> dict[str, "object"]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def fix_allowzero(model) -> list[str]:
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


def inline_constant_identities(model) -> list[str]:
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


def _gelu_tanh_nodes(helper, node, p: str, const: Callable[[float], str]) -> list:
    """½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    x, y = node.input[0], node.output[0]
    return [
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


def _gelu_erf_nodes(helper, node, p: str, const: Callable[[float], str]) -> list:
    """x · 0.5 · (1 + erf(x/√2))."""
    x, y = node.input[0], node.output[0]
    return [
        helper.make_node("Div", [x, const(math.sqrt(2.0))], [p + "_d"], name=f"{node.name}/div"),
        helper.make_node("Erf", [p + "_d"], [p + "_e"], name=f"{node.name}/erf"),
        helper.make_node("Add", [p + "_e", const(1.0)], [p + "_a"], name=f"{node.name}/add"),
        helper.make_node("Mul", [x, p + "_a"], [p + "_m"], name=f"{node.name}/mul"),
        helper.make_node("Mul", [p + "_m", const(0.5)], [y], name=f"{node.name}/half"),
    ]


def _mish_nodes(helper, node, p: str) -> list:
    """x · tanh(softplus(x))."""
    x, y = node.input[0], node.output[0]
    return [
        helper.make_node("Softplus", [x], [p + "_s"], name=f"{node.name}/softplus"),
        helper.make_node("Tanh", [p + "_s"], [p + "_t"], name=f"{node.name}/tanh"),
        helper.make_node("Mul", [x, p + "_t"], [y], name=f"{node.name}/mul"),
    ]


def _expansion(helper, k: int, node, const: Callable[[float], str]) -> list | None:
    """The older ops for the ``k``-th node when it is a Gelu or Mish to expand, else ``None``."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Gelu":
        approx = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")
        if approx == "tanh":
            return _gelu_tanh_nodes(helper, node, f"liplt_gelu{k}", const)
        return _gelu_erf_nodes(helper, node, f"liplt_gelu{k}", const) if approx == "none" else None
    if node.op_type == "Mish":
        return _mish_nodes(helper, node, f"liplt_mish{k}")
    return None


def expand_new_ops(model) -> list[str]:
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
        nodes = _expansion(helper, k, node, const)
        if nodes is None:
            new_nodes.append(node)
        else:
            new_nodes += nodes
            expanded.append(node.name or node.op_type)
    if expanded:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        for name, value in consts.items():
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    return expanded


def explicit_auto_pad(model) -> list[str]:
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
