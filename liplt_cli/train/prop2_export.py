r"""Plain export of Proposition 2 layers: T folded into the weights.

A trained :class:`~liplt_cli.train.lipschitz_layers.Prop2Layer` in eval mode computes
:math:`h(x) = s\,x + W^\top \mathrm{diag}(t)\, \varphi(Wx + b)` with its certified stored scales
s (= √ρ) and t (= −(α+β)T/√ρ).  Its plain form is a residual DAG of standard layers that any tool
reads:

    x ──► Linear/Conv2d (W, b) ──► φ ──► Linear/ConvTranspose2d (G = Wᵀ diag(t), zero/no bias) ┐
    └──────────────────────────► Mul (s) ───────────────────────────────────────────── Add ─►

(:class:`PlainResidual`).  G is rounded to the parameters' dtype; the rounding is the only
difference from the certified layer, and :func:`fold_rounding_bound` bounds its effect on the
Lipschitz constant (see there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from liplt_cli.train.lipschitz_layers import ACTIVATION_MODULES, Prop2Conv, Prop2Dense, Prop2Layer

__all__ = ["FoldedLayer", "PlainResidual", "fold_layer", "fold_rounding_bound", "plain_module"]


@dataclass(frozen=True)
class FoldedLayer:
    """The numbers of one exported layer.

    ``weight``/``bias``: W and b of the inner map; ``outer_weight``: G in the layout of
    ``nn.Linear`` (features × hidden) or ``nn.ConvTranspose2d`` (hidden × channels × k × k);
    ``identity_scale``: s; ``t_ref``: the certified t (shape (hidden,)) that G rounds.
    """

    kind: str  # "dense" or "conv"
    weight: torch.Tensor
    bias: torch.Tensor
    outer_weight: torch.Tensor
    identity_scale: torch.Tensor
    t_ref: torch.Tensor
    activation: str
    alpha: float
    beta: float
    padding: int = 0


class PlainResidual(nn.Module):
    """``x * identity_scale + outer(act(inner(x)))`` from standard torch layers."""

    def __init__(self, inner: nn.Module, act: nn.Module, outer: nn.Module, identity_scale: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.act = act
        self.outer = outer
        self.register_buffer("identity_scale", identity_scale.detach().clone().reshape(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.identity_scale + self.outer(self.act(self.inner(x)))

    @classmethod
    def from_folded(cls, f: FoldedLayer) -> "PlainResidual":
        dtype = f.weight.dtype
        act = ACTIVATION_MODULES[f.activation]()
        if f.kind == "dense":
            hidden, features = f.weight.shape
            inner: nn.Module = nn.Linear(features, hidden).to(dtype)
            # a zero bias makes ONNX write a Gemm (row-major weight, as Linear's), not a MatMul
            # with the transposed weight, so both files give the loader the same tensor layout
            outer: nn.Module = nn.Linear(hidden, features).to(dtype)
        else:
            hidden, channels, k, _ = f.weight.shape
            inner = nn.Conv2d(channels, hidden, k, padding=f.padding).to(dtype)
            outer = nn.ConvTranspose2d(hidden, channels, k, padding=f.padding, bias=False).to(dtype)
        with torch.no_grad():
            inner.weight.copy_(f.weight)
            inner.bias.copy_(f.bias)
            outer.weight.copy_(f.outer_weight)
            if outer.bias is not None:
                outer.bias.zero_()
        return cls(inner, act, outer, f.identity_scale)


@torch.no_grad()
def fold_layer(layer: Prop2Layer) -> FoldedLayer:
    """Fold the certified scales of ``layer`` (refreshed first) into plain weights.

    G = Wᵀ diag(t) is formed from the exact float64 products of W and t (both in the parameters'
    dtype, so each product is exact in float64) and rounded once to that dtype.
    """
    layer.refresh()
    dtype = layer.weight.dtype
    w = layer.weight.detach().clone()
    b = layer.bias.detach().clone()
    s = layer.identity_scale.detach().clone()
    t = layer.t_scale.detach().clone().reshape(-1)
    if isinstance(layer, Prop2Dense):
        g = (w.to(torch.float64) * t.to(torch.float64)[:, None]).to(dtype).T.contiguous()
        kind, padding = "dense", 0
    elif isinstance(layer, Prop2Conv):
        g = (w.to(torch.float64) * t.to(torch.float64)[:, None, None, None]).to(dtype)
        kind, padding = "conv", layer.padding
    else:
        raise TypeError(f"cannot fold {type(layer).__name__}")
    return FoldedLayer(kind, w, b, g, s, t, layer.activation_name, layer.alpha, layer.beta, padding)


def fold_rounding_bound(f: FoldedLayer) -> float:
    r"""Upper bound on how much rounding G changes the layer's ℓ2 Lipschitz constant.

    With :math:`G_0 = W^\top \mathrm{diag}(t_{ref})` (the certified layer, s-Lipschitz) and
    :math:`E = G - G_0`, the plain layer is :math:`h_0(x) + E\varphi(Wx+b)`, so its constant is at
    most :math:`s + L_\varphi \|E\|_2 \|W\|_2` with :math:`L_\varphi = \max(|\alpha|, |\beta|)`.
    E is exact in float64 (a product of two float32 numbers has 48 significant bits, and the
    difference of two nearby floats is exact); :math:`\|E\|_2 \le \|E\|_F` for a matrix and
    :math:`\le k\|E\|_F` for a k×k (transposed) convolution (a sum over the :math:`k^2` taps of
    a channel matrix times a zero-filling shift, then Cauchy–Schwarz), likewise for W.  The
    returned number includes a relative margin of 1e-6 for the float64 norms.
    """
    t = f.t_ref.to(torch.float64)
    w = f.weight.to(torch.float64)
    if f.kind == "dense":
        exact = (w * t[:, None]).T
        spread = 1.0
    else:
        exact = w * t[:, None, None, None]
        spread = float(f.weight.shape[-1])
    e = f.outer_weight.to(torch.float64) - exact
    e_norm = float(torch.linalg.vector_norm(e)) * spread
    w_norm = float(torch.linalg.vector_norm(w)) * spread
    lip = max(abs(f.alpha), abs(f.beta))
    return lip * e_norm * w_norm * (1 + 1e-6)


def plain_module(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Proposition 2 layer replaced by its :class:`PlainResidual`.

    ``model`` is an ``nn.Sequential`` (as built by :mod:`liplt_cli.train.prop2_archs`) or a single
    layer; the copy is in eval mode and shares no tensors with ``model``.
    """
    if isinstance(model, Prop2Layer):
        return PlainResidual.from_folded(fold_layer(model)).eval()
    if isinstance(model, nn.Sequential):
        return nn.Sequential(*[plain_module(m) for m in model]).eval()
    if any(isinstance(m, Prop2Layer) for m in model.modules()):
        raise TypeError(f"plain_module handles nn.Sequential containers, not {type(model).__name__}")
    return copy.deepcopy(model).eval()
