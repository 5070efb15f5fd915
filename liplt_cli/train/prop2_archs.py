r"""Architectures built from Proposition 2 layers (``liplt train --arch prop2-...``).

Two families; ``T`` is one of ``sn``, ``aol``, ``sll`` (default ``sll``), ``rho=learn`` (default:
ρ learned per layer, starting at 1) or ``rho=VALUE`` (fixed ρ; ``rho=1`` gives SLL layers):

* ``prop2-mlp:KxN[,T][,rho=...][,nostem]`` -- flatten → linear stem to width N → K dense
  Proposition 2 layers of width N (W is N×N) → linear head.  ``nostem`` drops the stem (then N
  must equal the flattened input size).
* ``prop2-conv:KxC1-C2-...[,T][,rho=...]`` -- a 3×3 conv stem to C1 channels, then for each
  stage i: K convolutional Proposition 2 layers with C_i channels (3×3 kernels, zero padding 1)
  and a 4×4 stride-2 conv (padding 1) to C_{i+1} channels (C_i for the last stage) that halves
  the image → flatten → linear head.

The stem, downsampling convs and head are linear; all nonlinearity is inside the Proposition 2
layers, so the model's ℓ2 Lipschitz constant is at most ‖stem‖ · ∏ √ρ_i · ∏ ‖down_i‖ · ‖head‖
(:func:`~liplt_cli.train.designed_bound.designed_bound`).  The activation (``--activation``) must
be monotone (α ≥ 0): relu, tanh, sigmoid, leaky_relu, elu or softplus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from liplt_cli.errors import ArgumentError
from liplt_cli.train.lipschitz_layers import T_CHOICES, Prop2Conv, Prop2Dense

__all__ = ["Prop2Spec", "Prop2Sequential", "parse_prop2_spec", "build_prop2_arch", "is_prop2_arch", "PROP2_PREFIXES"]

PROP2_PREFIXES = ("prop2-mlp", "prop2-conv")
_HELP = "prop2-mlp:KxN[,sn|aol|sll][,rho=learn|VALUE][,nostem] or prop2-conv:KxC1-C2-...[,sn|aol|sll][,rho=learn|VALUE]"


@dataclass(frozen=True)
class Prop2Spec:
    """A parsed ``prop2-*`` architecture name."""

    family: str  # "mlp" or "conv"
    depth: int  # Proposition 2 layers per stage
    widths: tuple[int, ...]  # N (mlp) or C1, C2, ... (conv)
    t_choice: str = "sll"
    rho: float | None = None  # None: learned
    stem: bool = True


class Prop2Sequential(nn.Sequential):
    """``nn.Sequential`` of Proposition 2 layers and linear maps, with a plain export."""

    def to_plain(self) -> nn.Sequential:
        """The model with T folded into the weights (standard layers only, eval mode)."""
        from liplt_cli.train.prop2_export import plain_module

        return plain_module(self)

    def training_bound(self, graph):
        """CRM pairwise constants from the layer structure on ``graph`` (traced from this model):
        :class:`~liplt_cli.train.prop2_training.Prop2TrainingBound`."""
        from liplt_cli.train.prop2_training import Prop2TrainingBound

        return Prop2TrainingBound(self, graph)


def _bad(name: str, why: str) -> ArgumentError:
    return ArgumentError(f"bad architecture '{name}': {why}; expected {_HELP}")


def parse_prop2_spec(name: str) -> Prop2Spec:
    """Parse ``prop2-mlp:...`` / ``prop2-conv:...`` (see the module docstring)."""
    head, _, body = name.partition(":")
    family = head.strip().lower()
    if family not in PROP2_PREFIXES:
        raise _bad(name, f"unknown family '{head}'")
    parts = [p.strip() for p in body.split(",")]
    if not parts or not parts[0]:
        raise _bad(name, "missing KxN")
    depth_s, sep, widths_s = parts[0].lower().partition("x")
    try:
        depth = int(depth_s)
        widths = tuple(int(w) for w in widths_s.split("-"))
    except ValueError:
        raise _bad(name, f"'{parts[0]}' is not K x width(s)") from None
    if not sep or depth < 1 or not widths or any(w < 1 for w in widths):
        raise _bad(name, f"'{parts[0]}' needs a positive depth K and positive widths")
    if family == "prop2-mlp" and len(widths) != 1:
        raise _bad(name, "prop2-mlp takes one width N")
    t_choice, rho, stem = "sll", None, True
    for opt in parts[1:]:
        key = opt.lower()
        if key in T_CHOICES:
            t_choice = key
        elif key.startswith("rho="):
            value = key[4:]
            if value == "learn":
                rho = None
            else:
                try:
                    rho = float(value)
                except ValueError:
                    raise _bad(name, f"rho must be 'learn' or a positive number, got '{value}'") from None
                if not (math.isfinite(rho) and rho > 0):
                    raise _bad(name, f"rho must be positive, got '{value}'")
        elif key == "nostem" and family == "prop2-mlp":
            stem = False
        else:
            raise _bad(name, f"unknown option '{opt}'")
    return Prop2Spec(family.split("-")[1], depth, widths, t_choice, rho, stem)


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def build_prop2_arch(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    activation: str = "relu",
) -> Prop2Sequential:
    """Build a ``prop2-*`` architecture (see the module docstring) for per-sample ``input_shape``
    (default (1, 28, 28)) and ``num_classes`` (default 10)."""
    spec = parse_prop2_spec(name)
    shape = tuple(input_shape or (1, 28, 28))
    classes = num_classes or 10
    layers: list[nn.Module] = []
    if spec.family == "mlp":
        (width,) = spec.widths
        features = math.prod(shape)
        layers.append(nn.Flatten())
        if spec.stem:
            layers.append(nn.Linear(features, width))
        elif width != features:
            raise _bad(name, f"nostem needs N = the flattened input size {features}, got {width}")
        for _ in range(spec.depth):
            layers.append(Prop2Dense(width, activation=activation, t_choice=spec.t_choice, rho=spec.rho))
        layers.append(nn.Linear(width, classes))
        return Prop2Sequential(*layers)
    if len(shape) != 3:
        raise _bad(name, f"prop2-conv needs image inputs (C, H, W), got shape {list(shape)}")
    c, h, w = shape
    layers.append(nn.Conv2d(c, spec.widths[0], 3, 1, 1))
    for i, width in enumerate(spec.widths):
        for _ in range(spec.depth):
            layers.append(Prop2Conv(width, (h, w), activation=activation, t_choice=spec.t_choice, rho=spec.rho))
        nxt = spec.widths[i + 1] if i + 1 < len(spec.widths) else width
        if min(h, w) < 2:
            raise _bad(name, f"too many stages for a {shape[1]}×{shape[2]} input")
        layers.append(nn.Conv2d(width, nxt, 4, 2, 1))
        h, w = _conv_out(h, 4, 2, 1), _conv_out(w, 4, 2, 1)
    layers.append(nn.Flatten())
    layers.append(nn.Linear(spec.widths[-1] * h * w, classes))
    return Prop2Sequential(*layers)


def is_prop2_arch(name: str) -> bool:
    """Whether ``name`` names a Proposition 2 architecture."""
    return name.strip().lower().startswith(PROP2_PREFIXES)

