"""Linear layers: Dense (Linear, Gemm, MatMul with a constant), convolutions, eval BatchNorm.

* Dense ``y = xWᵀ + b``; ``constant @ x`` acts on the second-to-last axis of ``x``, so it is
  written as Permute · Dense · Permute;
* Conv / ConvTranspose (1-3 spatial axes, zero padding; ``padding="same"`` with an odd total
  becomes an explicit Pad first);
* eval-mode BatchNorm is the per-channel Affine ``y = s⊙x + t`` with ``s = γ/√(σ²+ε)``,
  ``t = β − μ s`` (new tensors, computed with autograd enabled).

The module's own weights are stored as they are (shared), so bounds computed on the graph are
differentiable in the parameters and follow in-place optimiser updates.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.errors import ModelLoadError
from liplt_cli.graph import Affine, Conv, ConvTranspose, Dense, Pad, Permute
from liplt_cli.load.ops.call import Call, int_tuple
from liplt_cli.load.registry import converts
from liplt_cli.load.values import Sym


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
    return c.builder.linear(x, op, c.name, c.source)


def functional_operands(c: Call) -> tuple[Sym, torch.Tensor | None, torch.Tensor | None]:
    """``(input, weight, bias)`` of ``F.linear``, ``F.conv*`` or ``F.conv_transpose*``.

    When the data operand is constant, the input-dependent operand is a weight: a clear error.
    """
    x = c.arg(0, "input")
    if not isinstance(x, Sym):
        c.const_weight(c.arg(1, "weight"))
        c.const_weight(c.arg(2, "bias"), "bias")
        raise c.unsupported()
    return x, c.const_weight(c.arg(1, "weight")), c.const_weight(c.arg(2, "bias"), "bias")


@converts(label="Linear/Gemm", modules=(nn.Linear,))
def h_linear_module(c: Call) -> Sym:
    return dense(c, c.src, c.mod.weight, c.mod.bias)


@converts(label="Linear/Gemm", functions=(F.linear,))
def h_linear_fn(c: Call) -> Sym:
    return dense(c, *functional_operands(c))


@converts(label="MatMul with a constant", onnx=("OnnxMatMul",), functions=(torch.matmul, operator.matmul, torch.mm),
          methods=("matmul", "mm"))
def h_matmul(c: Call) -> Sym:
    a, b = c.arg(0, "input"), c.arg(1, "other")
    if isinstance(a, Sym) and isinstance(b, Sym):
        raise ModelLoadError(
            f"node '{c.name}' ({c.op}): its weight depends on the model input (both factors of the "
            "product do); only products with a constant weight are supported"
        )
    if isinstance(a, Sym):
        w = c.builder.const(b)
        if w.dim() != 2:
            raise c.unsupported(f"constant factor of rank {w.dim()}")
        return dense(c, a, w.t(), None)
    # constant @ x: acts on the second-to-last axis of x.
    w = c.builder.const(a)
    x = b
    if w.dim() != 2 or len(x.shape) < 2:
        raise c.unsupported("constant @ input needs a 2-D constant and an input of rank >= 2 per sample")
    r = len(x.shape)
    perm = tuple(range(r - 2)) + (r - 1, r - 2)
    t = c.builder.linear(x, Permute(perm, x.shape), c.name + "_T", c.source)
    y = dense(c, t, w, None)
    return c.builder.linear(y, Permute(perm, y.shape), c.name + "_Tback", c.source)


@converts(label="Linear/Gemm", onnx=("OnnxGemm",))
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


def _named_padding(c: Call, x: Sym, padding: str, k: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[Sym, tuple]:
    """``padding="valid"|"same"`` as explicit padding; an uneven "same" becomes a Pad node first."""
    n = len(k)
    if padding == "valid":
        return x, (0,) * n
    if padding != "same":
        raise c.unsupported(f"padding '{padding}'")
    left, right = _same_padding(k, dilation)
    if left == right:
        return x, left
    pads: list[int] = []
    for d in reversed(range(n)):
        pads += [left[d], right[d]]
    return c.builder.linear(x, Pad(tuple(pads), x.shape), c.name + "_pad", c.source), (0,) * n


def conv(c: Call, x: Sym, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups: int) -> Sym:
    n = weight.dim() - 2
    if n not in (1, 2, 3) or len(x.shape) != n + 1:
        raise c.unsupported(f"convolution of input {list(x.shape)} with weight {list(weight.shape)}")
    k = tuple(weight.shape[2:])
    stride, dilation = int_tuple(stride, n), int_tuple(dilation, n)
    if isinstance(padding, str):
        x, padding = _named_padding(c, x, padding, k, dilation)
    padding = int_tuple(padding, n)
    out_spatial = tuple(
        (x.shape[1 + d] + 2 * padding[d] - dilation[d] * (k[d] - 1) - 1) // stride[d] + 1 for d in range(n)
    )
    op = Conv(weight, bias, stride, padding, dilation, int(groups), x.shape, (weight.shape[0], *out_spatial))
    return c.builder.linear(x, op, c.name, c.source)


@converts(label="Conv1d/2d/3d", modules=(nn.Conv1d, nn.Conv2d, nn.Conv3d))
def h_conv_module(c: Call) -> Sym:
    m = c.mod
    if m.padding_mode != "zeros" and any(p != 0 for p in int_tuple(m.padding, len(m.kernel_size)) if not isinstance(m.padding, str)):
        raise c.unsupported(f"padding_mode '{m.padding_mode}'")
    return conv(c, c.src, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


@converts(label="Conv1d/2d/3d", functions=(F.conv1d, F.conv2d, F.conv3d))
def h_conv_fn(c: Call) -> Sym:
    x, weight, bias = functional_operands(c)
    return conv(c, x, weight, bias, c.arg(3, "stride", 1), c.arg(4, "padding", 0), c.arg(5, "dilation", 1),
                c.arg(6, "groups", 1))


def conv_transpose(c: Call, x: Sym, weight, bias, stride, padding, output_padding, groups, dilation) -> Sym:
    n = weight.dim() - 2
    if n not in (1, 2, 3) or len(x.shape) != n + 1:
        raise c.unsupported(f"transposed convolution of input {list(x.shape)}")
    out_shape = tuple(c.out.shape[1:])
    op = ConvTranspose(
        weight, bias, int_tuple(stride, n), int_tuple(padding, n), int_tuple(output_padding, n),
        int_tuple(dilation, n), int(groups), x.shape, out_shape,
    )
    return c.builder.linear(x, op, c.name, c.source)


@converts(label="ConvTranspose", modules=(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
def h_conv_transpose_module(c: Call) -> Sym:
    m = c.mod
    if m.padding_mode != "zeros":
        raise c.unsupported(f"padding_mode '{m.padding_mode}'")
    if c.arg(1, "output_size") is not None:
        raise c.unsupported("an explicit output_size")
    return conv_transpose(c, c.src, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


@converts(label="ConvTranspose", functions=(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d))
def h_conv_transpose_fn(c: Call) -> Sym:
    x, weight, bias = functional_operands(c)
    return conv_transpose(c, x, weight, bias, c.arg(3, "stride", 1), c.arg(4, "padding", 0),
                          c.arg(5, "output_padding", 0), c.arg(6, "groups", 1), c.arg(7, "dilation", 1))


# ---------------------------------------------------------------------- batch norm
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
    return c.builder.linear(x, op, c.name, c.source)


@converts(label="BatchNorm (eval)", modules=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
def h_batchnorm_module(c: Call) -> Sym:
    m = c.mod
    return batchnorm(c, c.src, m.running_mean, m.running_var, m.weight if m.affine else None,
                     m.bias if m.affine else None, m.eps)


@converts(label="BatchNorm (eval)", functions=(F.batch_norm,))
def h_batchnorm_fn(c: Call) -> Sym:
    if c.arg(5, "training", False):
        raise c.unsupported("BatchNorm in training mode")
    return batchnorm(c, c.args[0], c.arg(1, "running_mean"), c.arg(2, "running_var"), c.arg(3, "weight"),
                     c.arg(4, "bias"), float(c.arg(7, "eps", 1e-5)))


@converts(label="BatchNorm (eval)", onnx=("OnnxBatchNorm",))
def h_onnx_batchnorm(c: Call) -> Sym:
    x, w, b, mean, var = c.args[:5]
    return batchnorm(c, x, mean, var, w, b, float(c.mod.epsilon))
