"""The layer graph: the one representation between loaders and engines.

A :class:`LayerGraph` is an immutable DAG of nodes (see :mod:`liplt_cli.graph.nodes`) in
topological order, with one input node first and one output node.  It evaluates the model
(:meth:`LayerGraph.evaluate`) and checks itself (:meth:`LayerGraph.validate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from liplt_cli.errors import GraphError
from liplt_cli.graph.linear_ops import Affine, Shape
from liplt_cli.graph.nodes import (
    ActivationNode,
    BlockNode,
    ConcatNode,
    InputNode,
    LinearNode,
    Node,
    SumNode,
    node_kind,
)


@dataclass(frozen=True, eq=False)
class LayerGraph:
    """A classifier as a DAG of linear, sum, concat, activation and Lipschitz-block nodes.

    ``nodes`` are in topological order; ``nodes[0]`` is the :class:`InputNode`; ``output``
    names the node whose value is the logit vector.  ``notes`` records what the loader did that
    a user should know (e.g. a stripped final Softmax).
    """

    nodes: tuple[Node, ...]
    output: str
    notes: tuple[str, ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.name: i for i, n in enumerate(self.nodes)})

    # ------------------------------------------------------------------ structure
    def node(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    def position(self, name: str) -> int:
        return self._index[name]

    @property
    def input(self) -> InputNode:
        return self.nodes[0]  # type: ignore[return-value]

    @property
    def input_shape(self) -> Shape:
        return tuple(self.nodes[0].out_shape)

    @property
    def output_shape(self) -> Shape:
        return tuple(self.node(self.output).out_shape)

    @property
    def num_classes(self) -> int:
        return math.prod(self.output_shape)

    def users(self) -> dict[str, list[str]]:
        """For each node, the names of the nodes that read it."""
        result: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                result[i].append(n.name)
        return result

    def last_use(self) -> dict[str, int]:
        """Position of the last node reading each node (the output is read at the end)."""
        last = {n.name: i for i, n in enumerate(self.nodes)}
        for i, n in enumerate(self.nodes):
            for inp in n.inputs:
                last[inp] = i
        last[self.output] = len(self.nodes)
        return last

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every weight tensor of the graph, named ``node.tensor``."""
        for n in self.nodes:
            if isinstance(n, LinearNode):
                for key, t in n.op.tensors().items():
                    yield f"{n.name}.{key}", t

    def parameter_count(self) -> int:
        return sum(t.numel() for _, t in self.tensors())

    @property
    def dtype(self) -> torch.dtype:
        for _, t in self.tensors():
            return t.dtype
        return torch.float32

    @property
    def device(self) -> torch.device:
        for _, t in self.tensors():
            return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on a batch ``x`` of shape ``(B, *input_shape)``; returns the logits."""
        if tuple(x.shape[1:]) != self.input_shape:
            from liplt_cli.errors import InputShapeError

            raise InputShapeError(
                f"input has per-sample shape {list(x.shape[1:])}, the model expects {list(self.input_shape)}"
            )
        env: dict[str, torch.Tensor] = {}
        last = self.last_use()
        for i, node in enumerate(self.nodes):
            try:
                env[node.name] = _evaluate_node(node, env, x)
            except GraphError:
                raise
            except Exception as exc:  # re-raised with the node's name, like fx's Interpreter
                raise GraphError(f"while evaluating node '{node.name}' ({node_kind(node)}): {exc}") from exc
            for inp in set(node.inputs):
                if last[inp] == i:
                    del env[inp]
        return env[self.output]

    __call__ = evaluate

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check topological order, shapes of every node against a probe, and finite weights."""
        if not self.nodes or not isinstance(self.nodes[0], InputNode):
            raise GraphError("the first node of a layer graph must be its input")
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise GraphError(f"duplicate node name '{n.name}'")
            for inp in n.inputs:
                if inp not in seen:
                    raise GraphError(f"node '{n.name}' reads '{inp}', which is not defined before it")
            if isinstance(n, InputNode) and n is not self.nodes[0]:
                raise GraphError(f"node '{n.name}' is a second input; only one input is supported")
            seen.add(n.name)
        if self.output not in seen:
            raise GraphError(f"output node '{self.output}' is not in the graph")
        for name, t in self.tensors():
            if not torch.isfinite(t).all():
                raise GraphError(f"weight '{name}' contains NaN or Inf values")
        probe = torch.zeros(1, *self.input_shape, dtype=self.dtype, device=self.device)
        env: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for node in self.nodes:
                try:
                    value = _evaluate_node(node, env, probe)
                except Exception as exc:
                    raise GraphError(f"node '{node.name}' ({node_kind(node)}) cannot run: {exc}") from exc
                if tuple(value.shape[1:]) != tuple(node.out_shape):
                    raise GraphError(
                        f"node '{node.name}' produces shape {list(value.shape[1:])}, "
                        f"declared {list(node.out_shape)}"
                    )
                env[node.name] = value

    # ------------------------------------------------------------------ conversions
    def map_tensors(self, fn) -> "LayerGraph":
        """A new graph whose weight tensors are ``fn(tensor)`` (e.g. dtype or device changes)."""
        new_nodes = []
        for n in self.nodes:
            if isinstance(n, LinearNode):
                changes = {k: fn(t) for k, t in n.op.tensors().items()}
                new_nodes.append(replace(n, op=replace(n.op, **changes)))
            else:
                new_nodes.append(n)
        return LayerGraph(tuple(new_nodes), self.output, self.notes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LayerGraph":
        return self.map_tensors(lambda t: t.to(device=device, dtype=dtype))

    def detached(self) -> "LayerGraph":
        return self.map_tensors(lambda t: t.detach())

    def with_notes(self, *notes: str) -> "LayerGraph":
        return LayerGraph(self.nodes, self.output, self.notes + tuple(notes))

    def __str__(self) -> str:
        lines = [f"LayerGraph(input {list(self.input_shape)} → output '{self.output}' {list(self.output_shape)})"]
        for n in self.nodes:
            lines.append(f"  {n.name:<24} {node_kind(n):<10} {describe_node(n):<40} {list(n.out_shape)} ← {', '.join(n.inputs)}")
        return "\n".join(lines)


def describe_node(node: Node) -> str:
    """One-line human description of a node (used by ``liplt inspect``)."""
    if isinstance(node, InputNode):
        return "input"
    if isinstance(node, LinearNode):
        return node.op.describe()
    if isinstance(node, SumNode):
        if node.coefficients and any(c != 1 for c in node.coefficients):
            return "Sum " + " ".join(f"{c:+g}·{i}" for c, i in zip(node.coefficients, node.inputs))
        return f"Add ({len(node.inputs)} inputs)"
    if isinstance(node, ConcatNode):
        return f"Concat dim {node.dim}"
    if isinstance(node, ActivationNode):
        a = node.activation
        return f"{a.describe()} slopes [{a.alpha:.4g}, {a.beta:.4g}]"
    if isinstance(node, BlockNode):
        return node.block.describe()
    raise TypeError(type(node))


def _evaluate_node(node: Node, env: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if isinstance(node, InputNode):
        return x
    args = [env[i] for i in node.inputs]
    if isinstance(node, LinearNode):
        return node.op.forward(args[0])
    if isinstance(node, SumNode):
        out = node.coefficient(0) * args[0] if node.coefficient(0) != 1 else args[0]
        for k, a in enumerate(args[1:], start=1):
            c = node.coefficient(k)
            out = out + (a if c == 1 else c * a)
        return out
    if isinstance(node, ConcatNode):
        return torch.cat(args, dim=node.dim + 1)
    if isinstance(node, ActivationNode):
        return node.activation(args[0])
    if isinstance(node, BlockNode):
        return node.block(args[0])
    raise TypeError(f"unknown node type {type(node).__name__}")


def prepend_normalization(graph: LayerGraph, mean: list[float], std: list[float]) -> LayerGraph:
    """Prepend ``x ↦ (x - mean) / std`` (per channel) so that ε is in raw-data units.

    The new first linear node is an :class:`Affine` with scale ``1/std`` (its norm
    ``max 1/std_c`` enters every Lipschitz bound) and shift ``-mean/std``.
    """
    shape = graph.input_shape
    channels = shape[0] if len(shape) > 1 else 1
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise GraphError(
            f"--mean/--std need 1 or {channels} values (one per channel of input {list(shape)})"
        )
    if any(s == 0 for s in std):
        raise GraphError("--std values must be non-zero")
    view = (-1,) + (1,) * (len(shape) - 1) if len(mean) > 1 or len(std) > 1 else (1,) * len(shape)
    m = torch.tensor(mean, dtype=graph.dtype, device=graph.device).reshape(view)
    s = torch.tensor(std, dtype=graph.dtype, device=graph.device).reshape(view)
    if len(mean) != len(std):
        m, s = torch.broadcast_tensors(m, s)
    old_input = graph.input
    new_input = InputNode(old_input.name, old_input.out_shape)
    norm = LinearNode("input_normalization", (old_input.name,), Affine(1.0 / s, -m / s, shape, "normalize (x-mean)/std"), source="--mean/--std")
    rest = []
    for n in graph.nodes[1:]:
        inputs = tuple(norm.name if i == old_input.name else i for i in n.inputs)
        rest.append(replace(n, inputs=inputs))
    return LayerGraph((new_input, norm, *rest), graph.output, graph.notes + (f"prepended input normalisation mean={mean} std={std}",))
