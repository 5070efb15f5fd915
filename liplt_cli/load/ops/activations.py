"""Activations: elementwise slope-restricted functions φ with φ' ∈ [α, β] (eq. 3 of the paper).

Each handler maps a torch module, function or Tensor method (or an onnx2torch module) onto one
:class:`ActivationNode` built by :func:`~liplt_cli.graph.make_activation`, which knows each
activation's slopes.  ``clamp(x, 0, ∞)`` is ReLU, other clamps (Hardtanh, ReLU6, ONNX Clip) are
``clip``.  A final Softmax/LogSoftmax is stripped: bounds and radii are about the logits before
it (any other use of Softmax is refused by the walk).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.graph import Affine, make_activation
from liplt_cli.graph.slopes import softplus_jump
from liplt_cli.load.formula import SOFTPLUS_SWITCH
from liplt_cli.load.ops.call import Call
from liplt_cli.load.ops.shape import passthrough
from liplt_cli.load.registry import converts
from liplt_cli.load.values import Sym


def act(c: Call, name: str, **params: float) -> Sym:
    """One activation node ``name`` (with ``params``) on the call's input."""
    try:
        a = make_activation(name, **params)
    except ValueError as exc:
        raise c.unsupported(str(exc)) from None
    return c.builder.activation(c.src, a, c.name, c.source, c.out)


def _simple(key: str, label: str, **keys: Any) -> Callable[[Call], Sym]:
    """Register the handler of activation ``key`` (no parameters) under ``keys`` (see ``converts``)."""

    def handler(c: Call) -> Sym:
        return act(c, key)

    handler.__name__ = handler.__qualname__ = f"h_{key}"
    return converts(label=label, **keys)(handler)


h_relu = _simple("relu", "ReLU", modules=(nn.ReLU,), functions=(torch.relu, F.relu), methods=("relu",))
h_tanh = _simple("tanh", "Tanh", modules=(nn.Tanh,), functions=(torch.tanh, F.tanh), methods=("tanh",))
h_sigmoid = _simple("sigmoid", "Sigmoid", modules=(nn.Sigmoid,), functions=(torch.sigmoid, F.sigmoid),
                    methods=("sigmoid",))
h_silu = _simple("silu", "SiLU", modules=(nn.SiLU,), functions=(F.silu,))
h_mish = _simple("mish", "Mish", modules=(nn.Mish,), functions=(F.mish,))
h_hardsigmoid = _simple("hardsigmoid", "HardSigmoid", modules=(nn.Hardsigmoid,), functions=(F.hardsigmoid,))
h_hardswish = _simple("hardswish", "HardSwish", modules=(nn.Hardswish,), functions=(F.hardswish,))


def _parameter(c: Call, field: str, index: int, default: float) -> Any:
    """An activation's parameter: the module's attribute, or the function's argument."""
    return getattr(c.mod, field) if c.mod is not None else c.arg(index, field, default)


@converts(label="LeakyReLU", modules=(nn.LeakyReLU,), functions=(F.leaky_relu,))
def h_leaky_relu(c: Call) -> Sym:
    return act(c, "leaky_relu", negative_slope=float(_parameter(c, "negative_slope", 1, 0.01)))


@converts(label="ELU", modules=(nn.ELU,), functions=(F.elu,))
def h_elu(c: Call) -> Sym:
    return act(c, "elu", alpha=float(_parameter(c, "alpha", 1, 1.0)))


# ---------------------------------------------------------------------- clamps
def clamp(c: Call, lo: Any, hi: Any) -> Sym:
    """``clamp(x, lo, hi)``: nothing, ReLU (``lo = 0``, no ``hi``) or ``clip``."""

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


@converts(label="Clip/clamp", functions=(torch.clamp, torch.clip), methods=("clamp", "clip"))
def h_clamp(c: Call) -> Sym:
    return clamp(c, c.arg(1, "min"), c.arg(2, "max"))


@converts(label="Clip/clamp", onnx=("OnnxClip",))
def h_onnx_clip(c: Call) -> Sym:
    return clamp(c, c.mod.min_val, c.mod.max_val)


@converts(label="Hardtanh", modules=(nn.Hardtanh,), functions=(F.hardtanh,))
def h_hardtanh(c: Call) -> Sym:
    return clamp(c, _parameter(c, "min_val", 1, -1.0), _parameter(c, "max_val", 2, 1.0))


@converts(label="ReLU6", modules=(nn.ReLU6,), functions=(F.relu6,))
def h_relu6(c: Call) -> Sym:
    return clamp(c, 0.0, 6.0)


# ---------------------------------------------------------------------- smooth ones with parameters
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


@converts(label="Softplus", modules=(nn.Softplus,), functions=(F.softplus,))
def h_softplus(c: Call) -> Sym:
    return softplus(c, float(_parameter(c, "beta", 1, 1.0)), float(_parameter(c, "threshold", 2, 20.0)))


@converts(label="GELU (erf and tanh forms)", modules=(nn.GELU,), functions=(F.gelu,))
def h_gelu(c: Call) -> Sym:
    approx = c.mod.approximate if c.mod is not None else c.arg(1, "approximate", "none")
    if approx not in ("none", "tanh"):
        raise c.unsupported(f"GELU approximate='{approx}'")
    return act(c, "gelu" if approx == "none" else "gelu_tanh")


@converts(label="HardSigmoid", onnx=("OnnxHardSigmoid",))
def h_onnx_hardsigmoid(c: Call) -> Sym:
    """ONNX HardSigmoid: ``clip(αx + β, 0, 1)`` = Affine then Clip (HardSigmoid when α=1/6, β=1/2)."""
    a, b = float(c.mod.alpha), float(c.mod.beta)
    if abs(a - 1 / 6) < 1e-7 and abs(b - 0.5) < 1e-7:
        # exporters store α = float32(1/6) = 0.16666667…: the activation keeps the stored α, β
        return act(c, "hardsigmoid", alpha=a, beta=b)
    x = c.src
    y = c.builder.linear(
        x,
        Affine(torch.tensor(a, dtype=c.builder.dtype), torch.tensor(b, dtype=c.builder.dtype), x.shape, "HardSigmoid αx+β"),
        c.name + "_affine", c.source,
    )
    return c.builder.activation(y, make_activation("clip", min=0.0, max=1.0), c.name, c.source, c.out)


@converts(label="Tanh", onnx=("OnnxFunction",))
def h_onnx_function(c: Call) -> Sym:
    """onnx2torch's module for a torch function (only tanh is an activation here)."""
    if c.mod.function is torch.tanh:
        return act(c, "tanh")
    raise c.unsupported()


# ---------------------------------------------------------------------- a final softmax
_STRIPPED = "final Softmax/LogSoftmax (stripped)"


def softmax(c: Call, log: bool) -> Sym:
    """The logits under a final Softmax (the walk refuses anything that reads the result)."""
    x = c.src
    return Sym(x.name, x.value, x.fx_name, stripped="LogSoftmax" if log else "Softmax")


@converts(label=_STRIPPED, modules=(nn.Softmax, nn.LogSoftmax))
def h_softmax_module(c: Call) -> Sym:
    return softmax(c, isinstance(c.mod, nn.LogSoftmax))


@converts(label=_STRIPPED, functions=(F.softmax, torch.softmax), methods=("softmax",))
def h_softmax_fn(c: Call) -> Sym:
    return softmax(c, False)


@converts(label=_STRIPPED, functions=(F.log_softmax, torch.log_softmax), methods=("log_softmax",))
def h_log_softmax_fn(c: Call) -> Sym:
    return softmax(c, True)


@converts(label=_STRIPPED, onnx=("OnnxSoftmaxV1V11",))
def h_onnx_softmax(c: Call) -> Sym:
    return softmax(c, bool(c.mod.is_log))
