r"""Slope-restricted activations, their proven slope bounds, and slope ranges over intervals.

An elementwise activation :math:`\varphi` is slope-restricted in :math:`[\alpha, \beta]` when

.. math:: \alpha \le \frac{\varphi(a) - \varphi(b)}{a - b} \le \beta \quad \forall a \ne b,

which for a continuous, piecewise differentiable :math:`\varphi` is :math:`\alpha = \inf \varphi'`,
:math:`\beta = \sup \varphi'` (mean value theorem).  The loop transformation (eq. 12 of the
paper) writes :math:`\varphi(y) = \tfrac{\alpha+\beta}{2} y + \psi(y)` with :math:`\psi` being
:math:`\tfrac{\beta-\alpha}{2}`-Lipschitz, and the Lipschitz constant of :math:`\varphi` itself is
:math:`\max(|\alpha|, |\beta|)`.

**Piecewise-linear and monotone activations** have closed forms: ReLU [0, 1], LeakyReLU(s)
[min(s,1), max(s,1)], Clip/HardTanh/ReLU6 [0, 1], HardSigmoid [0, 1/6], HardSwish [−1/2, 3/2]
(φ' = (2x+3)/6 on (−3, 3), 0 below, 1 above), Tanh [0, 1] (φ' = 1 − tanh²), Sigmoid [0, 1/4]
(φ' = σ(1−σ) ≤ σ(0)(1−σ(0))), Softplus(β) [0, 1] (φ' = σ(βx)), ELU(a ≥ 0) [0, max(1, a)]
(φ' = a eˣ on x < 0, 1 on x > 0).

**Smooth non-monotone activations** (SiLU, GELU with erf, GELU with tanh, Mish) are *proven*,
not sampled (see :func:`_certify`):

1. on :math:`[-R, R]` (R = 20), bisection with interval arithmetic
   (:mod:`liplt_cli.graph.interval`, outward rounding) splits the line into cells where an
   enclosure of :math:`\varphi''` excludes 0 (so :math:`\varphi'` is strictly monotone there)
   and a few *critical cells* of width ≤ 2⁻²⁰ that may contain a zero of :math:`\varphi''`;
   on a monotone cell the extrema of :math:`\varphi'` are at its ends, so over :math:`[-R, R]`
   they are among :math:`\varphi'(\pm R)` and the interval enclosures of :math:`\varphi'` on the
   critical cells;
2. for :math:`|x| \ge R` each activation has a stated tail inequality (in
   the ``_*_tails`` functions), e.g. for SiLU :math:`\sigma(R) \le \varphi'(x) \le 1 + R e^{-R}` for
   :math:`x \ge R`, because :math:`\varphi'(x) = \sigma(x) + x\sigma(x)\sigma(-x)` and
   :math:`x e^{-x}` decreases for :math:`x \ge 1`; the other side follows from
   :math:`\varphi(x) - \varphi(-x) = x`, i.e. :math:`\varphi'(-x) = 1 - \varphi'(x)` (SiLU,
   both GELUs), or its own inequality (Mish).

For GELU this finds the closed-form critical points :math:`\pm\sqrt2`
(:math:`\varphi'' = \phi(x)(2 - x^2)`), for SiLU :math:`\pm 2.3994` (roots of
:math:`x \tanh(x/2) = 2`).  The resulting [α, β] contain the exact ones and are within about
10⁻¹⁰ of them (critical cells are enclosed in the mean-value form φ'(m) + φ''(X)(X − m)).

:func:`slope_range` gives, per neuron, an interval containing :math:`\varphi'` over
:math:`[l, u]` (hence every chord slope there): closed forms for the piecewise-linear and
monotone activations, and for the smooth ones :math:`\varphi'` at the two ends (float64, widened
by 2⁻⁴⁰) plus the certified enclosures of every critical cell and tail that meets
:math:`[l, u]`, intersected with the global [α, β].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from liplt_cli.graph import interval as iv
from liplt_cli.graph.interval import Interval, Jet

_R = 20.0
_CELL = 2.0**-20
_EVAL_MARGIN = 2.0**-40  # float64 evaluation of φ' at the ends of an interval, widened by this

#: Activations :func:`make_activation` builds (``derived`` activations come from the loader only).
SUPPORTED_ACTIVATIONS = (
    "relu", "leaky_relu", "tanh", "sigmoid", "elu", "softplus", "hardtanh", "clip", "relu6",
    "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh", "mish", "identity",
)

#: Softplus thresholds below this leave a jump ``log1p(e^{-t})/β`` above float32 resolution.
SOFTPLUS_MIN_THRESHOLD = 15.0


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


# ---------------------------------------------------------------------- smooth activations
_SQRT1_2 = Interval.around(math.sqrt(0.5))
_INV_SQRT_2PI = Interval.around(1.0 / math.sqrt(2.0 * math.pi))
# GELU-tanh's two constants as intervals of relative width 2⁻²⁰ around nominal: the proven
# bounds hold for every pair of constants in them, which covers the float32-rounded constants
# the loader accepts as GELU-tanh (:mod:`liplt_cli.load.recognise`).
_GELU_TOL = 2.0**-20
_GELU_K = Interval(math.sqrt(2.0 / math.pi) * (1 - _GELU_TOL), math.sqrt(2.0 / math.pi) * (1 + _GELU_TOL))
_GELU_C = Interval(0.044715 * (1 - _GELU_TOL), 0.044715 * (1 + _GELU_TOL))


def _silu_jet(x: Jet) -> Jet:
    return x * iv.j_sigmoid(x)


def _gelu_jet(x: Jet) -> Jet:
    return 0.5 * (x * (1.0 + iv.j_erf(x * _SQRT1_2)))


def _gelu_tanh_jet(x: Jet) -> Jet:
    return 0.5 * (x * (1.0 + iv.j_tanh(_GELU_K * (x + _GELU_C * iv.j_pow_int(x, 3)))))


def _mish_jet(x: Jet) -> Jet:
    return x * iv.j_tanh(iv.j_softplus(x))


def _silu_d(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _gelu_d(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x * math.sqrt(0.5))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_tanh_d(x: torch.Tensor) -> torch.Tensor:
    k, c = math.sqrt(2.0 / math.pi), 0.044715
    t = torch.tanh(k * (x + c * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)


def _mish_d(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(F.softplus(x))
    return t + x * torch.sigmoid(x) * (1 - t * t)


def _e(v: float) -> Interval:
    return iv.exp(Interval.point(v))


def _mirror(right: Interval) -> Interval:
    """φ'(−x) = 1 − φ'(x) (for φ(x) − φ(−x) = x)."""
    return 1.0 - right


def _silu_tails(r: float) -> tuple[Interval, Interval]:
    # x ≥ R: φ' = σ(x) + xσ(x)σ(−x) ∈ [σ(R), 1 + R e^{−R}]  (x e^{−x} decreases for x ≥ 1)
    right = Interval(iv.sigmoid(Interval.point(r)).lo, (1.0 + r * _e(-r)).hi)
    return _mirror(right), right


def _gelu_tails(r: float) -> tuple[Interval, Interval]:
    # x ≥ R: φ' = Φ(x) + x φ_N(x) ∈ [Φ(R), 1 + R φ_N(R)]  (x e^{−x²/2} decreases for x ≥ 1)
    cdf = 0.5 * (1.0 + iv.erf(Interval.point(r) * _SQRT1_2))
    right = Interval(cdf.lo, (1.0 + r * (_INV_SQRT_2PI * _e(-0.5 * r * r))).hi)
    return _mirror(right), right


def _gelu_tanh_tails(r: float) -> tuple[Interval, Interval]:
    # x ≥ R ≥ 5: φ' = ½(1 + tanh u) + ½ x sech²(u) u', u = k(x + c x³) ≥ kx, u' = k(1 + 3cx²);
    # sech² u ≤ 4e^{−2u}, so the second term is ≤ 2k x(1 + 3cx²) e^{−2kx}, decreasing for x ≥ 5.
    x = Interval.point(r)
    u = _GELU_K * (x + _GELU_C * x.pow_int(3))
    low = 0.5 * (1.0 + iv.tanh(u))
    g = 2.0 * (_GELU_K * (x * (1.0 + 3.0 * (_GELU_C * x.square())))) * iv.exp(-2.0 * (_GELU_K * x))
    right = Interval(low.lo, (1.0 + g).hi)
    return _mirror(right), right


def _mish_tails(r: float) -> tuple[Interval, Interval]:
    # x ≥ R: φ' = tanh(sp(x)) + xσ(x) sech²(sp(x)), sp(x) ≥ x, so 0 ≤ second term ≤ 4x e^{−2x} ≤ 4R e^{−2R}.
    # x ≤ −R: 0 ≤ tanh(sp(x)) ≤ sp(x) ≤ eˣ ≤ e^{−R}; xσ(x)sech²(sp) ∈ [x eˣ, 0] ⊂ [−R e^{−R}, 0].
    right = Interval(iv.tanh(iv.softplus(Interval.point(r))).lo, (1.0 + 4.0 * r * _e(-2.0 * r)).hi)
    left = Interval((-(r * _e(-r))).lo, _e(-r).hi)
    return left, right


@dataclass(frozen=True)
class _Profile:
    """Certified description of φ' for a smooth activation (see module docstring)."""

    alpha: float
    beta: float
    radius: float  # R
    critical: tuple[tuple[float, float, float, float], ...]  # (x_lo, x_hi, min φ', max φ') per critical cell run
    left: Interval  # φ' on (−∞, −R]
    right: Interval  # φ' on [R, ∞)
    derivative: Callable[[torch.Tensor], torch.Tensor]


def _certify(jet: Callable[[Jet], Jet], r: float) -> list[tuple[float, float, int]]:
    """Cover [−r, r] by cells ``(a, b, sign of φ'')``; sign 0 marks a cell that may hold a zero."""
    cells: list[tuple[float, float, int]] = []
    n0 = 64
    stack = [(-r + 2 * r * k / n0, -r + 2 * r * (k + 1) / n0) for k in reversed(range(n0))]
    while stack:
        a, b = stack.pop()
        d2 = jet(Jet.variable(Interval(a, b))).d2
        assert d2 is not None
        if d2.lo > 0 or d2.hi < 0:
            cells.append((a, b, 1 if d2.lo > 0 else -1))
        elif b - a <= _CELL:
            cells.append((a, b, 0))
        else:
            m = a + (b - a) / 2
            stack.append((m, b))
            stack.append((a, m))
    cells.sort()
    return cells


def _derivative_enclosure(jet: Callable[[Jet], Jet], a: float, b: float) -> Interval:
    """φ' on [a, b]: the natural enclosure intersected with the mean-value form
    ``φ'(m) + φ''([a, b])·([a, b] − m)`` (second-order tight on a narrow cell)."""
    whole = jet(Jet.variable(Interval(a, b)))
    m = a + (b - a) / 2
    centre = jet(Jet.variable(Interval.point(m))).d1
    assert whole.d2 is not None
    mvf = centre + whole.d2 * (Interval(a, b) - m)
    return Interval(max(whole.d1.lo, mvf.lo), min(whole.d1.hi, mvf.hi))


def _critical_runs(cells: list[tuple[float, float, int]]) -> list[tuple[float, float]]:
    """Maximal runs of possibly-critical cells, plus any sign change between adjacent cells."""
    runs: list[tuple[float, float]] = []
    prev_sign = None
    for a, b, s in cells:
        if s == 0:
            if runs and runs[-1][1] == a and prev_sign == 0:
                runs[-1] = (runs[-1][0], b)
            else:
                runs.append((a, b))
        elif prev_sign is not None and prev_sign != 0 and prev_sign != s:
            runs.append((a, a))  # impossible for a continuous φ'', kept for safety
        prev_sign = s
    return runs


def _build_profile(key: str) -> _Profile:
    jet, tails, derivative = _SMOOTH[key][1:]
    r = _R
    runs = _critical_runs(_certify(jet, r))
    critical = []
    for a, b in runs:
        d1 = _derivative_enclosure(jet, a, b)
        critical.append((a, b, d1.lo, d1.hi))
    left, right = tails(r)
    ends = [jet(Jet.variable(Interval.point(v))).d1 for v in (-r, r)]
    lows = [c[2] for c in critical] + [left.lo, right.lo] + [e.lo for e in ends]
    highs = [c[3] for c in critical] + [left.hi, right.hi] + [e.hi for e in ends]
    return _Profile(min(lows), max(highs), r, tuple(critical), left, right, derivative)


_SMOOTH: dict[str, tuple[str, Callable[[Jet], Jet], Callable[[float], tuple[Interval, Interval]], Callable[[torch.Tensor], torch.Tensor]]] = {
    "silu": ("SiLU", _silu_jet, _silu_tails, _silu_d),
    "gelu": ("GELU", _gelu_jet, _gelu_tails, _gelu_d),
    "gelu_tanh": ("GELU(tanh)", _gelu_tanh_jet, _gelu_tanh_tails, _gelu_tanh_d),
    "mish": ("Mish", _mish_jet, _mish_tails, _mish_d),
}
_PROFILES: dict[str, _Profile] = {}


def smooth_profile(key: str) -> _Profile:
    """The certified slope profile of a smooth activation (computed once, then cached)."""
    if key not in _PROFILES:
        _PROFILES[key] = _build_profile(key)
    return _PROFILES[key]


# ---------------------------------------------------------------------- construction
def softplus_jump(beta: float, threshold: float) -> float:
    """``sup |softplus_β(x) − x|`` over ``βx > threshold``: ``log1p(e^{−threshold})/β``."""
    return math.log1p(math.exp(-threshold)) / beta


def make_activation(name: str, **params: float) -> Activation:
    """Build the activation called ``name`` (case-insensitive) with its proven slope bounds.

    Supported: relu, leaky_relu(negative_slope), tanh, sigmoid, elu(alpha ≥ 0), softplus(beta > 0),
    hardtanh(min_val, max_val), relu6, clip(min, max), silu, gelu, gelu_tanh (the tanh
    approximation), mish, hardsigmoid, hardswish, identity.  Non-finite parameters are refused.
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
    if key in ("hardsigmoid", "hardswish"):
        # clip(αx + β, 0, 1) (times x for HardSwish); torch's are α = 1/6, β = 1/2, ONNX's
        # HardSigmoid stores α as a float (float32(1/6) = 0.16666667…)
        a = float(params.get("alpha", 1.0 / 6.0))
        b = float(params.get("beta", 0.5))
        if a <= 0:
            raise ValueError(f"HardSigmoid/HardSwish need alpha > 0, got {a}")
        nominal = "alpha" not in params and "beta" not in params
        if key == "hardsigmoid":
            fn = F.hardsigmoid if nominal else (lambda x: torch.clamp(a * x + b, 0.0, 1.0))
            return Activation("HardSigmoid", key, 0.0, a, p, fn)
        # φ' = 0 where αx + β < 0, 1 where αx + β > 1, and 2αx + β (from −β to 2 − β) between
        fn = F.hardswish if nominal else (lambda x: x * torch.clamp(a * x + b, 0.0, 1.0))
        return Activation("HardSwish", key, min(0.0, -b), max(1.0, 2.0 - b), p, fn)
    if key == "identity":
        return Activation("Identity", key, 1.0, 1.0, p, lambda x: x)
    if key in _SMOOTH:
        prof = smooth_profile(key)
        fn = {"silu": F.silu, "gelu": F.gelu, "mish": F.mish,
              "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}[key]
        return Activation(_SMOOTH[key][0], key, prof.alpha, prof.beta, p, fn)
    raise ValueError(f"unknown activation '{name}'")


def derived_activation(name: str, alpha: float, beta: float, fn: Callable[[torch.Tensor], torch.Tensor]) -> Activation:
    """An activation whose bounds were derived by the loader from its formula (key ``derived``)."""
    return Activation(name, "derived", float(alpha), float(beta), (), fn)


# ---------------------------------------------------------------------- slope ranges on intervals
def _param(act: Activation, key: str, default: float) -> float:
    return float(dict(act.params).get(key, default))


def slope_range(activation: Activation, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-neuron bounds ``alpha ≤ φ'(x) ≤ beta`` for ``x`` in ``[lower, upper]``.

    ``lower``/``upper`` are tensors of any (broadcastable) shape, on any device, ±inf allowed
    (a pair is read as ``[min, max]``; NaN gives the global bounds).  By the mean value theorem
    every chord slope ``(φ(a) − φ(b))/(a − b)`` with ``a, b`` in the interval lies in the
    result.  With ``(−inf, +inf)`` the result is the global ``(activation.alpha,
    activation.beta)``.  Computed in float64 with pure tensor operations (see the module
    docstring); returned in float64 for float64 inputs and otherwise in float32, rounded
    outwards.
    """
    lower, upper = torch.broadcast_tensors(torch.as_tensor(lower), torch.as_tensor(upper))
    out_dtype = torch.float64 if lower.dtype == torch.float64 else torch.float32
    l64, u64 = lower.to(torch.float64), upper.to(torch.float64)
    nan = torch.isnan(l64) | torch.isnan(u64)
    lo, hi = torch.minimum(l64, u64), torch.maximum(l64, u64)
    a, b = _range64(activation, lo, hi)
    margin = _widening_margin(activation)
    if margin:
        a, b = a - margin, b + margin
    ga, gb = float(activation.alpha), float(activation.beta)
    a = torch.where(nan, torch.full_like(a, ga), torch.clamp(a, min=ga, max=gb))
    b = torch.where(nan, torch.full_like(b, gb), torch.clamp(b, min=ga, max=gb))
    if out_dtype == torch.float64:
        return a, b
    a32, b32 = a.to(out_dtype), b.to(out_dtype)
    a32 = torch.where(a32.to(torch.float64) > a, torch.nextafter(a32, torch.full_like(a32, -math.inf)), a32)
    b32 = torch.where(b32.to(torch.float64) < b, torch.nextafter(b32, torch.full_like(b32, math.inf)), b32)
    return a32, b32


_WIDENED_MARGIN = 2.0**-18


def _widening_margin(act: Activation) -> float:
    """The loader widens a recognised activation's [α, β] when the model's formula has constants
    within 2⁻²² of nominal (e.g. ``c·softplus(βx)`` with ``cβ = 1 + 3·10⁻⁸`` after a division
    became a float32 multiplication).  For such an activation ``φ'`` differs from the nominal
    one pointwise by at most ``2⁻²²·(|ψ'| + sup|xψ''(x)|)`` (< 2⁻²⁰ for Sigmoid, Tanh,
    Softplus); local ranges are widened by 2⁻¹⁸·max(1, |α|, |β|) to cover it."""
    if act.key in ("derived", "identity"):
        return 0.0
    try:
        nominal = make_activation(act.key, **dict(act.params))
    except ValueError:
        return 0.0
    if act.alpha >= nominal.alpha and act.beta <= nominal.beta:
        return 0.0
    return _WIDENED_MARGIN * max(1.0, abs(act.alpha), abs(act.beta))


def _const(like: torch.Tensor, v: float) -> torch.Tensor:
    return torch.full_like(like, v)


def _widen(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return a - _EVAL_MARGIN, b + _EVAL_MARGIN


def _range64(act: Activation, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    key = act.key
    if key == "identity":
        return _const(l, 1.0), _const(l, 1.0)
    if key == "derived":
        return _const(l, act.alpha), _const(l, act.beta)
    if key == "relu":
        return _two_piece(l, u, 0.0, 1.0)
    if key == "leaky_relu":
        return _two_piece(l, u, _param(act, "negative_slope", 0.01), 1.0)
    if key in ("clip", "hardtanh", "relu6"):
        return _clip_range(l, u, _param(act, "min", -1.0), _param(act, "max", 1.0), 1.0)
    if key == "hardsigmoid":
        a, b = _param(act, "alpha", 1.0 / 6.0), _param(act, "beta", 0.5)
        return _clip_range(l, u, -b / a, (1.0 - b) / a, a, exact=False)
    if key == "hardswish":
        return _hardswish_range(l, u, _param(act, "alpha", 1.0 / 6.0), _param(act, "beta", 0.5))
    if key == "elu":
        return _elu_range(l, u, _param(act, "alpha", 1.0))
    if key == "sigmoid":
        return _bell_range(l, u, lambda x: torch.sigmoid(x) * torch.sigmoid(-x), 0.25)
    if key == "tanh":
        return _bell_range(l, u, lambda x: 1 - torch.tanh(x) ** 2, 1.0)
    if key == "softplus":
        # φ' = σ(βx); torch's softplus returns x itself for βx > 20 (slope 1, also ≥ σ(βx))
        beta = _param(act, "beta", 1.0)
        a, b = _widen(torch.sigmoid(beta * l), torch.sigmoid(beta * u))
        return a, torch.where(beta * u > 20, torch.clamp(b, min=1.0), b)
    if key in _SMOOTH:
        return _smooth_range(smooth_profile(key), l, u)
    raise ValueError(f"no slope range for activation '{act.key}'")


def _two_piece(l: torch.Tensor, u: torch.Tensor, left: float, right: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope ``left`` on x < 0, ``right`` on x > 0 (ReLU, LeakyReLU)."""
    pos, neg = l >= 0, u <= 0
    a = torch.where(pos, _const(l, right), torch.where(neg, _const(l, left), _const(l, min(left, right))))
    b = torch.where(pos, _const(l, right), torch.where(neg, _const(l, left), _const(l, max(left, right))))
    return a, b


def _clip_range(l: torch.Tensor, u: torch.Tensor, lo: float, hi: float, slope: float,
                exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope ``slope`` on (lo, hi), 0 outside.  Kinks computed in float64 (``exact=False``) are
    widened by a few ulps, so their rounding never decides a case."""
    lo_out = lo_in = lo
    hi_out = hi_in = hi
    if not exact:
        if math.isfinite(lo):
            lo_out, lo_in = lo - 4 * math.ulp(lo), lo + 4 * math.ulp(lo)
        if math.isfinite(hi):
            hi_out, hi_in = hi + 4 * math.ulp(hi), hi - 4 * math.ulp(hi)
    outside = (u <= lo_out) | (l >= hi_out)
    inside = (l >= lo_in) & (u <= hi_in) & ~outside
    a = torch.where(inside, _const(l, slope), _const(l, 0.0))
    b = torch.where(outside, _const(l, 0.0), _const(l, slope))
    return a, b


def _hardswish_range(l: torch.Tensor, u: torch.Tensor, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """φ = x·clip(αx + β, 0, 1): φ' = 0 left of x₀ = −β/α, 2αx + β on (x₀, x₁), 1 right of
    x₁ = (1 − β)/α (one-sided limits included; the kinks are widened by the rounding of x₀, x₁)."""
    x0, x1 = -beta / alpha, (1.0 - beta) / alpha
    slack = 4 * math.ulp(max(abs(x0), abs(x1), 1.0))
    inf = math.inf
    a, b = _const(l, inf), _const(l, -inf)
    left, right = l < x0 + slack, u > x1 - slack
    a = torch.where(left, torch.minimum(a, _const(l, 0.0)), a)
    b = torch.where(left, torch.maximum(b, _const(l, 0.0)), b)
    a = torch.where(right, torch.minimum(a, _const(l, 1.0)), a)
    b = torch.where(right, torch.maximum(b, _const(l, 1.0)), b)
    mid = (u >= x0 - slack) & (l <= x1 + slack)
    ml, mu = torch.clamp(l, x0, x1), torch.clamp(u, x0, x1)
    da, db = _widen(2 * alpha * ml + beta, 2 * alpha * mu + beta)
    a = torch.where(mid, torch.minimum(a, da), a)
    b = torch.where(mid, torch.maximum(b, db), b)
    return a, b


def _elu_range(l: torch.Tensor, u: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """φ' = α eˣ (increasing) on x < 0, 1 on x > 0."""
    neg_l, neg_u = alpha * torch.exp(torch.clamp(l, max=0.0)), alpha * torch.exp(torch.clamp(u, max=0.0))
    na, nb = _widen(neg_l, neg_u)
    pos = l >= 0
    crosses = u > 0
    one = _const(l, 1.0)
    a = torch.where(pos, one, torch.where(crosses, torch.minimum(na, one), na))
    b = torch.where(pos, one, torch.where(crosses, torch.maximum(nb, one), nb))
    return a, b


def _bell_range(l: torch.Tensor, u: torch.Tensor, d: Callable[[torch.Tensor], torch.Tensor], peak: float):
    """φ' even, increasing on (−∞, 0], decreasing on [0, ∞), φ'(0) = peak."""
    dl, du = d(l), d(u)
    a, b = _widen(torch.minimum(dl, du), torch.maximum(dl, du))
    b = torch.where((l <= 0) & (u >= 0), _const(l, peak), b)
    return a, b


def _smooth_range(prof: _Profile, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = prof.radius
    dl, du = prof.derivative(torch.clamp(l, -r, r)), prof.derivative(torch.clamp(u, -r, r))
    a, b = _widen(torch.minimum(dl, du), torch.maximum(dl, du))
    for x_lo, x_hi, d_lo, d_hi in prof.critical:
        hit = (l <= x_hi) & (u >= x_lo)
        a = torch.where(hit, torch.clamp(a, max=d_lo), a)
        b = torch.where(hit, torch.clamp(b, min=d_hi), b)
    left, right = l < -r, u > r
    a = torch.where(left, torch.clamp(a, max=prof.left.lo), a)
    b = torch.where(left, torch.clamp(b, min=prof.left.hi), b)
    a = torch.where(right, torch.clamp(a, max=prof.right.lo), a)
    b = torch.where(right, torch.clamp(b, min=prof.right.hi), b)
    return a, b


__all__ = [
    "Activation", "SOFTPLUS_MIN_THRESHOLD", "SUPPORTED_ACTIVATIONS", "derived_activation", "make_activation",
    "slope_range", "smooth_profile", "softplus_jump",
]
