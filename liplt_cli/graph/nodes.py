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

Nodes are flat dataclasses.  Each names its kind in the class attribute ``kind`` (``input``,
``linear``, ``sum``, ``concat``, ``activation``, ``block``): the graph walk
(:mod:`liplt_cli.graph.walk`) dispatches on it, so no other module tests node types.  Nodes
also answer ``tensors()``, ``map_tensors(fn)`` and ``describe()``.  Shapes are per sample (no
batch axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from liplt_cli.graph.linear_ops import LinearOp, Shape
from liplt_cli.graph.slopes import Activation


TensorMap = Callable[[torch.Tensor], torch.Tensor]


class _NodeBase:
    """What every node kind answers: its tensors, a copy with mapped tensors, a description."""

    kind: ClassVar[str]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Weight tensors of the node by field name (none but for linear nodes)."""
        return {}

    def map_tensors(self, fn: TensorMap) -> "Node":
        """The same node with every weight tensor ``t`` replaced by ``fn(t)``."""
        return self  # type: ignore[return-value]

    def describe(self) -> str:
        """One-line human description (``liplt inspect``)."""
        raise NotImplementedError


@dataclass(eq=False)
class InputNode(_NodeBase):
    name: str
    out_shape: Shape
    source: str = "input"
    inputs: tuple[str, ...] = field(default=(), init=False)
    kind: ClassVar[str] = "input"

    def describe(self) -> str:
        return "input"


@dataclass(eq=False)
class LinearNode(_NodeBase):
    name: str
    inputs: tuple[str, ...]
    op: LinearOp
    source: str = ""
    kind: ClassVar[str] = "linear"

    @property
    def out_shape(self) -> Shape:
        return tuple(self.op.out_shape)

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.op.tensors()

    def map_tensors(self, fn: TensorMap) -> "LinearNode":
        return replace(self, op=replace(self.op, **{k: fn(t) for k, t in self.op.tensors().items()}))

    def describe(self) -> str:
        return self.op.describe()


@dataclass(eq=False)
class _ShapedNode(_NodeBase):
    """Fields of the kinds that declare their output shape (all but input and linear nodes)."""

    name: str
    inputs: tuple[str, ...]
    out_shape: Shape
    source: str = field(default="", kw_only=True)


@dataclass(eq=False)
class SumNode(_ShapedNode):
    coefficients: tuple[float, ...] = ()
    kind: ClassVar[str] = "sum"

    def coefficient(self, i: int) -> float:
        return self.coefficients[i] if self.coefficients else 1.0

    def describe(self) -> str:
        if self.coefficients and any(c != 1 for c in self.coefficients):
            return "Sum " + " ".join(f"{c:+g}·{i}" for c, i in zip(self.coefficients, self.inputs))
        return f"Add ({len(self.inputs)} inputs)"


@dataclass(eq=False)
class ConcatNode(_ShapedNode):
    dim: int  # per-sample axis (0 = channels)
    kind: ClassVar[str] = "concat"

    def describe(self) -> str:
        return f"Concat dim {self.dim}"


@dataclass(eq=False)
class ActivationNode(_ShapedNode):
    activation: Activation
    kind: ClassVar[str] = "activation"

    def describe(self) -> str:
        a = self.activation
        return f"{a.describe()} slopes [{a.alpha:.4g}, {a.beta:.4g}]"


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
class BlockNode(_ShapedNode):
    block: LipschitzBlock
    kind: ClassVar[str] = "block"

    def describe(self) -> str:
        return self.block.describe()


Node = InputNode | LinearNode | SumNode | ConcatNode | ActivationNode | BlockNode


def node_kind(node: Node) -> str:
    """Short label of a node's kind, as shown by ``liplt inspect`` (``node.kind``)."""
    return node.kind
