"""The fx graph being read: its modules, how to run one of its nodes, and how nodes are named.

Error messages name an fx node by its op in user terms (the ONNX op type when the module came
from an ONNX file, else the torch module class, function or Tensor method) and by the ONNX node
name when there is one.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import fx, nn

__all__ = ["FxNodes"]


class FxNodes:
    """``gm``'s modules and node names (``onnx_ops``: ONNX op type of each onnx2torch module)."""

    def __init__(self, gm: fx.GraphModule, onnx_ops: Mapping[str, str] | None = None):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.onnx_ops = dict(onnx_ops or {})

    def module(self, node: fx.Node) -> nn.Module | None:
        """The module a ``call_module`` node calls (``None`` for other nodes)."""
        return self.modules.get(str(node.target)) if node.op == "call_module" else None

    def attr(self, target: str) -> Any:
        """The value of a ``get_attr`` target (a parameter, buffer or constant of ``gm``)."""
        obj: Any = self.gm
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj

    def execute(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        """Run ``node``'s op on concrete ``args``/``kwargs``."""
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, node.target)(*rest, **kwargs)  # type: ignore[arg-type]
        raise AssertionError(node.op)

    def describe(self, node: fx.Node) -> str:
        """The op of an fx node in user terms (ONNX op type when it came from ONNX)."""
        if node.op == "call_module":
            target = str(node.target)
            if target in self.onnx_ops:
                return self.onnx_ops[target]
            return type(self.modules[target]).__name__
        if node.op == "call_function":
            fn = node.target
            return getattr(fn, "__name__", str(fn))
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        return node.op

    def source(self, node: fx.Node) -> str:
        """The op and its name, e.g. ``Conv2d 'features.0'`` (kept as each node's ``source``)."""
        op = self.describe(node)
        if node.op == "call_module":
            return f"{op} '{node.target}'"
        return f"{op} '{node.name}'"

    def label(self, node: fx.Node) -> str:
        """The name errors give ``node``: the ONNX node's name when it came from ONNX."""
        if node.op == "call_module" and str(node.target) in self.onnx_ops:
            return str(node.target)
        return node.name
