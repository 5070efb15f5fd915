"""The layer graph: the one representation between loaders and engines.

A :class:`LayerGraph` is an immutable DAG of nodes (see :mod:`liplt_cli.graph.nodes`) in
topological order, with one input node first and one output node.  It evaluates the model
(:meth:`LayerGraph.evaluate`) and checks itself (:meth:`LayerGraph.validate`), both as walks
(:mod:`liplt_cli.graph.walk`, :mod:`liplt_cli.graph.evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from liplt_cli.errors import GraphError, InputShapeError
from liplt_cli.graph.evaluate import Evaluation, ShapeCheck
from liplt_cli.graph.linear_ops import Affine, Shape
from liplt_cli.graph.nodes import InputNode, LinearNode, Node


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
            for key, t in n.tensors().items():
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
            raise InputShapeError(
                f"input has per-sample shape {list(x.shape[1:])}, the model expects {list(self.input_shape)}"
            )
        return Evaluation(self, x).run().env[self.output]

    __call__ = evaluate

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check topological order, shapes of every node against a probe, and finite weights."""
        if not self.nodes or self.nodes[0].kind != "input":
            raise GraphError("the first node of a layer graph must be its input")
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise GraphError(f"duplicate node name '{n.name}'")
            for inp in n.inputs:
                if inp not in seen:
                    raise GraphError(f"node '{n.name}' reads '{inp}', which is not defined before it")
            if n.kind == "input" and n is not self.nodes[0]:
                raise GraphError(f"node '{n.name}' is a second input; only one input is supported")
            seen.add(n.name)
        if self.output not in seen:
            raise GraphError(f"output node '{self.output}' is not in the graph")
        for name, t in self.tensors():
            if not torch.isfinite(t).all():
                raise GraphError(f"weight '{name}' contains NaN or Inf values")
        probe = torch.zeros(1, *self.input_shape, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ShapeCheck(self, probe).run()

    # ------------------------------------------------------------------ conversions
    def map_tensors(self, fn) -> "LayerGraph":
        """A new graph whose weight tensors are ``fn(tensor)`` (e.g. dtype or device changes)."""
        return LayerGraph(tuple(n.map_tensors(fn) for n in self.nodes), self.output, self.notes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LayerGraph":
        return self.map_tensors(lambda t: t.to(device=device, dtype=dtype))

    def detached(self) -> "LayerGraph":
        return self.map_tensors(lambda t: t.detach())

    def with_notes(self, *notes: str) -> "LayerGraph":
        return LayerGraph(self.nodes, self.output, self.notes + tuple(notes))

    def __str__(self) -> str:
        lines = [f"LayerGraph(input {list(self.input_shape)} → output '{self.output}' {list(self.output_shape)})"]
        for n in self.nodes:
            lines.append(f"  {n.name:<24} {n.kind:<10} {n.describe():<40} {list(n.out_shape)} ← {', '.join(n.inputs)}")
        return "\n".join(lines)


def describe_node(node: Node) -> str:
    """One-line human description of a node (used by ``liplt inspect``): ``node.describe()``."""
    return node.describe()


def per_channel_values(channels: int, shape: tuple[int, ...]) -> str:
    """How many normalisation values an input takes, in words."""
    if len(shape) <= 1:
        return f"1 value (the input {list(shape)} has no channel axis)"
    if channels == 1:
        return f"1 value (the input {list(shape)} has 1 channel)"
    return f"1 or {channels} values (one per channel of the input {list(shape)})"


def prepend_normalization(graph: LayerGraph, mean: list[float], std: list[float]) -> LayerGraph:
    """Prepend ``x ↦ (x - mean) / std`` (per channel) so that ε is in raw-data units.

    The new first linear node is an :class:`Affine` with scale ``1/std`` (its norm
    ``max 1/std_c`` enters every Lipschitz bound) and shift ``-mean/std``.
    """
    shape = graph.input_shape
    channels = shape[0] if len(shape) > 1 else 1
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise GraphError(
            f"{{mean}} and {{std}} need {per_channel_values(channels, shape)} each, got {len(mean)} and {len(std)}",
            parameters=("mean", "std"),
        )
    zero = [c for c, v in enumerate(std) if v == 0]
    if zero:
        raise GraphError(f"{{std}} must be non-zero, got 0 for channel {zero[0]}", parameters=("std",))
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
