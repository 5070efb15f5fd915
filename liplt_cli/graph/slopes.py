r"""Slope-restricted activations and their slope bounds.

An elementwise activation :math:`\varphi` is slope-restricted in :math:`[\alpha, \beta]` when

.. math:: \alpha \le \frac{\varphi(a) - \varphi(b)}{a - b} \le \beta \quad \forall a \ne b,

which for a differentiable :math:`\varphi` is :math:`\alpha = \inf \varphi'`, :math:`\beta = \sup
\varphi'`.  The loop transformation (eq. 12 of the paper) writes
:math:`\varphi(y) = \tfrac{\alpha+\beta}{2} y + \psi(y)` with :math:`\psi` being
:math:`\tfrac{\beta-\alpha}{2}`-Lipschitz, and the Lipschitz constant of :math:`\varphi` itself is
:math:`\max(|\alpha|, |\beta|)`.

Piecewise-linear activations have closed-form bounds.  For smooth ones (SiLU, GELU, Mish, ...)
the bounds are *computed*: :math:`\varphi'` is evaluated in float64 on a grid of step :math:`h`
over :math:`[-R, R]`, and widened by :math:`h \cdot M_2` where :math:`M_2` bounds
:math:`|\varphi''|` (itself taken from the grid and doubled), plus a margin.  Outside
:math:`[-R, R]` these functions' derivatives are monotone towards their limits (0 and 1), which
lie inside the computed interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

_GRID_RADIUS = 40.0
_GRID_POINTS = 400_001
_MARGIN = 1e-6


@dataclass(frozen=True)
class Activation:
    """An elementwise activation with its slope bounds ``alpha <= phi' <= beta``."""

    name: str
    key: str
    alpha: float
    beta: float
    params: tuple[tuple[str, float], ...] = ()
    fn: Callable[[torch.Tensor], torch.Tensor] = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant of the activation in any :math:`\\ell_p` (elementwise map)."""
        return max(abs(self.alpha), abs(self.beta))

    @property
    def center(self) -> float:
        """Slope :math:`(\\alpha+\\beta)/2` of the linear part after loop transformation."""
        return (self.alpha + self.beta) / 2

    @property
    def radius(self) -> float:
        """Lipschitz constant :math:`(\\beta-\\alpha)/2` of the loop-transformed residual ψ."""
        return (self.beta - self.alpha) / 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.name}({extra})" if extra else self.name


def _computed_slopes(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
    """Sound slope bounds of a C² activation from a dense float64 grid (see module docstring)."""
    x = torch.linspace(-_GRID_RADIUS, _GRID_RADIUS, _GRID_POINTS, dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    h = 2 * _GRID_RADIUS / (_GRID_POINTS - 1)
    widen = h * 2.0 * float(d2.abs().max()) + _MARGIN
    d1 = d1.detach()
    return float(d1.min()) - widen, float(d1.max()) + widen


def _hardswish(x: torch.Tensor) -> torch.Tensor:
    return F.hardswish(x)


def make_activation(name: str, **params: float) -> Activation:
    """Build the activation called ``name`` (case-insensitive) with its slope bounds.

    Supported: relu, leaky_relu(negative_slope), tanh, sigmoid, elu(alpha), softplus(beta),
    hardtanh(min_val, max_val), relu6, clip(min, max), silu, gelu, mish, hardsigmoid,
    hardswish, identity.
    """
    key = name.lower()
    for pname, value in params.items():  # a NaN, an infinite slope or a β <= 0 has no sound bound
        v = float(value)
        unbounded_ok = key in ("hardtanh", "clip", "relu6") and pname in ("min_val", "max_val", "min", "max")
        if v != v or (abs(v) == float("inf") and not unbounded_ok):
            raise ValueError(f"{name} parameter {pname}={v} is not a finite number")
    if key == "softplus" and not float(params.get("beta", 1.0)) > 0:
        raise ValueError(f"softplus needs beta > 0 (softplus(βx)/β), got beta={float(params['beta'])}")
    if key in ("hardtanh", "clip") and float(params.get("min_val", params.get("min", -1.0))) > float(
            params.get("max_val", params.get("max", 1.0))):
        raise ValueError(f"{name} needs min <= max, got {dict(params)}")
    p = tuple(sorted(params.items()))
    if key == "relu":
        return Activation("ReLU", key, 0.0, 1.0, p, torch.relu)
    if key == "leaky_relu":
        s = float(params.get("negative_slope", 0.01))
        return Activation("LeakyReLU", key, min(s, 1.0), max(s, 1.0), p, lambda x: F.leaky_relu(x, s))
    if key == "tanh":
        return Activation("Tanh", key, 0.0, 1.0, p, torch.tanh)
    if key == "sigmoid":
        return Activation("Sigmoid", key, 0.0, 0.25, p, torch.sigmoid)
    if key == "elu":
        a = float(params.get("alpha", 1.0))
        if a < 0:
            raise ValueError("ELU with negative alpha is not slope-restricted in a known interval")
        return Activation("ELU", key, 0.0, max(1.0, a), p, lambda x: F.elu(x, a))
    if key == "softplus":
        b = float(params.get("beta", 1.0))
        return Activation("Softplus", key, 0.0, 1.0, p, lambda x: F.softplus(x, b))
    if key in ("hardtanh", "clip", "relu6"):
        lo = float(params.get("min_val", params.get("min", 0.0 if key == "relu6" else -1.0)))
        hi = float(params.get("max_val", params.get("max", 6.0 if key == "relu6" else 1.0)))
        label = {"hardtanh": "HardTanh", "clip": "Clip", "relu6": "ReLU6"}[key]
        return Activation(label, key, 0.0, 1.0, (("max", hi), ("min", lo)), lambda x: torch.clamp(x, lo, hi))
    if key == "hardsigmoid":
        return Activation("HardSigmoid", key, 0.0, 1.0 / 6.0, p, F.hardsigmoid)
    if key == "hardswish":
        # derivative is (2x+3)/6 on [-3, 3], 0 below, 1 above: range [-1/2, 3/2].
        return Activation("HardSwish", key, -0.5, 1.5, p, _hardswish)
    if key == "identity":
        return Activation("Identity", key, 1.0, 1.0, p, lambda x: x)
    smooth: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
        "silu": ("SiLU", F.silu),
        "gelu": ("GELU", F.gelu),
        "mish": ("Mish", F.mish),
    }
    if key in smooth:
        label, fn = smooth[key]
        alpha, beta = _cached_slopes(key)
        return Activation(label, key, alpha, beta, p, fn)
    raise ValueError(f"unknown activation '{name}'")


_SLOPE_CACHE: dict[str, tuple[float, float]] = {}


def _cached_slopes(key: str) -> tuple[float, float]:
    if key not in _SLOPE_CACHE:
        fn = {"silu": F.silu, "gelu": F.gelu, "mish": F.mish}[key]
        _SLOPE_CACHE[key] = _computed_slopes(fn)
    return _SLOPE_CACHE[key]


SUPPORTED_ACTIVATIONS = (
    "relu", "leaky_relu", "tanh", "sigmoid", "elu", "softplus", "hardtanh", "clip", "relu6",
    "hardsigmoid", "hardswish", "silu", "gelu", "mish", "identity",
)

