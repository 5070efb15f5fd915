"""Running a layer graph on a batch: the model's forward pass, and the shape check of ``validate``.

Both are walks (:class:`~liplt_cli.graph.walk.GraphWalk`) whose values are batches of shape
``(B, *node.out_shape)``; linear nodes apply their affine map (with the offset), sums their
coefficients, activations and blocks their functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from liplt_cli.errors import GraphError
from liplt_cli.graph.walk import GraphWalk

if TYPE_CHECKING:  # pragma: no cover
    from liplt_cli.graph.graph import LayerGraph
    from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, InputNode, LinearNode, Node, SumNode


class Evaluation(GraphWalk):
    """The model's forward pass on ``x``; the logits are ``run().env[graph.output]``."""

    action = "evaluating"
    error = GraphError

    def __init__(self, graph: "LayerGraph", x: torch.Tensor) -> None:
        super().__init__(graph)
        self.x = x

    def input(self, node: "InputNode") -> torch.Tensor:
        return self.x

    def linear(self, node: "LinearNode", x: torch.Tensor) -> torch.Tensor:
        return node.op.forward(x)

    def sum(self, node: "SumNode", *xs: torch.Tensor) -> torch.Tensor:
        out = node.coefficient(0) * xs[0] if node.coefficient(0) != 1 else xs[0]
        for k, a in enumerate(xs[1:], start=1):
            c = node.coefficient(k)
            out = out + (a if c == 1 else c * a)
        return out

    def concat(self, node: "ConcatNode", *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=node.dim + 1)

    def activation(self, node: "ActivationNode", x: torch.Tensor) -> torch.Tensor:
        return node.activation(x)

    def block(self, node: "BlockNode", x: torch.Tensor) -> torch.Tensor:
        return node.block(x)


class ShapeCheck(Evaluation):
    """Evaluation of a probe batch that checks every node's output against its declared shape."""

    def emit(self, pos: int, node: "Node", value: torch.Tensor) -> torch.Tensor:
        if tuple(value.shape[1:]) != tuple(node.out_shape):
            raise GraphError(
                f"node '{node.name}' produces shape {list(value.shape[1:])}, declared {list(node.out_shape)}"
            )
        return value

    def failure_message(self, node: "Node", exc: Exception) -> str:
        return f"node '{node.name}' ({node.kind}) cannot run: {exc}"
