r"""Linear operators of the layer graph.

Every operator is an affine map :math:`x \mapsto Ax + b` on per-sample tensors of shape
``in_shape`` (a batch dimension is always prepended).  Each exposes

* ``forward(x)``  -- the affine map :math:`Ax + b` (used to evaluate the model),
* ``linear(x)``   -- the linear part :math:`Ax` (used by every Lipschitz engine),
* ``adjoint(y)``  -- :math:`A^\top y`, written explicitly so that it is differentiable in the
  weights without double back-propagation,
* ``absolute()``  -- the operator :math:`|A|` (entrywise absolute value), used by the
  :math:`\ell_\infty`/:math:`\ell_1` bounds, or ``None`` when :math:`|A|` is not itself one of
  these operators.

Weights are stored by reference: a layer graph built from a live ``nn.Module`` shares the
module's parameters, so bounds computed on it are differentiable in those parameters (CRM
training, eq. 6 of the paper, back-propagates through them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

Shape = tuple[int, ...]


def _flat_batch(x: torch.Tensor, shape: Shape) -> int:
    return x.shape[0] if x.dim() > len(shape) else 1


@dataclass(eq=False)
class Dense:
    """Matrix product on the last axis: :math:`y = x W^\\top + b` (Gemm, MatMul, Linear)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    in_shape: Shape
    out_shape: Shape
    kind: str = field(default="dense", init=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.weight

    def absolute(self) -> "Dense":
        return replace(self, weight=self.weight.abs(), bias=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})

    def attributes(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"Dense {self.weight.shape[1]}→{self.weight.shape[0]}"


@dataclass(eq=False)
class Conv:
    """N-d convolution (N = 1, 2, 3) with zero padding, stride, dilation and groups."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_shape: Shape
    out_shape: Shape
    kind: str = field(default="conv", init=False)

    @property
    def spatial_dims(self) -> int:
        return self.weight.dim() - 2

    def _conv(self):
        return (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]

    def _conv_t(self):
        return (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.spatial_dims - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv()(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv()(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)

    def output_padding(self) -> tuple[int, ...]:
        """Extra rows the transposed convolution needs to give back exactly ``in_shape``."""
        pads = []
        for d in range(self.spatial_dims):
            n_in, n_out = self.in_shape[1 + d], self.out_shape[1 + d]
            k = self.weight.shape[2 + d]
            produced = (n_out - 1) * self.stride[d] - 2 * self.padding[d] + self.dilation[d] * (k - 1) + 1
            pads.append(n_in - produced)
        return tuple(pads)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._conv_t()(
            y, self.weight, None, self.stride, self.padding, self.output_padding(), self.groups, self.dilation
        )

    def absolute(self) -> "Conv":
        return replace(self, weight=self.weight.abs(), bias=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})

    def attributes(self) -> dict[str, Any]:
        return {
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
        }

    def describe(self) -> str:
        k = "×".join(str(s) for s in self.weight.shape[2:])
        return (
            f"Conv{self.spatial_dims}d {self.in_shape[0]}→{self.out_shape[0]} k{k} "
            f"s{','.join(map(str, self.stride))} p{','.join(map(str, self.padding))}"
            + (f" g{self.groups}" if self.groups != 1 else "")
        )


@dataclass(eq=False)
class ConvTranspose:
    """N-d transposed convolution; its adjoint is the corresponding convolution."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_shape: Shape
    out_shape: Shape
    kind: str = field(default="conv_transpose", init=False)

    @property
    def spatial_dims(self) -> int:
        return self.weight.dim() - 2

    def _apply(self, x, bias):
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.spatial_dims - 1]
        return fn(x, self.weight, bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self.bias)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, None)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        fn = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
        return fn(y, self.weight, None, self.stride, self.padding, self.dilation, self.groups)

    def absolute(self) -> "ConvTranspose":
        return replace(self, weight=self.weight.abs(), bias=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})

    def attributes(self) -> dict[str, Any]:
        return {
            "stride": list(self.stride),
            "padding": list(self.padding),
            "output_padding": list(self.output_padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
        }

    def describe(self) -> str:
        return f"ConvTranspose{self.spatial_dims}d {self.in_shape[0]}→{self.out_shape[0]}"


@dataclass(eq=False)
class Affine:
    """Elementwise :math:`y = s \\odot x + t` with ``s``, ``t`` broadcastable to ``in_shape``.

    Covers eval-mode BatchNorm, input normalisation ``(x - mean) / std`` and Sub/Div/Mul/Add by
    constants.  Its operator norm is :math:`\\max_i |s_i|` in every :math:`\\ell_p` (exact).
    """

    scale: torch.Tensor
    shift: torch.Tensor | None
    in_shape: Shape
    label: str = "affine"
    kind: str = field(default="affine", init=False)

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale
        return y + self.shift if self.shift is not None else y

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale

    def absolute(self) -> "Affine":
        return replace(self, scale=self.scale.abs(), shift=None)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale} | ({"shift": self.shift} if self.shift is not None else {})

    def attributes(self) -> dict[str, Any]:
        return {"label": self.label}

    def describe(self) -> str:
        return f"Affine ({self.label})"


@dataclass(eq=False)
class Reshape:
    """Reshape / Flatten: a permutation-free relabelling of coordinates (norm 1, exact)."""

    in_shape: Shape
    out_shape: Shape
    kind: str = field(default="reshape", init=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    linear = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[0], *self.in_shape)

    def absolute(self) -> "Reshape":
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def attributes(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"Reshape {list(self.in_shape)}→{list(self.out_shape)}"


@dataclass(eq=False)
class Permute:
    """Transpose of the per-sample axes (``perm`` excludes the batch axis); norm 1, exact."""

    perm: tuple[int, ...]
    in_shape: Shape
    kind: str = field(default="permute", init=False)

    @property
    def out_shape(self) -> Shape:
        return tuple(self.in_shape[p] for p in self.perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *(p + 1 for p in self.perm))

    linear = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        inverse = [0] * len(self.perm)
        for i, p in enumerate(self.perm):
            inverse[p] = i
        return y.permute(0, *(p + 1 for p in inverse))

    def absolute(self) -> "Permute":
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def attributes(self) -> dict[str, Any]:
        return {"perm": list(self.perm)}

    def describe(self) -> str:
        return f"Permute {list(self.perm)}"


@dataclass(eq=False)
class Pad:
    """Zero padding; ``pads`` in ``torch.nn.functional.pad`` order (last axis first). Norm 1."""

    pads: tuple[int, ...]
    in_shape: Shape
    kind: str = field(default="pad", init=False)

    @property
    def out_shape(self) -> Shape:
        shape = list(self.in_shape)
        for i in range(len(self.pads) // 2):
            shape[-1 - i] += self.pads[2 * i] + self.pads[2 * i + 1]
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, list(self.pads))

    linear = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return F.pad(y, [-p for p in self.pads])

    def absolute(self) -> "Pad":
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def attributes(self) -> dict[str, Any]:
        return {"pads": list(self.pads)}

    def describe(self) -> str:
        return f"Pad {list(self.pads)}"


LinearOp = Dense | Conv | ConvTranspose | Affine | Reshape | Permute | Pad

LINEAR_OP_KINDS: dict[str, type] = {
    "dense": Dense,
    "conv": Conv,
    "conv_transpose": ConvTranspose,
    "affine": Affine,
    "reshape": Reshape,
    "permute": Permute,
    "pad": Pad,
}


def conv_out_size(n: int, k: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a zero-padded convolution along one axis."""
    return math.floor((n + 2 * padding - dilation * (k - 1) - 1) / stride) + 1
