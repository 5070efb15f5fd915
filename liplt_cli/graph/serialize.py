"""JSON description of a layer graph, and the graph rebuilt from it plus its tensors.

The description (stored in liplt safetensors files, see :mod:`liplt_cli.load.safetensors`) is::

    {"format": "liplt-graph", "version": 1, "output": NAME, "notes": [...],
     "nodes": [
       {"name": "input", "kind": "input", "shape": [1, 28, 28]},
       {"name": N, "kind": "linear", "inputs": [..], "source": "...",
        "op": {"kind": "dense"|"conv"|"conv_transpose"|"affine"|"reshape"|"permute"|"pad",
               "in_shape": [..], "out_shape": [..], <attributes>,
               "tensors": {"weight": KEY, "bias": KEY}}},
       {"name": N, "kind": "sum", "inputs": [..], "shape": [..], "coefficients": [..]},
       {"name": N, "kind": "concat", "inputs": [..], "shape": [..], "dim": D},
       {"name": N, "kind": "activation", "inputs": [..], "shape": [..],
        "activation": {"key": "leaky_relu", "name": "LeakyReLU", "params": {"negative_slope": 0.1},
                       "alpha": 0.1, "beta": 1.0}},
       {"name": N, "kind": "block", "inputs": [..], "shape": [..],
        "block": {"kind": "maxpool", "kernel": [..], "stride": [..], "padding": [..],
                  "dilation": [..], "ceil_mode": false}}]}

Tensor values are not in the description; ``tensors`` maps an op's field to a key of the tensor
file.  Non-finite numbers (e.g. a one-sided Clip's ``max``) are written as ``"inf"``/``"-inf"``.
Activation slopes are recomputed on load by :func:`~liplt_cli.graph.make_activation`; the
stored ``alpha``/``beta`` are for readers of the file.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from liplt_cli.errors import GraphError
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.linear_ops import Affine, Conv, ConvTranspose, Dense, Pad, Permute, Reshape
from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, InputNode, LinearNode, MaxPool, Node, SumNode
from liplt_cli.graph.slopes import make_activation
from liplt_cli.graph.walk import NodeRecords

FORMAT = "liplt-graph"
VERSION = 1


def _num(v: float) -> float | str:
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


class _Describe(NodeRecords):
    """One JSON record per node (see the module docstring)."""

    def __init__(self, graph: LayerGraph, key_of: Callable[[str, str, torch.Tensor], str]) -> None:
        super().__init__(graph)
        self.key_of = key_of

    @staticmethod
    def _common(n: Node, kind: str) -> dict[str, Any]:
        return {"name": n.name, "kind": kind, "inputs": list(n.inputs), "shape": list(n.out_shape)}

    def input(self, n: InputNode, *_: Any) -> dict[str, Any]:
        return {"name": n.name, "kind": "input", "shape": list(n.out_shape)}

    def linear(self, n: LinearNode, *_: Any) -> dict[str, Any]:
        op = n.op
        desc: dict[str, Any] = {"kind": op.kind, "in_shape": list(op.in_shape), "out_shape": list(op.out_shape)}
        desc.update(op.attributes())
        desc["tensors"] = {field: self.key_of(n.name, field, t) for field, t in op.tensors().items()}
        return {"name": n.name, "kind": "linear", "inputs": list(n.inputs), "source": n.source, "op": desc}

    def sum(self, n: SumNode, *_: Any) -> dict[str, Any]:
        return self._common(n, "sum") | {"coefficients": [float(c) for c in n.coefficients], "source": n.source}

    def concat(self, n: ConcatNode, *_: Any) -> dict[str, Any]:
        return self._common(n, "concat") | {"dim": int(n.dim), "source": n.source}

    def activation(self, n: ActivationNode, *_: Any) -> dict[str, Any]:
        a = n.activation
        if a.key == "derived":
            raise GraphError(
                f"node '{n.name}' holds an activation derived from an elementwise formula ({a.name}); "
                "it has no activation key, so the graph cannot be stored in a liplt description"
            )
        activation = {"key": a.key, "name": a.name, "params": {k: _num(v) for k, v in a.params},
                      "alpha": _num(a.alpha), "beta": _num(a.beta)}
        return self._common(n, "activation") | {"activation": activation, "source": n.source}

    def block(self, n: BlockNode, *_: Any) -> dict[str, Any]:
        return self._common(n, "block") | {"block": {"kind": n.block.kind, **n.block.attributes()}, "source": n.source}


def graph_to_dict(graph: LayerGraph, tensor_key: Callable[[str, str, torch.Tensor], str] | None = None) -> dict[str, Any]:
    """Describe ``graph``; ``tensor_key(node, field, tensor)`` names each tensor (default ``node.field``)."""
    key_of = tensor_key or (lambda node, field, t: f"{node}.{field}")
    nodes = _Describe(graph, key_of).run().records
    return {"format": FORMAT, "version": VERSION, "output": graph.output, "notes": list(graph.notes), "nodes": nodes}


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in v)


def _dims(v: Any) -> tuple[int, ...]:
    """A tensor shape: positive integers whose float32 tensor fits the memory budget."""
    from liplt_cli.limits import format_shape, shape_over_budget

    if not isinstance(v, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool) for s in v):
        raise GraphError(f"a tensor shape must be a list of integers, got {str(v)[:60]}")
    dims = tuple(v)
    if any(s <= 0 for s in dims):
        raise GraphError(f"tensor shape {format_shape(dims)} has a dimension that is not positive")
    reason = shape_over_budget(dims, "a tensor")
    if reason:
        raise GraphError(reason)
    return dims


def _op_from_dict(d: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
    keys = d.get("tensors", {})

    def t(field: str, required: bool = True) -> torch.Tensor | None:
        if field not in keys:
            if required:
                raise GraphError(f"the graph description lacks tensor '{field}' of a {d['kind']} op")
            return None
        key = keys[field]
        if not isinstance(key, str) or key not in tensors:
            raise GraphError(f"tensor '{str(key)[:80]}' named in the graph description is not in the file")
        tensor = tensors[key]
        if not tensor.is_floating_point():
            raise GraphError(f"tensor '{key}' ({field} of a {kind} op) holds {tensor.dtype}; weights must be floating point")
        if tensor.numel() == 0:
            raise GraphError(f"tensor '{key}' ({field} of a {kind} op) is empty (shape {list(tensor.shape)})")
        return tensor

    kind = d["kind"]
    in_shape = _dims(d["in_shape"])
    if kind == "dense":
        return Dense(t("weight"), t("bias", False), in_shape, _dims(d["out_shape"]))
    if kind == "conv":
        return Conv(t("weight"), t("bias", False), _shape(d["stride"]), _shape(d["padding"]), _shape(d["dilation"]),
                    int(d["groups"]), in_shape, _dims(d["out_shape"]))
    if kind == "conv_transpose":
        return ConvTranspose(t("weight"), t("bias", False), _shape(d["stride"]), _shape(d["padding"]),
                             _shape(d["output_padding"]), _shape(d["dilation"]), int(d["groups"]), in_shape,
                             _dims(d["out_shape"]))
    if kind == "affine":
        return Affine(t("scale"), t("shift", False), in_shape, str(d.get("label", "affine")))
    if kind == "reshape":
        return Reshape(in_shape, _dims(d["out_shape"]))
    if kind == "permute":
        return Permute(_shape(d["perm"]), in_shape)
    if kind == "pad":
        return Pad(_shape(d["pads"]), in_shape)
    raise GraphError(f"unknown linear op kind '{kind}' in the graph description")


def graph_from_dict(desc: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> LayerGraph:
    """Rebuild the layer graph described by ``desc`` (see module docstring) over ``tensors``.

    A description that is malformed in any way (wrong types, missing keys, shapes that are not
    positive or exceed the memory budget, activation parameters without a sound slope bound,
    weights that are not non-empty floating-point tensors) raises :class:`GraphError`.
    """
    if not isinstance(desc, Mapping) or desc.get("format") != FORMAT:
        raise GraphError("not a liplt layer-graph description")
    nodes: list[Node] = []
    try:
        if int(desc.get("version", 0)) > VERSION:
            raise GraphError(f"layer-graph description version {desc.get('version')} is newer than this liplt ({VERSION})")
        if not isinstance(desc["nodes"], list):
            raise GraphError("malformed layer-graph description: 'nodes' is not a list")
        for d in desc["nodes"]:
            if not isinstance(d, Mapping):
                raise GraphError(f"malformed layer-graph description: a node is {type(d).__name__}, not an object")
            kind, name = d["kind"], str(d["name"])
            inputs = tuple(str(i) for i in d.get("inputs", ()))
            source = str(d.get("source", ""))
            if kind == "input":
                nodes.append(InputNode(name, _dims(d["shape"])))
            elif kind == "linear":
                nodes.append(LinearNode(name, inputs, _op_from_dict(d["op"], tensors), source=source))
            elif kind == "sum":
                nodes.append(SumNode(name, inputs, _dims(d["shape"]), tuple(float(c) for c in d.get("coefficients", ())), source=source))
            elif kind == "concat":
                nodes.append(ConcatNode(name, inputs, _dims(d["shape"]), int(d["dim"]), source=source))
            elif kind == "activation":
                a = d["activation"]
                params = {str(k): float(v) for k, v in a.get("params", {}).items()}
                try:
                    activation = make_activation(str(a["key"]), **params)
                except ValueError as exc:
                    raise GraphError(f"node '{name}': {exc}") from None
                nodes.append(ActivationNode(name, inputs, _dims(d["shape"]), activation, source=source))
            elif kind == "block":
                b = d["block"]
                if b.get("kind") != "maxpool":
                    raise GraphError(f"unknown block kind '{b.get('kind')}' in the graph description")
                block = MaxPool(_shape(b["kernel"]), _shape(b["stride"]), _shape(b["padding"]), _shape(b["dilation"]),
                                bool(b.get("ceil_mode", False)))
                nodes.append(BlockNode(name, inputs, _dims(d["shape"]), block, source=source))
            else:
                raise GraphError(f"unknown node kind '{str(kind)[:40]}' in the graph description")
        output = desc["output"]
        if not isinstance(output, str):
            raise GraphError("malformed layer-graph description: 'output' is not a node name")
        notes = tuple(str(n) for n in desc.get("notes", ()))
    except GraphError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise GraphError(f"malformed layer-graph description: {type(exc).__name__}: {str(exc)[:200]}") from None
    return LayerGraph(tuple(nodes), output, notes)
