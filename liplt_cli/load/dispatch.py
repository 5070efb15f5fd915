"""One fx node with an input-dependent argument → the registered handler's layer-graph nodes.

Shape queries (``x.size()``, ``getattr(x, "shape")``, ONNX ``Shape``) give constants computed on
the example input.  An ``nn.Sequential`` called as one module (onnx2torch wraps asymmetric
padding + conv this way) is converted child by child.  Anything else goes to the handler
registered for the node's module type, function or method (:mod:`liplt_cli.load.registry`);
an op without one raises :class:`~liplt_cli.load.values.Unsupported`.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

import liplt_cli.load.ops  # noqa: F401  (imports every handler family, which fills the registry)
from liplt_cli.load.builder import GraphBuilder
from liplt_cli.load.fxnodes import FxNodes
from liplt_cli.load.ops.call import Call
from liplt_cli.load.registry import REGISTRY, Handler
from liplt_cli.load.values import Sym, Unsupported

__all__ = ["convert"]

_SHAPE_QUERY_METHODS = {"size", "dim", "numel", "ndimension", "nelement", "get_device"}


def _is_shape_query(fxn: FxNodes, node: fx.Node) -> bool:
    if node.op == "call_function" and node.target is getattr:
        return True
    if node.op == "call_method" and node.target in _SHAPE_QUERY_METHODS:
        return True
    mod = fxn.module(node)
    return mod is not None and type(mod).__name__ == "OnnxShape"


def _sequential(fxn: FxNodes, builder: GraphBuilder, node: fx.Node, seq: nn.Sequential, args: tuple) -> Sym:
    """A container called as one module: each child in turn, by its own handler."""
    if len(args) != 1 or not isinstance(args[0], Sym):
        raise Unsupported("Sequential", "called with several inputs")
    value: Any = args[0]
    for child_name, child in seq.named_children():
        with torch.no_grad():
            child_out = child(value.value)
        registered = REGISTRY.for_module(child)
        label = f"{type(child).__name__}"
        if registered is None:
            raise Unsupported(label)
        call = Call(builder, f"{node.name}_{child_name}", f"{label} '{node.target}.{child_name}'", label, (value,), {}, child_out, child)
        value = registered.handler(call)
        if not value.stripped:
            value = Sym(value.name, child_out, None)
    return value


def _handler(fxn: FxNodes, node: fx.Node, mod: nn.Module | None) -> Handler:
    if mod is not None:
        registered = REGISTRY.for_module(mod)
    elif node.op == "call_function":
        registered = REGISTRY.for_function(node.target)
    else:
        registered = REGISTRY.for_method(str(node.target))
    if registered is None:
        if node.op == "call_function" and node.target is operator.getitem:
            raise Unsupported("indexing/slicing", "slicing an input-dependent tensor is not supported")
        raise Unsupported(fxn.describe(node))
    return registered.handler


def convert(fxn: FxNodes, builder: GraphBuilder, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> Any:
    """Map one fx node with at least one symbolic argument (see module docstring)."""
    if _is_shape_query(fxn, node):
        return out
    op = fxn.describe(node)
    if node.op == "call_function" and node.target is operator.getitem and not isinstance(args[0], Sym):
        raise Unsupported(op, "indexing into a value that depends on the input")
    mod = fxn.module(node)
    if mod is not None and type(mod) is nn.Sequential:
        sym = _sequential(fxn, builder, node, mod, args)
        return sym if sym.stripped else Sym(sym.name, out, node.name)
    handler = _handler(fxn, node, mod)
    if not isinstance(out, torch.Tensor):
        raise Unsupported(op, "returns several values")
    sym = handler(Call(builder, node.name, fxn.source(node), op, tuple(args), dict(kwargs), out, mod))
    if sym.stripped:
        return sym
    return Sym(sym.name, out, node.name)
