"""The fx walk: every fx node of a traced module, in order, becomes a constant or layer-graph nodes.

For each fx node the walk keeps either a constant (parameters, buffers, ONNX initialisers and
everything computed only from them: constant folding) or a :class:`~liplt_cli.load.values.Sym`.
A node with a symbolic argument is first offered to the elementwise reader
(:mod:`liplt_cli.load.elementwise`, which may make it part of a pending elementwise formula);
otherwise pending arguments are turned into activations and the node goes to its registered
handler (:mod:`liplt_cli.load.dispatch`).  Every unsupported node is collected, and all are
reported together in one :class:`~liplt_cli.errors.UnsupportedOpError`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import fx

from liplt_cli.errors import ModelLoadError, UnsupportedOpError
from liplt_cli.load import elementwise
from liplt_cli.load.builder import GraphBuilder
from liplt_cli.load.dispatch import convert
from liplt_cli.load.fxnodes import FxNodes
from liplt_cli.load.supported import supported_ops
from liplt_cli.load.values import Sym, Unsupported, concrete, flatten

__all__ = ["FxWalk"]


class FxWalk:
    """One walk over ``gm`` for per-sample input shape ``input_shape`` on input ``example``.

    ``shared`` are the live module's own parameters and buffers when the graph shares them
    (see :class:`~liplt_cli.load.builder.GraphBuilder`); ``onnx_ops`` names the ONNX op type of
    each onnx2torch module (for messages).
    """

    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...], example: torch.Tensor,
                 onnx_ops: Mapping[str, str] | None = None, shared: Iterable[torch.Tensor] = ()):
        self.fxn = FxNodes(gm, onnx_ops)
        self.input_shape = tuple(input_shape)
        self.example = example
        self.builder = GraphBuilder(example, shared)
        self.elementwise = elementwise.ElementwiseReader(self.builder, self.fxn)
        self.problems: list[tuple[str, str]] = []
        self._placeholders = 0

    def run(self) -> Sym:
        """Walk every node; the symbolic value of the module's single output."""
        env: dict[fx.Node, Any] = {}
        output: Any = None
        for node in self.fxn.gm.graph.nodes:
            if node.op == "placeholder":
                env[node] = self._input(node)
            elif node.op == "get_attr":
                env[node] = self.fxn.attr(str(node.target))
            elif node.op in ("call_module", "call_function", "call_method"):
                env[node] = self._call(node, env)
            elif node.op == "output":
                output = self._output(node, env)
        if self.problems:
            raise UnsupportedOpError(self.problems, supported_ops())
        return _single_output(output)

    def _input(self, node: fx.Node) -> Any:
        self._placeholders += 1
        if self._placeholders > 1:
            if node.args:  # has a default value
                return node.args[0]
            raise ModelLoadError(f"the model has more than one input ('{node.name}'); only one input is supported")
        return self.builder.input(self.input_shape, self.example, node.name)

    def _call(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        syms = [v for v in flatten([args, kwargs]) if isinstance(v, Sym)]
        if not syms:
            try:
                return self.fxn.execute(node, args, kwargs)
            except Exception as exc:  # a constant subgraph that cannot run
                raise ModelLoadError(
                    f"constant node '{node.name}' ({self.fxn.describe(node)}) cannot be computed: {exc}"
                ) from exc
        out = self._example_output(node, args, kwargs)
        try:
            return self._symbolic(node, args, kwargs, syms, out)
        except Unsupported as exc:
            self._problem(node, exc)
            return _stand_in(node, out)

    def _example_output(self, node: fx.Node, args: Any, kwargs: Any) -> Any:
        with torch.no_grad():
            try:
                return self.fxn.execute(node, concrete(args), concrete(kwargs))
            except Exception as exc:
                raise ModelLoadError(
                    f"node '{node.name}' ({self.fxn.describe(node)}) fails on an input of shape "
                    f"{[self.example.shape[0], *self.input_shape]}: {exc}"
                ) from exc

    def _symbolic(self, node: fx.Node, args: Any, kwargs: Any, syms: list[Sym], out: Any) -> Any:
        """The value of a node with symbolic arguments (raises :class:`Unsupported`)."""
        stripped = [s for s in syms if s.stripped]
        if stripped:
            keep = stripped[0]
            if len(syms) == 1 and isinstance(out, torch.Tensor) and out.shape == keep.value.shape \
                    and torch.equal(out, keep.value):
                return keep  # Identity / Dropout / Cast after the final Softmax
            raise Unsupported(keep.stripped or "Softmax", "a Softmax is only supported as the last layer")
        result = elementwise.extend(self.elementwise, node, args, kwargs, out)
        if result is None:
            try:
                args = elementwise.materialize_all(self.elementwise, args)
                kwargs = elementwise.materialize_all(self.elementwise, kwargs)
            except Unsupported as exc:  # report it, then look for this node's own problems
                self._problem(node, exc)
                args = elementwise.materialize_all(self.elementwise, args)
                kwargs = elementwise.materialize_all(self.elementwise, kwargs)
            result = convert(self.fxn, self.builder, node, args, kwargs, out)
        if isinstance(result, Sym):
            self.builder.record(result)
        return result

    def _output(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        output = fx.node.map_arg(node.args[0], lambda n: env[n])
        try:
            return elementwise.materialize_all(self.elementwise, output)
        except Unsupported as exc:
            self._problem(node, exc)
            return output

    def _problem(self, node: fx.Node, exc: Unsupported) -> None:
        op = exc.op if exc.op else self.fxn.describe(node)
        label = exc.node or self.fxn.label(node)
        self.problems.append((label, f"{op}{' — ' + exc.why if exc.why else ''}"))


def _stand_in(node: fx.Node, out: Any) -> Any:
    """After an unsupported node: a stand-in value so the walk can report later problems too."""
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        return Sym(f"<unsupported {node.name}>", out, None)
    if isinstance(out, (list, tuple)):
        return type(out)(_stand_in(node, o) for o in out) if not hasattr(out, "_fields") else out
    return out


def _single_output(output: Any) -> Sym:
    values = flatten([output])
    syms = [v for v in values if isinstance(v, Sym)]
    if len(values) != 1:
        raise ModelLoadError(f"the model has {len(values)} outputs; only a single logit tensor is supported")
    if not syms:
        raise ModelLoadError("the model's output does not depend on its input")
    return syms[0]
