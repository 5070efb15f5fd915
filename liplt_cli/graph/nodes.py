"""Node kinds of the layer graph.

The layer graph is a DAG, in topological order, of exactly these node kinds:

* :class:`InputNode`   -- the model input ``x_0`` (one per graph, always first);
* :class:`LinearNode`  -- an affine map (see :mod:`liplt_cli.graph.linear_ops`);
* :class:`SumNode`     -- a weighted sum ``Σ_i c_i v_i`` of same-shaped node outputs (residual
  ``Add``, ``Sub``);
* :class:`ConcatNode`  -- concatenation of node outputs along a per-sample axis;
* :class:`ActivationNode` -- an elementwise slope-restricted activation (α, β);
* :class:`BlockNode`   -- a non-elementwise Lipschitz block (MaxPool, ...) with a known constant
  per norm and no loop-transformation benefit.

Nodes are flat dataclasses; engines dispatch on their type.  Shapes are per sample (no batch axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from liplt_cli.graph.linear_ops import LinearOp, Shape
from liplt_cli.graph.slopes import Activation


@dataclass(eq=False)
class InputNode:
    name: str
    out_shape: Shape
    source: str = "input"
    inputs: tuple[str, ...] = field(default=(), init=False)


@dataclass(eq=False)
class LinearNode:
    name: str
    inputs: tuple[str, ...]
    op: LinearOp
    source: str = ""

    @property
    def out_shape(self) -> Shape:
        return tuple(self.op.out_shape)


@dataclass(eq=False)
class SumNode:
    name: str
    inputs: tuple[str, ...]
    out_shape: Shape
    coefficients: tuple[float, ...] = ()
    source: str = ""

    def coefficient(self, i: int) -> float:
        return self.coefficients[i] if self.coefficients else 1.0


@dataclass(eq=False)
class ConcatNode:
    name: str
    inputs: tuple[str, ...]
    out_shape: Shape
    dim: int  # per-sample axis (0 = channels)
    source: str = ""


@dataclass(eq=False)
class ActivationNode:
    name: str
    inputs: tuple[str, ...]
    out_shape: Shape
    activation: Activation
    source: str = ""


@dataclass(eq=False)
class MaxPool:
    """Max pooling over (possibly overlapping) windows, padded with -inf.

    If every input element lies in at most ``c`` windows, then
    ``|maxpool(x) - maxpool(x')|`` is ``sqrt(c)``-Lipschitz in ℓ2, 1-Lipschitz in ℓ∞ and
    ``c``-Lipschitz in ℓ1 (each output moves by at most the largest change in its window).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False
    kind: str = field(default="maxpool", init=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(self.kernel) - 1]
        return fn(x, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def coverage(self) -> int:
        c = 1
        for k, s, d in zip(self.kernel, self.stride, self.dilation):
            c *= min(k, math.ceil((d * (k - 1) + 1) / s))
        return c

    def lipschitz(self, p: float) -> float:
        c = self.coverage()
        if p == 2:
            return math.sqrt(c)
        if p == math.inf:
            return 1.0
        return float(c)

    def attributes(self) -> dict[str, Any]:
        return {
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "ceil_mode": self.ceil_mode,
        }

    def describe(self) -> str:
        return f"MaxPool k{'×'.join(map(str, self.kernel))} s{','.join(map(str, self.stride))}"


LipschitzBlock = MaxPool


@dataclass(eq=False)
class BlockNode:
    name: str
    inputs: tuple[str, ...]
    out_shape: Shape
    block: LipschitzBlock
    source: str = ""


Node = InputNode | LinearNode | SumNode | ConcatNode | ActivationNode | BlockNode

NONLINEAR_NODES = (ActivationNode, BlockNode)


def node_kind(node: Node) -> str:
    """Short label of a node's kind, as shown by ``liplt inspect``."""
    return {
        InputNode: "input",
        LinearNode: "linear",
        SumNode: "sum",
        ConcatNode: "concat",
        ActivationNode: "activation",
        BlockNode: "block",
    }[type(node)]
