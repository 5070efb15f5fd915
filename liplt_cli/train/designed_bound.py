r"""The "designed" ℓ2 Lipschitz bound of a stack of Proposition 2 layers.

For a model built as a chain (stem → layers → downsampling → head), the Lipschitz constant of the
composition is at most the product of its parts' constants:

* a Proposition 2 layer: its certified :math:`\sqrt{\rho_i}` (the stored scale s, by the LMI of
  Proposition 2, see :mod:`liplt_cli.train.lipschitz_layers`) plus the effect of rounding the
  folded weight G of the exported form (:func:`~liplt_cli.train.prop2_export.fold_rounding_bound`),
  so the bound holds for the module in eval mode and for its plain export alike;
* ``nn.Linear``: its spectral norm (certified eigenvalue, *exact*);
* ``nn.Conv2d``: the FFT bound on the zero-padded grid (*upper bound*);
* ``nn.Flatten`` / ``nn.Identity``: 1 (*exact*).

This is the bound the layers are designed to give (the paper's :math:`\prod_i \rho_i^{1/2}`);
LipLT on the whole DAG (Theorem 3) can be tighter because it sees the coupling between layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from liplt_cli.graph.linear_ops import Conv
from liplt_cli.lipschitz.norms import SAFETY, conv_fft_bound, spectral_norm_explicit
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.train.lipschitz_layers import Prop2Layer
from liplt_cli.train.prop2_export import fold_layer, fold_rounding_bound

__all__ = ["BoundFactor", "DesignedBound", "designed_bound"]

_U64 = 2.0**-53


@dataclass(frozen=True)
class BoundFactor:
    """One factor of the product: a module, its ℓ2 Lipschitz bound and its guarantee."""

    name: str
    kind: str
    value: float
    guarantee: Guarantee
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "value": self.value,
                "guarantee": self.guarantee.value, "note": self.note}


@dataclass(frozen=True)
class DesignedBound:
    """Product of the factors' bounds: an upper bound on the model's ℓ2 Lipschitz constant."""

    value: float
    guarantee: Guarantee
    factors: tuple[BoundFactor, ...]

    @property
    def layer_product(self) -> float:
        """Product of the Proposition 2 layers' factors alone (∏ √ρ_i, with fold rounding)."""
        out = 1.0
        for f in self.factors:
            if f.kind == "prop2":
                out *= f.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "guarantee": self.guarantee.value, "norm": "2",
                "factors": [f.to_dict() for f in self.factors]}


def _factor(name: str, module: nn.Module, x: torch.Tensor) -> BoundFactor:
    if isinstance(module, Prop2Layer):
        folded = fold_layer(module)
        s = float(folded.identity_scale)
        extra = fold_rounding_bound(folded)
        value = (s + extra) * (1 + 4 * _U64)
        note = f"certified √ρ = {s:.9g} (T = {module.t_choice}) + fold rounding ≤ {extra:.3g}"
        return BoundFactor(name, "prop2", value, Guarantee.UPPER_BOUND, note)
    if isinstance(module, (nn.Flatten, nn.Identity)):
        return BoundFactor(name, "reshape", 1.0, Guarantee.EXACT)
    if isinstance(module, nn.Linear):
        w = module.weight.detach().to(torch.float64)
        return BoundFactor(name, "linear", float(spectral_norm_explicit(w)), Guarantee.EXACT,
                           "spectral norm (certified eigenvalue)")
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        op = Conv(module.weight.detach().to(torch.float64), None, tuple(module.stride), tuple(module.padding),
                  tuple(module.dilation), module.groups, tuple(x.shape[1:]), tuple(module(x).shape[1:]))
        return BoundFactor(name, "conv", float(conv_fft_bound(op)) * (1 + SAFETY), Guarantee.UPPER_BOUND,
                           "FFT bound on the zero-padded grid")
    raise TypeError(f"designed_bound: no Lipschitz bound for module '{name}' ({type(module).__name__})")


@torch.no_grad()
def designed_bound(model: nn.Module, input_shape: tuple[int, ...]) -> DesignedBound:
    """Upper bound on the ℓ2 Lipschitz constant of ``model`` (an ``nn.Sequential`` chain of
    Proposition 2 layers, linear/conv layers and flattening) as the product of its factors.

    The bound holds for the model in eval mode and for its plain export (:func:`plain_module`).
    Raises ``TypeError`` for a module without a known bound (e.g. a separate activation).
    """
    children = list(model.named_children()) if isinstance(model, nn.Sequential) else [("layer", model)]
    was_training = model.training
    model.eval()
    try:
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        x = torch.zeros((1, *input_shape), dtype=dtype)
        factors = []
        for name, module in children:
            factors.append(_factor(name, module, x))
            x = module(x)
    finally:
        model.train(was_training)
    value = 1.0
    for f in factors:
        value *= f.value
    value *= 1 + 2 * (len(factors) + 1) * _U64
    guarantee = Guarantee.weakest([f.guarantee for f in factors])
    return DesignedBound(value, guarantee, tuple(factors))
