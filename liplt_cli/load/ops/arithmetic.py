"""Arithmetic: sums of two tensors, and affine maps by a constant (add, sub, mul, div, neg).

``a ± b`` of two input-dependent tensors of one shape is a :class:`SumNode` (coefficients
``(1, ±α)``); an operation with a constant ``k`` is the Affine ``y = s⊙x + t`` (``x + k``:
``t = k``; ``k − x``: ``s = −1, t = k``; ``x·k``: ``s = k``; ``x/k``: ``s = 1/k``).  A product
or quotient of two input-dependent tensors is not linear; the elementwise reader
(:mod:`liplt_cli.load.elementwise`) takes those that are activations in disguise.

An operation by a constant that does nothing (``x − 0``, ``x / 1``, ``x · 1``) is dropped,
unless the constant is one of the live module's own parameters or buffers: a learned scale that
is 1.0 at trace time need not stay 1.0, and the graph shares it with the module.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from liplt_cli.graph import Affine
from liplt_cli.load.ops.call import Call, is_one, is_zero
from liplt_cli.load.registry import converts
from liplt_cli.load.values import Sym


def per_sample_const(c: Call, x: Sym, value: Any) -> torch.Tensor:
    """A constant operand as a tensor broadcastable to ``x``'s per-sample shape."""
    t = c.builder.const(value)
    if not isinstance(c.out, torch.Tensor) or tuple(c.out.shape) != tuple(x.value.shape):
        raise c.unsupported("broadcasting with the constant changes the tensor's shape")
    rank = len(x.shape)
    if t.dim() > rank:
        lead = t.dim() - rank
        if any(d != 1 for d in t.shape[:lead]):
            raise c.unsupported("the constant varies along the batch axis")
        t = t.reshape(t.shape[lead:])
    return t


def affine(c: Call, x: Sym, scale: torch.Tensor | None, shift: torch.Tensor | None, label: str,
           keep: bool = False) -> Sym:
    """``scale⊙x + shift``; a no-op is dropped unless ``keep`` (an op on the module's own tensor)."""
    if not keep and (scale is None or is_one(scale)) and (shift is None or is_zero(shift)):
        return Sym(x.name, c.out, None)  # a no-op (x - 0, x / 1, x * 1)
    if scale is None:
        scale = torch.ones((), dtype=c.builder.dtype, device=c.builder.device)
    return c.builder.linear(x, Affine(scale, shift, x.shape, label), c.name, c.source)


def _sum_of_two(c: Call, kind: str, a: Sym, b: Sym, alpha: Any) -> Sym:
    if kind not in ("add", "sub"):
        raise c.unsupported(f"{kind} of two input-dependent tensors is not linear")
    if a.shape != b.shape or tuple(c.out.shape) != tuple(a.value.shape):
        raise c.unsupported(f"{kind} of tensors of different shapes {list(a.shape)} and {list(b.shape)}")
    coeff = float(alpha) * (-1 if kind == "sub" else 1)
    return c.builder.sum([a, b], c.name, c.source, c.out, () if coeff == 1 else (1.0, coeff))


def _input_then_constant(c: Call, kind: str, x: Sym, const: Any, alpha: Any) -> Sym:
    """``x (+|-|*|/) k``."""
    k, keep = per_sample_const(c, x, const), c.builder.is_shared(const)
    if kind == "add":
        return affine(c, x, None, k * alpha if not is_one(alpha) else k, "add constant", keep)
    if kind == "sub":
        return affine(c, x, None, -(k * alpha), "subtract constant", keep)
    if kind == "mul":
        return affine(c, x, k, None, "multiply by constant", keep)
    return affine(c, x, 1.0 / k, None, "divide by constant", keep)


def _constant_then_input(c: Call, kind: str, const: Any, x: Sym, alpha: Any) -> Sym:
    """``k (+|-|*) x``; ``k / x`` is not linear."""
    k, keep = per_sample_const(c, x, const), c.builder.is_shared(const)
    if kind == "add":
        return affine(c, x, None if is_one(alpha) else torch.as_tensor(float(alpha)), k, "add constant", keep)
    if kind == "sub":
        return affine(c, x, -torch.ones((), dtype=c.builder.dtype) * float(alpha), k, "constant minus input", keep)
    if kind == "mul":
        return affine(c, x, k, None, "multiply by constant", keep)
    raise c.unsupported("division by an input-dependent tensor is not linear")


def binary(c: Call, kind: str, a: Any, b: Any, alpha: Any = 1) -> Sym:
    """``a (+|-|*|/) b`` where at least one operand is symbolic."""
    if isinstance(a, Sym) and isinstance(b, Sym):
        return _sum_of_two(c, kind, a, b, alpha)
    if isinstance(a, Sym):
        return _input_then_constant(c, kind, a, b, alpha)
    return _constant_then_input(c, kind, a, b, alpha)


_BY_CONSTANT = "Add/Sub/Mul/Div by a constant"
_ADD_SUB = ("Add/Sub of two tensors", _BY_CONSTANT)


def _operands(c: Call, kind: str) -> Sym:
    return binary(c, kind, c.arg(0, "input"), c.arg(1, "other"), c.kwargs.get("alpha", 1))


@converts(label=_ADD_SUB, functions=(operator.add, operator.iadd, torch.add),
          methods=("add", "__add__"))
def h_add(c: Call) -> Sym:
    return _operands(c, "add")


@converts(label=_ADD_SUB,
          functions=(operator.sub, operator.isub, torch.sub, torch.subtract), methods=("sub", "__sub__"))
def h_sub(c: Call) -> Sym:
    return _operands(c, "sub")


@converts(label=_BY_CONSTANT, functions=(operator.mul, operator.imul, torch.mul, torch.multiply),
          methods=("mul", "__mul__"))
def h_mul(c: Call) -> Sym:
    return _operands(c, "mul")


@converts(label=_BY_CONSTANT,
          functions=(operator.truediv, operator.itruediv, torch.div, torch.true_divide, torch.divide),
          methods=("div", "__truediv__"))
def h_div(c: Call) -> Sym:
    return _operands(c, "div")


@converts(label=_ADD_SUB, methods=("__radd__",))
def h_radd(c: Call) -> Sym:
    return binary(c, "add", c.args[1], c.args[0])


@converts(label=_BY_CONSTANT, methods=("__rmul__",))
def h_rmul(c: Call) -> Sym:
    return binary(c, "mul", c.args[1], c.args[0])


@converts(label=_ADD_SUB, functions=(torch.rsub,), methods=("__rsub__",))
def h_rsub(c: Call) -> Sym:
    return binary(c, "sub", c.arg(1, "other"), c.arg(0, "input"), c.kwargs.get("alpha", 1))


@converts(label="Neg", onnx=("OnnxNeg",), functions=(operator.neg, torch.neg), methods=("neg", "__neg__"))
def h_neg(c: Call) -> Sym:
    x = c.src
    return affine(c, x, -torch.ones((), dtype=c.builder.dtype, device=c.builder.device), None, "negate")


_ONNX_KINDS = {torch.add: "add", torch.sub: "sub", torch.mul: "mul"}


@converts(label=_ADD_SUB, onnx=("OnnxBinaryMathOperation",))
def h_onnx_binary(c: Call) -> Sym:
    """ONNX Add/Sub/Mul/Div (onnx2torch's one module for the four)."""
    m = c.mod
    fn = m.math_op_function
    kind = _ONNX_KINDS.get(fn)
    if kind is None:
        kind = "div" if getattr(fn, "__name__", "").endswith("div") else None
    if kind is None:
        raise c.unsupported()
    a, b = c.args
    if m.broadcast == 1 and m.axis is not None and isinstance(a, Sym) and not isinstance(b, Sym):
        from onnx2torch.utils.common import old_style_broadcast

        b = old_style_broadcast(a.value, c.builder.const(b), m.axis)
    return binary(c, kind, a, b)


@converts(label="Sum of tensors", onnx=("OnnxSum",))
def h_onnx_sum(c: Call) -> Sym:
    if not all(isinstance(a, Sym) for a in c.args):
        raise c.unsupported("Sum with a constant operand")
    shapes = {a.shape for a in c.args}
    if len(shapes) != 1 or tuple(c.out.shape[1:]) != c.args[0].shape:
        raise c.unsupported("Sum of tensors of different shapes")
    return c.builder.sum(list(c.args), c.name, c.source, c.out)
