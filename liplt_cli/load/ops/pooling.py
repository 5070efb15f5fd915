"""Pooling: average pooling (a depthwise convolution), spatial means, and MaxPool (a block).

Average pooling of window ``k`` is the depthwise convolution with weight ``1/|k|`` (groups = C);
with ``count_include_pad=False`` a per-cell Affine rescales the border cells to the mean over
their non-padded part.  Adaptive pooling is supported when the output size divides the input
size (then it is ordinary pooling), and a mean over all spatial axes is global average pooling.
MaxPool is not elementwise: it becomes a :class:`BlockNode` with a known Lipschitz constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.graph import Affine, Conv, Reshape
from liplt_cli.graph.nodes import MaxPool
from liplt_cli.load.ops.call import Call, int_tuple
from liplt_cli.load.registry import converts
from liplt_cli.load.values import Sym


def _count_exclude_pad(c: Call, y: Sym, x: Sym, k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...]) -> Sym:
    """Rescale each output cell of a sum-over-``|k|`` pooling to the mean over its non-padded cells."""
    n = len(k)
    ones = torch.ones(1, 1, *x.shape[1:], dtype=c.builder.dtype, device=c.builder.device)
    frac = F.conv2d if n == 2 else (F.conv1d if n == 1 else F.conv3d)
    covered = frac(ones, torch.ones(1, 1, *k, dtype=c.builder.dtype, device=c.builder.device), None, s, p)[0]
    return c.builder.linear(y, Affine(math.prod(k) / covered, None, y.shape, "average over non-padded cells"),
                       c.name + "_count", c.source)


def avgpool(c: Call, x: Sym, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool, divisor,
            check_out: bool = True) -> Sym:
    n = len(x.shape) - 1
    if n < 1:
        raise c.unsupported(f"average pooling of input {list(x.shape)}")
    k = int_tuple(kernel, n)
    s = int_tuple(stride if stride not in (None, [], ()) else k, n)
    p = int_tuple(padding, n)
    channels = x.shape[0]
    area = math.prod(k)
    weight = torch.full((channels, 1, *k), 1.0 / (divisor or area), dtype=c.builder.dtype, device=c.builder.device)
    out_spatial = tuple((x.shape[1 + d] + 2 * p[d] - k[d]) // s[d] + 1 for d in range(n))
    if check_out and tuple(c.out.shape[2:]) != out_spatial:
        raise c.unsupported("ceil_mode adds partial windows")
    op = Conv(weight, None, s, p, (1,) * n, channels, x.shape, (channels, *out_spatial))
    y = c.builder.linear(x, op, c.name, c.source)
    if not count_include_pad and any(p) and not divisor:
        y = _count_exclude_pad(c, y, x, k, s, p)
    return y


@converts(label="AvgPool", modules=(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
def h_avgpool_module(c: Call) -> Sym:
    m = c.mod
    return avgpool(c, c.src, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                   getattr(m, "divisor_override", None))


@converts(label="AvgPool", functions=(F.avg_pool1d, F.avg_pool2d, F.avg_pool3d))
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


@converts(label="AdaptiveAvgPool (divisible)", modules=(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
          functions=(F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d))
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
        y = c.builder.linear(y, Reshape(y.shape, (x.shape[0],)), c.name + "_squeeze", c.source)
    return y


@converts(label="GlobalAveragePool", onnx=("OnnxGlobalAveragePool", "OnnxGlobalAveragePoolWithKnownInputShape"))
def h_global_avg(c: Call) -> Sym:
    return global_average(c, c.src, True)


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


@converts(label="ReduceMean over spatial axes", functions=(torch.mean,), methods=("mean",))
def h_mean(c: Call) -> Sym:
    return mean(c, c.src, c.arg(1, "dim"), bool(c.arg(2, "keepdim", False)))


@converts(label="ReduceMean over spatial axes", onnx=("OnnxReduceStaticAxes",))
def h_onnx_reduce(c: Call) -> Sym:
    if c.mod.operation_type != "ReduceMean":
        raise c.unsupported(f"{c.mod.operation_type} is not linear" if c.mod.operation_type != "ReduceSum" else "")
    return mean(c, c.src, c.mod.axes, bool(c.mod.keepdims))


def maxpool(c: Call, x: Sym, kernel, stride, padding, dilation, ceil_mode: bool, return_indices: bool) -> Sym:
    if return_indices:
        raise c.unsupported("MaxPool returning indices")
    n = len(x.shape) - 1
    k = int_tuple(kernel, n)
    block = MaxPool(k, int_tuple(stride if stride not in (None, [], ()) else k, n), int_tuple(padding, n),
                    int_tuple(dilation, n), bool(ceil_mode))
    return c.builder.block(x, block, c.name, c.source, c.out)


@converts(label="MaxPool", modules=(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))
def h_maxpool_module(c: Call) -> Sym:
    m = c.mod
    return maxpool(c, c.src, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)


@converts(label="MaxPool", functions=(F.max_pool1d, F.max_pool2d, F.max_pool3d))
def h_maxpool_fn(c: Call) -> Sym:
    return maxpool(c, c.args[0], c.arg(1, "kernel_size"), c.arg(2, "stride"), c.arg(3, "padding", 0),
                   c.arg(4, "dilation", 1), c.arg(5, "ceil_mode", False), c.arg(6, "return_indices", False))


@converts(label="AdaptiveMaxPool (divisible)", modules=(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
def h_adaptive_max(c: Call) -> Sym:
    x = c.src
    if getattr(c.mod, "return_indices", False):
        raise c.unsupported("MaxPool returning indices")
    size = c.mod.output_size if c.mod is not None else c.arg(1, "output_size")
    k = _adaptive_kernel(c, x, size)
    return maxpool(c, x, k, k, 0, 1, False, False)
