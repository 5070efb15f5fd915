"""Handlers mapping fx nodes (torch.nn modules, torch functions, Tensor methods and onnx2torch
modules) onto layer-graph nodes.

Each handler receives a :class:`Call` (the node's arguments, with :class:`~liplt_cli.load.fx.Sym`
for input-dependent values and tensors for constants, plus the node's example output) and
returns the :class:`Sym` of its result, or raises :class:`~liplt_cli.load.fx.Unsupported`.

Linear maps become :class:`LinearNode` s (Dense ``y = xWᵀ + b``, Conv, Affine ``y = s⊙x + t``,
Reshape, Permute, Pad); average pooling of window ``k`` is the depthwise convolution with weight
``1/|k|`` (groups = C); eval-mode BatchNorm is the per-channel Affine with
``s = γ/√(σ²+ε)``, ``t = β − μ s``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from liplt_cli.errors import ModelLoadError
from liplt_cli.graph import Affine, Conv, ConvTranspose, Dense, Pad, Permute, Reshape, make_activation
from liplt_cli.graph.nodes import BlockNode, ConcatNode, MaxPool, SumNode
from liplt_cli.graph.slopes import softplus_jump
from liplt_cli.load.formula import SOFTPLUS_SWITCH
from liplt_cli.load.fx import Converter, Sym, Unsupported


@dataclass
class Call:
    cv: Converter
    name: str  # base name for emitted nodes
    source: str  # user-facing description of the op, e.g. "Conv2d 'features.0'"
    op: str  # op label for errors
    args: tuple
    kwargs: dict
    out: Any
    mod: nn.Module | None = None

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        if len(self.args) > i:
            return self.args[i]
        return default

    @property
    def src(self) -> Sym:
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, Sym):
                return a
            if isinstance(a, (list, tuple)):
                for b in a:
                    if isinstance(b, Sym):
                        return b
        raise AssertionError("no symbolic argument")

    def unsupported(self, why: str = "") -> Unsupported:
        return Unsupported(self.op, why)

    def const_weight(self, value: Any, what: str = "weight") -> torch.Tensor | None:
        """A constant weight argument; an input-dependent one is a clear error."""
        if value is None:
            return None
        if isinstance(value, Sym):
            raise ModelLoadError(
                f"node '{self.name}' ({self.op}): its {what} depends on the model input; "
                "only constant weights are supported"
            )
        return self.cv.const(value)


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            return tuple(int(v[0]) for _ in range(n))
        return tuple(int(x) for x in v)
    return tuple(int(v) for _ in range(n))


def _is_zero(t: Any) -> bool:
    return isinstance(t, (int, float)) and t == 0 or isinstance(t, torch.Tensor) and bool((t == 0).all())


def _is_one(t: Any) -> bool:
    return isinstance(t, (int, float)) and t == 1 or isinstance(t, torch.Tensor) and bool((t == 1).all())


def passthrough(c: Call) -> Sym:
    s = c.src
    if not isinstance(c.out, torch.Tensor) or not c.out.is_floating_point() or tuple(c.out.shape) != tuple(s.value.shape):
        raise c.unsupported("changes the tensor's shape or type")
    return Sym(s.name, c.out, None)


# ---------------------------------------------------------------------- dense / matmul
def dense(c: Call, x: Sym, weight: torch.Tensor, bias: torch.Tensor | None) -> Sym:
    if weight.dim() != 2:
        raise c.unsupported(f"weight of rank {weight.dim()}")
    if not x.shape or x.shape[-1] != weight.shape[1]:
        raise c.unsupported(f"input {list(x.shape)} does not match weight {list(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        if bias.numel() == 1:
            bias = bias.reshape(1).expand(weight.shape[0])
        elif bias.numel() == weight.shape[0]:
            bias = bias.reshape(weight.shape[0])
        else:
            raise c.unsupported(f"bias of shape {list(bias.shape)}")
    op = Dense(weight, bias, x.shape, x.shape[:-1] + (weight.shape[0],))
    return c.cv.linear(x, op, c.name, c.source)


def _reject_symbolic_weights(c: Call) -> None:
    """The data operand is constant, so the input-dependent operand is a weight: a clear error."""
    c.const_weight(c.arg(1, "weight"))
    c.const_weight(c.arg(2, "bias"), "bias")
    raise c.unsupported()


def h_linear_module(c: Call) -> Sym:
    return dense(c, c.src, c.mod.weight, c.mod.bias)


def h_linear_fn(c: Call) -> Sym:
    x = c.arg(0, "input")
    if not isinstance(x, Sym):
        _reject_symbolic_weights(c)
    return dense(c, x, c.const_weight(c.arg(1, "weight")), c.const_weight(c.arg(2, "bias"), "bias"))


def h_matmul(c: Call) -> Sym:
    a, b = c.arg(0, "input"), c.arg(1, "other")
    if isinstance(a, Sym) and isinstance(b, Sym):
        raise ModelLoadError(
            f"node '{c.name}' ({c.op}): its weight depends on the model input (both factors of the "
            "product do); only products with a constant weight are supported"
        )
    if isinstance(a, Sym):
        w = c.cv.const(b)
        if w.dim() != 2:
            raise c.unsupported(f"constant factor of rank {w.dim()}")
        return dense(c, a, w.t(), None)
    # constant @ x: acts on the second-to-last axis of x.
    w = c.cv.const(a)
    x = b
    if w.dim() != 2 or len(x.shape) < 2:
        raise c.unsupported("constant @ input needs a 2-D constant and an input of rank >= 2 per sample")
    r = len(x.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    t = c.cv.linear(x, Permute(perm, x.shape), c.name + "_T", c.source)
    y = dense(c, t, w, None)
    return c.cv.linear(y, Permute(perm, y.shape), c.name + "_Tback", c.source)


def h_gemm(c: Call) -> Sym:
    m = c.mod
    a, b = c.args[0], c.args[1]
    bias = c.args[2] if len(c.args) > 2 else None
    if not isinstance(a, Sym) or m.trans_a:
        raise c.unsupported("Gemm whose weight is the input-dependent operand, or transA=1")
    w = c.const_weight(b)
    w = w if m.trans_b else w.t()
    if m.alpha != 1:
        w = w * m.alpha
    bias = c.const_weight(bias, "bias")
    if bias is not None and m.beta != 1:
        bias = bias * m.beta
    return dense(c, a, w, bias)


# ---------------------------------------------------------------------- convolutions
def _same_padding(k: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    left = tuple(d * (kk - 1) // 2 for kk, d in zip(k, dilation))
    right = tuple(d * (kk - 1) - l for kk, d, l in zip(k, dilation, left))
    return left, right


def conv(c: Call, x: Sym, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups: int) -> Sym:
    n = weight.dim() - 2
    if n not in (1, 2, 3) or len(x.shape) != n + 1:
        raise c.unsupported(f"convolution of input {list(x.shape)} with weight {list(weight.shape)}")
    k = tuple(weight.shape[2:])
    stride, dilation = _tuple(stride, n), _tuple(dilation, n)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * n
        elif padding == "same":
            left, right = _same_padding(k, dilation)
            if left != right:
                pads: list[int] = []
                for d in reversed(range(n)):
                    pads += [left[d], right[d]]
                x = c.cv.linear(x, Pad(tuple(pads), x.shape), c.name + "_pad", c.source)
                padding = (0,) * n
            else:
                padding = left
        else:
            raise c.unsupported(f"padding '{padding}'")
    padding = _tuple(padding, n)
    out_spatial = tuple(
        (x.shape[1 + d] + 2 * padding[d] - dilation[d] * (k[d] - 1) - 1) // stride[d] + 1 for d in range(n)
    )
    op = Conv(weight, bias, stride, padding, dilation, int(groups), x.shape, (weight.shape[0], *out_spatial))
    return c.cv.linear(x, op, c.name, c.source)


def h_conv_module(c: Call) -> Sym:
    m = c.mod
    if m.padding_mode != "zeros" and any(p != 0 for p in _tuple(m.padding, len(m.kernel_size)) if not isinstance(m.padding, str)):
        raise c.unsupported(f"padding_mode '{m.padding_mode}'")
    return conv(c, c.src, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def h_conv_fn(c: Call) -> Sym:
    x = c.arg(0, "input")
    if not isinstance(x, Sym):
        _reject_symbolic_weights(c)
    return conv(
        c, x, c.const_weight(c.arg(1, "weight")), c.const_weight(c.arg(2, "bias"), "bias"),
        c.arg(3, "stride", 1), c.arg(4, "padding", 0), c.arg(5, "dilation", 1), c.arg(6, "groups", 1),
    )


def conv_transpose(c: Call, x: Sym, weight, bias, stride, padding, output_padding, groups, dilation) -> Sym:
    n = weight.dim() - 2
    if n not in (1, 2, 3) or len(x.shape) != n + 1:
        raise c.unsupported(f"transposed convolution of input {list(x.shape)}")
    out_shape = tuple(c.out.shape[1:])
    op = ConvTranspose(
        weight, bias, _tuple(stride, n), _tuple(padding, n), _tuple(output_padding, n), _tuple(dilation, n),
        int(groups), x.shape, out_shape,
    )
    return c.cv.linear(x, op, c.name, c.source)


def h_conv_transpose_module(c: Call) -> Sym:
    m = c.mod
    if m.padding_mode != "zeros":
        raise c.unsupported(f"padding_mode '{m.padding_mode}'")
    if c.arg(1, "output_size") is not None:
        raise c.unsupported("an explicit output_size")
    return conv_transpose(c, c.src, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


def h_conv_transpose_fn(c: Call) -> Sym:
    x = c.arg(0, "input")
    if not isinstance(x, Sym):
        _reject_symbolic_weights(c)
    return conv_transpose(
        c, x, c.const_weight(c.arg(1, "weight")), c.const_weight(c.arg(2, "bias"), "bias"),
        c.arg(3, "stride", 1), c.arg(4, "padding", 0), c.arg(5, "output_padding", 0),
        c.arg(6, "groups", 1), c.arg(7, "dilation", 1),
    )


# ---------------------------------------------------------------------- batch norm and affine
def batchnorm(c: Call, x: Sym, mean, var, weight, bias, eps: float) -> Sym:
    if mean is None or var is None:
        raise c.unsupported("BatchNorm without running statistics (it normalises by batch statistics)")
    mean, var = c.const_weight(mean, "running mean"), c.const_weight(var, "running variance")
    weight, bias = c.const_weight(weight), c.const_weight(bias, "bias")
    inv = torch.rsqrt(var + eps)
    scale = inv if weight is None else weight * inv
    shift = -mean * scale if bias is None else bias - mean * scale
    view = (-1,) + (1,) * (len(x.shape) - 1)
    if len(x.shape) < 1 or scale.numel() != x.shape[0]:
        raise c.unsupported(f"BatchNorm over {scale.numel()} channels on input {list(x.shape)}")
    op = Affine(scale.reshape(view), shift.reshape(view), x.shape, "batchnorm")
    return c.cv.linear(x, op, c.name, c.source)


def h_batchnorm_module(c: Call) -> Sym:
    m = c.mod
    return batchnorm(c, c.src, m.running_mean, m.running_var, m.weight if m.affine else None,
                     m.bias if m.affine else None, m.eps)


def h_batchnorm_fn(c: Call) -> Sym:
    if c.arg(5, "training", False):
        raise c.unsupported("BatchNorm in training mode")
    return batchnorm(c, c.args[0], c.arg(1, "running_mean"), c.arg(2, "running_var"), c.arg(3, "weight"),
                     c.arg(4, "bias"), float(c.arg(7, "eps", 1e-5)))


def h_onnx_batchnorm(c: Call) -> Sym:
    x, w, b, mean, var = c.args[:5]
    return batchnorm(c, x, mean, var, w, b, float(c.mod.epsilon))


def per_sample_const(c: Call, x: Sym, value: Any) -> torch.Tensor:
    """A constant operand as a tensor broadcastable to ``x``'s per-sample shape."""
    t = c.cv.const(value)
    if not isinstance(c.out, torch.Tensor) or tuple(c.out.shape) != tuple(x.value.shape):
        raise c.unsupported("broadcasting with the constant changes the tensor's shape")
    rank = len(x.shape)
    if t.dim() > rank:
        lead = t.dim() - rank
        if any(d != 1 for d in t.shape[:lead]):
            raise c.unsupported("the constant varies along the batch axis")
        t = t.reshape(t.shape[lead:])
    return t


def affine(c: Call, x: Sym, scale: torch.Tensor | None, shift: torch.Tensor | None, label: str) -> Sym:
    if (scale is None or _is_one(scale)) and (shift is None or _is_zero(shift)):
        return Sym(x.name, c.out, None)  # a no-op (x - 0, x / 1, x * 1)
    if scale is None:
        scale = torch.ones((), dtype=c.cv.dtype, device=c.cv.device)
    return c.cv.linear(x, Affine(scale, shift, x.shape, label), c.name, c.source)


def binary(c: Call, kind: str, a: Any, b: Any, alpha: Any = 1) -> Sym:
    """``a (+|-|*|/) b`` where at least one operand is symbolic."""
    if isinstance(a, Sym) and isinstance(b, Sym):
        if kind in ("add", "sub"):
            if a.shape != b.shape or tuple(c.out.shape) != tuple(a.value.shape):
                raise c.unsupported(f"{kind} of tensors of different shapes {list(a.shape)} and {list(b.shape)}")
            coeff = float(alpha) * (-1 if kind == "sub" else 1)
            name = c.cv.unique(c.name)
            coeffs = () if coeff == 1 else (1.0, coeff)
            c.cv.emit(SumNode(name, (a.name, b.name), a.shape, coeffs, source=c.source))
            return Sym(name, c.out, None)
        raise c.unsupported(f"{kind} of two input-dependent tensors is not linear")
    if isinstance(a, Sym):
        x, k = a, per_sample_const(c, a, b)
        if kind == "add":
            return affine(c, x, None, k * alpha if not _is_one(alpha) else k, "add constant")
        if kind == "sub":
            return affine(c, x, None, -(k * alpha), "subtract constant")
        if kind == "mul":
            return affine(c, x, k, None, "multiply by constant")
        return affine(c, x, 1.0 / k, None, "divide by constant")
    x, k = b, per_sample_const(c, b, a)
    if kind == "add":
        return affine(c, x, None if _is_one(alpha) else torch.as_tensor(float(alpha)), k, "add constant")
    if kind == "sub":
        return affine(c, x, -torch.ones((), dtype=c.cv.dtype) * float(alpha), k, "constant minus input")
    if kind == "mul":
        return affine(c, x, k, None, "multiply by constant")
    raise c.unsupported("division by an input-dependent tensor is not linear")


def _binary_handler(kind: str) -> Callable[[Call], Sym]:
    def handler(c: Call) -> Sym:
        return binary(c, kind, c.arg(0, "input"), c.arg(1, "other"), c.kwargs.get("alpha", 1))

    return handler


def h_rsub(c: Call) -> Sym:
    return binary(c, "sub", c.arg(1, "other"), c.arg(0, "input"), c.kwargs.get("alpha", 1))


def h_neg(c: Call) -> Sym:
    x = c.src
    return affine(c, x, -torch.ones((), dtype=c.cv.dtype, device=c.cv.device), None, "negate")


def h_onnx_binary(c: Call) -> Sym:
    m = c.mod
    fn = m.math_op_function
    kind = {torch.add: "add", torch.sub: "sub", torch.mul: "mul"}.get(fn)
    if kind is None:
        kind = "div" if getattr(fn, "__name__", "").endswith("div") else None
    if kind is None:
        raise c.unsupported()
    a, b = c.args
    if m.broadcast == 1 and m.axis is not None and isinstance(a, Sym) and not isinstance(b, Sym):
        from onnx2torch.utils.common import old_style_broadcast

        b = old_style_broadcast(a.value, c.cv.const(b), m.axis)
    return binary(c, kind, a, b)


def h_onnx_sum(c: Call) -> Sym:
    if not all(isinstance(a, Sym) for a in c.args):
        raise c.unsupported("Sum with a constant operand")
    shapes = {a.shape for a in c.args}
    if len(shapes) != 1 or tuple(c.out.shape[1:]) != c.args[0].shape:
        raise c.unsupported("Sum of tensors of different shapes")
    name = c.cv.unique(c.name)
    c.cv.emit(SumNode(name, tuple(a.name for a in c.args), c.args[0].shape, source=c.source))
    return Sym(name, c.out, None)


# ---------------------------------------------------------------------- pooling
def avgpool(c: Call, x: Sym, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool, divisor,
            check_out: bool = True) -> Sym:
    n = len(x.shape) - 1
    if n < 1:
        raise c.unsupported(f"average pooling of input {list(x.shape)}")
    k = _tuple(kernel, n)
    s = _tuple(stride if stride not in (None, [], ()) else k, n)
    p = _tuple(padding, n)
    channels = x.shape[0]
    area = math.prod(k)
    weight = torch.full((channels, 1, *k), 1.0 / (divisor or area), dtype=c.cv.dtype, device=c.cv.device)
    out_spatial = tuple((x.shape[1 + d] + 2 * p[d] - k[d]) // s[d] + 1 for d in range(n))
    if check_out and tuple(c.out.shape[2:]) != out_spatial:
        raise c.unsupported("ceil_mode adds partial windows")
    op = Conv(weight, None, s, p, (1,) * n, channels, x.shape, (channels, *out_spatial))
    y = c.cv.linear(x, op, c.name, c.source)
    if not count_include_pad and any(p) and not divisor:
        ones = torch.ones(1, 1, *x.shape[1:], dtype=c.cv.dtype, device=c.cv.device)
        frac = F.conv2d if n == 2 else (F.conv1d if n == 1 else F.conv3d)
        covered = frac(ones, torch.ones(1, 1, *k, dtype=c.cv.dtype, device=c.cv.device), None, s, p)[0]
        y = c.cv.linear(y, Affine(area / covered, None, y.shape, "average over non-padded cells"), c.name + "_count", c.source)
    return y


def h_avgpool_module(c: Call) -> Sym:
    m = c.mod
    return avgpool(c, c.src, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                   getattr(m, "divisor_override", None))


def h_avgpool_fn(c: Call) -> Sym:
    return avgpool(c, c.args[0], c.arg(1, "kernel_size"), c.arg(2, "stride"), c.arg(3, "padding", 0),
                   c.arg(4, "ceil_mode", False), c.arg(5, "count_include_pad", True), c.arg(6, "divisor_override"))


def _adaptive_kernel(c: Call, x: Sym, output_size) -> tuple[int, ...]:
    n = len(x.shape) - 1
    sizes = output_size if isinstance(output_size, (list, tuple)) else (output_size,) * n
    kernel = []
    for d, o in enumerate(sizes):
        i = x.shape[1 + d]
        o = i if o is None else int(o)
        if i % o:
            raise c.unsupported(f"adaptive pooling from {i} to {o} cells (not a divisor)")
        kernel.append(i // o)
    return tuple(kernel)


def h_adaptive_avg(c: Call) -> Sym:
    x = c.src
    size = c.mod.output_size if c.mod is not None else c.arg(1, "output_size")
    k = _adaptive_kernel(c, x, size)
    return avgpool(c, x, k, k, 0, False, True, None)


def global_average(c: Call, x: Sym, keepdim: bool = True) -> Sym:
    if len(x.shape) < 2:
        raise c.unsupported("global average of an input without spatial axes")
    k = tuple(x.shape[1:])
    y = avgpool(c, x, k, k, 0, False, True, None, check_out=False)
    if not keepdim:
        y = c.cv.linear(y, Reshape(y.shape, (x.shape[0],)), c.name + "_squeeze", c.source)
    return y


def h_global_avg(c: Call) -> Sym:
    return global_average(c, c.src, True)


def h_mean(c: Call) -> Sym:
    return mean(c, c.src, c.arg(1, "dim"), bool(c.arg(2, "keepdim", False)))


def h_onnx_reduce(c: Call) -> Sym:
    if c.mod.operation_type != "ReduceMean":
        raise c.unsupported(f"{c.mod.operation_type} is not linear" if c.mod.operation_type != "ReduceSum" else "")
    return mean(c, c.src, c.mod.axes, bool(c.mod.keepdims))


def mean(c: Call, x: Sym, dims: Any, keepdim: bool) -> Sym:
    """Mean over the spatial axes = global average pooling (a depthwise convolution)."""
    rank = x.value.dim()
    if dims is None:
        raise c.unsupported("mean over all axes including the batch")
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = sorted(d % rank for d in dims)
    if dims != list(range(2, rank)):
        raise c.unsupported(f"mean over axes {dims} (only the spatial axes are supported)")
    return global_average(c, x, keepdim)


def maxpool(c: Call, x: Sym, kernel, stride, padding, dilation, ceil_mode: bool, return_indices: bool) -> Sym:
    if return_indices:
        raise c.unsupported("MaxPool returning indices")
    n = len(x.shape) - 1
    k = _tuple(kernel, n)
    block = MaxPool(k, _tuple(stride if stride not in (None, [], ()) else k, n), _tuple(padding, n),
                    _tuple(dilation, n), bool(ceil_mode))
    name = c.cv.unique(c.name)
    c.cv.emit(BlockNode(name, (x.name,), tuple(c.out.shape[1:]), block, source=c.source))
    return Sym(name, c.out, None)


def h_maxpool_module(c: Call) -> Sym:
    m = c.mod
    return maxpool(c, c.src, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)


def h_maxpool_fn(c: Call) -> Sym:
    return maxpool(c, c.args[0], c.arg(1, "kernel_size"), c.arg(2, "stride"), c.arg(3, "padding", 0),
                   c.arg(4, "dilation", 1), c.arg(5, "ceil_mode", False), c.arg(6, "return_indices", False))


def h_adaptive_max(c: Call) -> Sym:
    x = c.src
    if getattr(c.mod, "return_indices", False):
        raise c.unsupported("MaxPool returning indices")
    size = c.mod.output_size if c.mod is not None else c.arg(1, "output_size")
    k = _adaptive_kernel(c, x, size)
    return maxpool(c, x, k, k, 0, 1, False, False)


# ---------------------------------------------------------------------- shapes
def h_reshape(c: Call) -> Sym:
    x = c.src
    out = c.out
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != x.batch or out.numel() != x.value.numel():
        raise c.unsupported("reshape that mixes the batch axis with the others")
    shape = tuple(out.shape[1:])
    if shape == x.shape:
        return Sym(x.name, out, None)
    return c.cv.linear(x, Reshape(x.shape, shape), c.name, c.source, value=out)


def permute(c: Call, x: Sym, perm: list[int]) -> Sym:
    rank = x.value.dim()
    perm = [int(p) % rank for p in perm]
    if sorted(perm) != list(range(rank)) or perm[0] != 0:
        raise c.unsupported(f"permutation {perm} moves the batch axis")
    per = tuple(p - 1 for p in perm[1:])
    if per == tuple(range(rank - 1)):
        return Sym(x.name, c.out, None)
    return c.cv.linear(x, Permute(per, x.shape), c.name, c.source)


def h_permute(c: Call) -> Sym:
    dims = list(c.args[1:]) if len(c.args) > 2 else c.arg(1, "dims")
    if isinstance(dims, int):
        dims = [dims]
    return permute(c, c.src, list(dims))


def h_transpose(c: Call) -> Sym:
    x = c.src
    rank = x.value.dim()
    d0, d1 = int(c.arg(1, "dim0")) % rank, int(c.arg(2, "dim1")) % rank
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(c, x, perm)


def h_onnx_transpose(c: Call) -> Sym:
    x = c.src
    perm = c.mod.perm if c.mod.perm is not None else list(range(x.value.dim()))[::-1]
    return permute(c, x, list(perm))


def pad(c: Call, x: Sym, pads: Any, mode: str = "constant", value: Any = 0) -> Sym:
    if isinstance(pads, torch.Tensor):
        pads = pads.tolist()
    pads = [int(p) for p in pads]
    if mode != "constant":
        raise c.unsupported(f"Pad mode '{mode}' (only zero padding is linear)")
    if value is not None and not _is_zero(value if not isinstance(value, torch.Tensor) else value.float()):
        raise c.unsupported(f"Pad with the non-zero value {float(value)}")
    rank = len(x.shape)
    while len(pads) > 2 * rank:
        if pads[-2:] != [0, 0]:
            raise c.unsupported("padding of the batch axis")
        pads = pads[:-2]
    if not any(pads):
        return Sym(x.name, c.out, None)
    return c.cv.linear(x, Pad(tuple(pads), x.shape), c.name, c.source)


def _onnx_pads_to_torch(pads: list[int]) -> list[int]:
    half = len(pads) // 2
    begin, end = pads[:half], pads[half:]
    result: list[int] = []
    for d in reversed(range(half)):
        result += [begin[d], end[d]]
    return result


def h_pad_fn(c: Call) -> Sym:
    return pad(c, c.args[0], c.arg(1, "pad"), c.arg(2, "mode", "constant"), c.arg(3, "value", 0))


def h_pad_module(c: Call) -> Sym:
    return pad(c, c.src, c.mod.padding, "constant", getattr(c.mod, "value", 0))


def h_onnx_pad_static(c: Call) -> Sym:
    return pad(c, c.src, list(c.mod.pads), c.mod.mode, c.mod.constant_value)


def h_onnx_pad_dynamic(c: Call) -> Sym:
    x = c.args[0]
    pads = c.arg(1, "pads")
    if isinstance(pads, Sym):
        raise c.unsupported("pads that depend on the input")
    value = c.arg(2, "constant_value", 0)
    return pad(c, x, _onnx_pads_to_torch([int(p) for p in torch.as_tensor(pads).tolist()]), c.mod.mode, value)


def cat(c: Call, tensors: list[Any], dim: int) -> Sym:
    if not all(isinstance(t, Sym) for t in tensors):
        raise c.unsupported("Concat with a constant tensor")
    rank = tensors[0].value.dim()
    dim = int(dim) % rank
    if dim == 0:
        raise c.unsupported("Concat along the batch axis")
    name = c.cv.unique(c.name)
    c.cv.emit(ConcatNode(name, tuple(t.name for t in tensors), tuple(c.out.shape[1:]), dim - 1, source=c.source))
    return Sym(name, c.out, None)


def h_cat(c: Call) -> Sym:
    return cat(c, list(c.arg(0, "tensors")), c.arg(1, "dim", 0))


def h_onnx_concat(c: Call) -> Sym:
    return cat(c, list(c.args), c.mod.axis)


# ---------------------------------------------------------------------- activations
def act(c: Call, name: str, **params: float) -> Sym:
    try:
        a = make_activation(name, **params)
    except ValueError as exc:
        raise c.unsupported(str(exc)) from None
    return c.cv.activation(c.src, a, c.name, c.source, c.out, None)


def _simple(name: str) -> Callable[[Call], Sym]:
    return lambda c: act(c, name)


def clamp(c: Call, lo: Any, hi: Any) -> Sym:
    def scalar(v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, Sym):
            raise c.unsupported("clamp bounds that depend on the input")
        t = torch.as_tensor(v)
        if t.numel() != 1:
            raise c.unsupported("clamp with tensor bounds")
        return float(t)

    lo, hi = scalar(lo), scalar(hi)
    if lo is None and hi is None:
        return passthrough(c)
    if lo == 0 and hi is None:
        return act(c, "relu")
    return act(c, "clip", min=-math.inf if lo is None else lo, max=math.inf if hi is None else hi)


def h_clamp(c: Call) -> Sym:
    return clamp(c, c.arg(1, "min"), c.arg(2, "max"))


def h_hardtanh_fn(c: Call) -> Sym:
    return clamp(c, c.arg(1, "min_val", -1.0), c.arg(2, "max_val", 1.0))


def h_leaky_fn(c: Call) -> Sym:
    return act(c, "leaky_relu", negative_slope=float(c.arg(1, "negative_slope", 0.01)))


def h_elu_fn(c: Call) -> Sym:
    return act(c, "elu", alpha=float(c.arg(1, "alpha", 1.0)))


def softplus(c: Call, beta: float, threshold: float) -> Sym:
    """torch's Softplus returns x where βx > threshold; the switch jumps by log1p(e^{-threshold})/β,
    below float32 resolution of the value there only when threshold ≥ 15 (then it is the smooth
    softplus to float32 precision, see :mod:`liplt_cli.load.formula`)."""
    if not threshold >= SOFTPLUS_SWITCH:
        raise c.unsupported(
            f"Softplus with threshold {threshold:g} jumps by {softplus_jump(beta, threshold) if beta > 0 else math.inf:.2g} "
            f"at its switch point; only thresholds ≥ {SOFTPLUS_SWITCH:g} are continuous to float32 precision"
        )
    return act(c, "softplus", beta=beta)


def h_softplus_fn(c: Call) -> Sym:
    return softplus(c, float(c.arg(1, "beta", 1.0)), float(c.arg(2, "threshold", 20.0)))


def h_gelu(c: Call) -> Sym:
    approx = c.mod.approximate if c.mod is not None else c.arg(1, "approximate", "none")
    if approx not in ("none", "tanh"):
        raise c.unsupported(f"GELU approximate='{approx}'")
    return act(c, "gelu" if approx == "none" else "gelu_tanh")


def h_onnx_hardsigmoid(c: Call) -> Sym:
    """ONNX HardSigmoid: ``clip(αx + β, 0, 1)`` = Affine then Clip (HardSigmoid when α=1/6, β=1/2)."""
    a, b = float(c.mod.alpha), float(c.mod.beta)
    if abs(a - 1 / 6) < 1e-7 and abs(b - 0.5) < 1e-7:
        # exporters store α = float32(1/6) = 0.16666667…: the activation keeps the stored α, β
        return act(c, "hardsigmoid", alpha=a, beta=b)
    x = c.src
    y = c.cv.linear(
        x,
        Affine(torch.tensor(a, dtype=c.cv.dtype), torch.tensor(b, dtype=c.cv.dtype), x.shape, "HardSigmoid αx+β"),
        c.name + "_affine", c.source,
    )
    return c.cv.activation(y, make_activation("clip", min=0.0, max=1.0), c.name, c.source, c.out, None)


def h_onnx_function(c: Call) -> Sym:
    if c.mod.function is torch.tanh:
        return act(c, "tanh")
    raise c.unsupported()


def softmax(c: Call, dim: Any, log: bool) -> Sym:
    x = c.src
    return Sym(x.name, x.value, x.fx_name, stripped="LogSoftmax" if log else "Softmax")


def h_softmax_module(c: Call) -> Sym:
    return softmax(c, c.mod.dim, isinstance(c.mod, nn.LogSoftmax))


def h_softmax_fn(log: bool) -> Callable[[Call], Sym]:
    return lambda c: softmax(c, c.arg(1, "dim"), log)


def h_onnx_softmax(c: Call) -> Sym:
    return softmax(c, c.mod.axis, c.mod.is_log)


def h_cast(c: Call) -> Sym:
    if not isinstance(c.out, torch.Tensor) or not c.out.is_floating_point():
        raise c.unsupported("cast to a non-floating type")
    return passthrough(c)


# ---------------------------------------------------------------------- tables
MODULE_HANDLERS: list[tuple[type, Callable[[Call], Sym]]] = [
    (nn.Linear, h_linear_module),
    (nn.Conv1d, h_conv_module), (nn.Conv2d, h_conv_module), (nn.Conv3d, h_conv_module),
    (nn.ConvTranspose1d, h_conv_transpose_module), (nn.ConvTranspose2d, h_conv_transpose_module),
    (nn.ConvTranspose3d, h_conv_transpose_module),
    (nn.BatchNorm1d, h_batchnorm_module), (nn.BatchNorm2d, h_batchnorm_module), (nn.BatchNorm3d, h_batchnorm_module),
    (nn.AvgPool1d, h_avgpool_module), (nn.AvgPool2d, h_avgpool_module), (nn.AvgPool3d, h_avgpool_module),
    (nn.AdaptiveAvgPool1d, h_adaptive_avg), (nn.AdaptiveAvgPool2d, h_adaptive_avg), (nn.AdaptiveAvgPool3d, h_adaptive_avg),
    (nn.MaxPool1d, h_maxpool_module), (nn.MaxPool2d, h_maxpool_module), (nn.MaxPool3d, h_maxpool_module),
    (nn.AdaptiveMaxPool1d, h_adaptive_max), (nn.AdaptiveMaxPool2d, h_adaptive_max), (nn.AdaptiveMaxPool3d, h_adaptive_max),
    (nn.Flatten, h_reshape), (nn.Unflatten, h_reshape),
    (nn.ConstantPad1d, h_pad_module), (nn.ConstantPad2d, h_pad_module), (nn.ConstantPad3d, h_pad_module),
    (nn.ZeroPad2d, h_pad_module),
    (nn.Identity, passthrough), (nn.Dropout, passthrough), (nn.Dropout1d, passthrough), (nn.Dropout2d, passthrough),
    (nn.Dropout3d, passthrough), (nn.AlphaDropout, passthrough),
    (nn.ReLU6, lambda c: clamp(c, 0.0, 6.0)),
    (nn.ReLU, _simple("relu")),
    (nn.LeakyReLU, lambda c: act(c, "leaky_relu", negative_slope=float(c.mod.negative_slope))),
    (nn.Tanh, _simple("tanh")), (nn.Sigmoid, _simple("sigmoid")),
    (nn.ELU, lambda c: act(c, "elu", alpha=float(c.mod.alpha))),
    (nn.Softplus, lambda c: softplus(c, float(c.mod.beta), float(c.mod.threshold))),
    (nn.Hardtanh, lambda c: clamp(c, c.mod.min_val, c.mod.max_val)),
    (nn.SiLU, _simple("silu")), (nn.GELU, h_gelu), (nn.Mish, _simple("mish")),
    (nn.Hardsigmoid, _simple("hardsigmoid")), (nn.Hardswish, _simple("hardswish")),
    (nn.Softmax, h_softmax_module), (nn.LogSoftmax, h_softmax_module),
]

ONNX2TORCH_HANDLERS: dict[str, Callable[[Call], Sym]] = {
    "OnnxBinaryMathOperation": h_onnx_binary,
    "OnnxSum": h_onnx_sum,
    "OnnxReshape": h_reshape,
    "OnnxFlatten": h_reshape,
    "OnnxSqueezeStaticAxes": h_reshape,
    "OnnxSqueezeDynamicAxes": h_reshape,
    "OnnxUnsqueezeStaticAxes": h_reshape,
    "OnnxUnsqueezeDynamicAxes": h_reshape,
    "OnnxGemm": h_gemm,
    "OnnxMatMul": h_matmul,
    "OnnxPadStatic": h_onnx_pad_static,
    "OnnxPadDynamic": h_onnx_pad_dynamic,
    "OnnxCast": h_cast,
    "OnnxCopyIdentity": passthrough,
    "OnnxDropoutDynamic": passthrough,
    "OnnxGlobalAveragePool": h_global_avg,
    "OnnxGlobalAveragePoolWithKnownInputShape": h_global_avg,
    "OnnxBatchNorm": h_onnx_batchnorm,
    "OnnxConcat": h_onnx_concat,
    "OnnxTranspose": h_onnx_transpose,
    "OnnxClip": lambda c: clamp(c, c.mod.min_val, c.mod.max_val),
    "OnnxHardSigmoid": h_onnx_hardsigmoid,
    "OnnxFunction": h_onnx_function,
    "OnnxSoftmaxV1V11": h_onnx_softmax,
    "OnnxNeg": h_neg,
    "OnnxReduceStaticAxes": h_onnx_reduce,
}

FUNCTION_HANDLERS: dict[Any, Callable[[Call], Sym]] = {
    F.linear: h_linear_fn,
    torch.matmul: h_matmul, operator.matmul: h_matmul, torch.mm: h_matmul,
    F.conv1d: h_conv_fn, F.conv2d: h_conv_fn, F.conv3d: h_conv_fn,
    F.conv_transpose1d: h_conv_transpose_fn, F.conv_transpose2d: h_conv_transpose_fn,
    F.conv_transpose3d: h_conv_transpose_fn,
    F.batch_norm: h_batchnorm_fn,
    F.avg_pool1d: h_avgpool_fn, F.avg_pool2d: h_avgpool_fn, F.avg_pool3d: h_avgpool_fn,
    F.adaptive_avg_pool1d: h_adaptive_avg, F.adaptive_avg_pool2d: h_adaptive_avg, F.adaptive_avg_pool3d: h_adaptive_avg,
    F.max_pool1d: h_maxpool_fn, F.max_pool2d: h_maxpool_fn, F.max_pool3d: h_maxpool_fn,
    torch.flatten: h_reshape, torch.reshape: h_reshape, torch.squeeze: h_reshape, torch.unsqueeze: h_reshape,
    torch.permute: h_permute, torch.transpose: h_transpose, torch.swapaxes: h_transpose,
    F.pad: h_pad_fn,
    operator.add: _binary_handler("add"), operator.iadd: _binary_handler("add"), torch.add: _binary_handler("add"),
    operator.sub: _binary_handler("sub"), operator.isub: _binary_handler("sub"), torch.sub: _binary_handler("sub"),
    torch.subtract: _binary_handler("sub"),
    operator.mul: _binary_handler("mul"), operator.imul: _binary_handler("mul"), torch.mul: _binary_handler("mul"),
    torch.multiply: _binary_handler("mul"),
    operator.truediv: _binary_handler("div"), operator.itruediv: _binary_handler("div"), torch.div: _binary_handler("div"),
    torch.true_divide: _binary_handler("div"), torch.divide: _binary_handler("div"),
    torch.rsub: h_rsub, operator.neg: h_neg, torch.neg: h_neg, operator.pos: passthrough,
    torch.cat: h_cat, torch.concat: h_cat, torch.concatenate: h_cat,
    torch.mean: h_mean,
    torch.relu: _simple("relu"), F.relu: _simple("relu"), F.relu6: lambda c: clamp(c, 0.0, 6.0),
    F.leaky_relu: h_leaky_fn, torch.tanh: _simple("tanh"), F.tanh: _simple("tanh"),
    torch.sigmoid: _simple("sigmoid"), F.sigmoid: _simple("sigmoid"), F.elu: h_elu_fn, F.softplus: h_softplus_fn,
    F.hardtanh: h_hardtanh_fn, torch.clamp: h_clamp, torch.clip: h_clamp, F.silu: _simple("silu"),
    F.gelu: h_gelu, F.mish: _simple("mish"), F.hardsigmoid: _simple("hardsigmoid"), F.hardswish: _simple("hardswish"),
    F.softmax: h_softmax_fn(False), torch.softmax: h_softmax_fn(False),
    F.log_softmax: h_softmax_fn(True), torch.log_softmax: h_softmax_fn(True),
    F.dropout: passthrough, F.dropout1d: passthrough, F.dropout2d: passthrough, F.dropout3d: passthrough,
    F.alpha_dropout: passthrough,
}

METHOD_HANDLERS: dict[str, Callable[[Call], Sym]] = {
    "view": h_reshape, "reshape": h_reshape, "flatten": h_reshape, "squeeze": h_reshape, "unsqueeze": h_reshape,
    "view_as": h_reshape, "reshape_as": h_reshape,
    "permute": h_permute, "transpose": h_transpose, "swapaxes": h_transpose,
    "contiguous": passthrough, "clone": passthrough, "detach": passthrough,
    "float": h_cast, "double": h_cast, "to": h_cast, "type": h_cast, "type_as": h_cast,
    "add": _binary_handler("add"), "sub": _binary_handler("sub"), "mul": _binary_handler("mul"),
    "div": _binary_handler("div"), "__add__": _binary_handler("add"), "__sub__": _binary_handler("sub"),
    "__mul__": _binary_handler("mul"), "__truediv__": _binary_handler("div"),
    "__radd__": lambda c: binary(c, "add", c.args[1], c.args[0]),
    "__rsub__": h_rsub, "__rmul__": lambda c: binary(c, "mul", c.args[1], c.args[0]),
    "neg": h_neg, "__neg__": h_neg,
    "matmul": h_matmul, "mm": h_matmul,
    "mean": h_mean,
    "relu": _simple("relu"), "tanh": _simple("tanh"), "sigmoid": _simple("sigmoid"),
    "clamp": h_clamp, "clip": h_clamp,
    "softmax": h_softmax_fn(False), "log_softmax": h_softmax_fn(True),
}

_SHAPE_QUERY_METHODS = {"size", "dim", "numel", "ndimension", "nelement", "get_device"}


def _module_handler(mod: nn.Module) -> Callable[[Call], Sym] | None:
    if type(mod).__module__.startswith("onnx2torch"):
        return ONNX2TORCH_HANDLERS.get(type(mod).__name__)
    for cls, handler in MODULE_HANDLERS:
        if type(mod) is cls:
            return handler
    for cls, handler in MODULE_HANDLERS:
        if isinstance(mod, cls):
            return handler
    return None


def _sequential(cv: Converter, node: fx.Node, seq: nn.Sequential, args: tuple, out: Any) -> Sym:
    """A container called as one module (onnx2torch wraps asymmetric padding + conv this way)."""
    if len(args) != 1 or not isinstance(args[0], Sym):
        raise Unsupported("Sequential", "called with several inputs")
    value: Any = args[0]
    for i, (child_name, child) in enumerate(seq.named_children()):
        with torch.no_grad():
            child_out = child(value.value)
        handler = _module_handler(child)
        label = f"{type(child).__name__}"
        if handler is None:
            raise Unsupported(label)
        call = Call(cv, f"{node.name}_{child_name}", f"{label} '{node.target}.{child_name}'", label, (value,), {}, child_out, child)
        value = handler(call)
        if not value.stripped:
            value = Sym(value.name, child_out, None)
    return value


def convert(cv: Converter, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> Any:
    """Map one fx node with at least one symbolic argument (see module docstring)."""
    op = cv.describe(node)
    mod = cv.modules.get(str(node.target)) if node.op == "call_module" else None
    # Shape queries give constants (computed on the example input).
    if node.op == "call_function" and node.target is getattr:
        return out
    if node.op == "call_method" and node.target in _SHAPE_QUERY_METHODS:
        return out
    if mod is not None and type(mod).__name__ == "OnnxShape":
        return out
    if node.op == "call_function" and node.target is operator.getitem and not isinstance(args[0], Sym):
        raise Unsupported(op, "indexing into a value that depends on the input")
    handler: Callable[[Call], Sym] | None
    if mod is not None:
        if type(mod) is nn.Sequential:
            sym = _sequential(cv, node, mod, args, out)
            return sym if sym.stripped else Sym(sym.name, out, node.name)
        handler = _module_handler(mod)
    elif node.op == "call_function":
        handler = FUNCTION_HANDLERS.get(node.target)
    else:
        handler = METHOD_HANDLERS.get(str(node.target))
    if handler is None:
        if node.op == "call_function" and node.target is operator.getitem:
            raise Unsupported("indexing/slicing", "slicing an input-dependent tensor is not supported")
        raise Unsupported(op)
    if not isinstance(out, torch.Tensor):
        raise Unsupported(op, "returns several values")
    call = Call(cv, node.name, cv.source(node), op, tuple(args), dict(kwargs), out, mod)
    sym = handler(call)
    if sym.stripped:
        return sym
    return Sym(sym.name, out, node.name)
