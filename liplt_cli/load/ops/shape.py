"""Shape ops: reshape/flatten/squeeze, permute/transpose, zero padding, concatenation, and the
ops that leave the value as it is (Identity, Dropout in eval mode, a cast to a float type).

None of them may touch the batch axis; each is an exact linear map (Reshape, Permute and Pad
have operator norm 1) or no node at all.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.graph import Pad, Permute, Reshape
from liplt_cli.load.ops.call import Call, is_zero
from liplt_cli.load.registry import converts
from liplt_cli.load.values import Sym


@converts(label=("Identity", "Dropout"),
          modules=(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout),
          onnx=("OnnxCopyIdentity", "OnnxDropoutDynamic"),
          functions=(operator.pos, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout),
          methods=("contiguous", "clone", "detach"))
def passthrough(c: Call) -> Sym:
    """The value as it is (the op must keep the tensor's shape and floating type)."""
    s = c.src
    if not isinstance(c.out, torch.Tensor) or not c.out.is_floating_point() or tuple(c.out.shape) != tuple(s.value.shape):
        raise c.unsupported("changes the tensor's shape or type")
    return Sym(s.name, c.out, None)


@converts(label="Cast to float", onnx=("OnnxCast",), methods=("float", "double", "to", "type", "type_as"))
def h_cast(c: Call) -> Sym:
    if not isinstance(c.out, torch.Tensor) or not c.out.is_floating_point():
        raise c.unsupported("cast to a non-floating type")
    return passthrough(c)


@converts(label=("Flatten", "Reshape/view", "Squeeze/Unsqueeze"),
          modules=(nn.Flatten, nn.Unflatten),
          onnx=("OnnxReshape", "OnnxFlatten", "OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes",
                "OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes"),
          functions=(torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze),
          methods=("view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"))
def h_reshape(c: Call) -> Sym:
    x = c.src
    out = c.out
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != x.batch or out.numel() != x.value.numel():
        raise c.unsupported("reshape that mixes the batch axis with the others")
    shape = tuple(out.shape[1:])
    if shape == x.shape:
        return Sym(x.name, out, None)
    return c.builder.linear(x, Reshape(x.shape, shape), c.name, c.source, value=out)


def permute(c: Call, x: Sym, perm: list[int]) -> Sym:
    rank = x.value.dim()
    perm = [int(p) % rank for p in perm]
    if sorted(perm) != list(range(rank)) or perm[0] != 0:
        raise c.unsupported(f"permutation {perm} moves the batch axis")
    per = tuple(p - 1 for p in perm[1:])
    if per == tuple(range(rank - 1)):
        return Sym(x.name, c.out, None)
    return c.builder.linear(x, Permute(per, x.shape), c.name, c.source)


@converts(label="Transpose/Permute", functions=(torch.permute,), methods=("permute",))
def h_permute(c: Call) -> Sym:
    dims = list(c.args[1:]) if len(c.args) > 2 else c.arg(1, "dims")
    if isinstance(dims, int):
        dims = [dims]
    return permute(c, c.src, list(dims))


@converts(label="Transpose/Permute", functions=(torch.transpose, torch.swapaxes), methods=("transpose", "swapaxes"))
def h_transpose(c: Call) -> Sym:
    x = c.src
    rank = x.value.dim()
    d0, d1 = int(c.arg(1, "dim0")) % rank, int(c.arg(2, "dim1")) % rank
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(c, x, perm)


@converts(label="Transpose/Permute", onnx=("OnnxTranspose",))
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
    if value is not None and not is_zero(value if not isinstance(value, torch.Tensor) else value.float()):
        raise c.unsupported(f"Pad with the non-zero value {float(value)}")
    rank = len(x.shape)
    while len(pads) > 2 * rank:
        if pads[-2:] != [0, 0]:
            raise c.unsupported("padding of the batch axis")
        pads = pads[:-2]
    if not any(pads):
        return Sym(x.name, c.out, None)
    return c.builder.linear(x, Pad(tuple(pads), x.shape), c.name, c.source)


def _onnx_pads_to_torch(pads: list[int]) -> list[int]:
    half = len(pads) // 2
    begin, end = pads[:half], pads[half:]
    result: list[int] = []
    for d in reversed(range(half)):
        result += [begin[d], end[d]]
    return result


@converts(label="Pad (zeros)", functions=(F.pad,))
def h_pad_fn(c: Call) -> Sym:
    return pad(c, c.args[0], c.arg(1, "pad"), c.arg(2, "mode", "constant"), c.arg(3, "value", 0))


@converts(label="Pad (zeros)", modules=(nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ZeroPad2d))
def h_pad_module(c: Call) -> Sym:
    return pad(c, c.src, c.mod.padding, "constant", getattr(c.mod, "value", 0))


@converts(label="Pad (zeros)", onnx=("OnnxPadStatic",))
def h_onnx_pad_static(c: Call) -> Sym:
    return pad(c, c.src, list(c.mod.pads), c.mod.mode, c.mod.constant_value)


@converts(label="Pad (zeros)", onnx=("OnnxPadDynamic",))
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
    return c.builder.concat(list(tensors), dim - 1, c.name, c.source, c.out)


@converts(label="Concat", functions=(torch.cat, torch.concat, torch.concatenate))
def h_cat(c: Call) -> Sym:
    return cat(c, list(c.arg(0, "tensors")), c.arg(1, "dim", 0))


@converts(label="Concat", onnx=("OnnxConcat",))
def h_onnx_concat(c: Call) -> Sym:
    return cat(c, list(c.args), c.mod.axis)
