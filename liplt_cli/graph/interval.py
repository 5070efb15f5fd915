r"""Interval arithmetic with outward rounding, and interval jets (value, φ', φ'').

Used to *prove* slope bounds: every operation returns an interval that contains the exact
real result for every real point of its arguments.

Rounding.  ``+ − × ÷`` and ``sqrt`` are correctly rounded in IEEE-754, so widening their result
by one ulp (``math.nextafter``) towards −∞ / +∞ encloses the exact value.  The libm functions
(``exp``, ``log``, ``log1p``, ``tanh``, ``erf``, ``pow``) are not correctly rounded; glibc
documents errors of at most 1–3 ulp for them in double precision, and results are widened by
a relative :data:`LIBM_MARGIN` = 2⁻⁴⁶ (≥ 64 ulp) plus the smallest subnormal, then clipped to
the function's known range (``tanh``, ``erf`` ∈ [−1, 1], ``σ`` ∈ [0, 1], ``exp`` ≥ 0, ...).

Endpoint products ``0 · ∞`` count as 0 (the closure of the real products).  An operation
outside its domain (``log`` of a negative interval, division by an interval containing 0)
gives the whole line or raises :class:`DomainError`.

A :class:`Jet` carries enclosures of ``f(X)``, ``f'(X)`` and ``f''(X)`` for an expression ``f``
evaluated on the interval ``X`` (forward-mode differentiation, chain rule
``(g∘u)' = g'(u) u'``, ``(g∘u)'' = g''(u) u'² + g'(u) u''``); ``d2`` is ``None`` once a
non-twice-differentiable operation (ReLU, abs, max) was applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

INF = math.inf
LIBM_MARGIN = 2.0**-46
_TINY = 5e-324
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class DomainError(ValueError):
    """An interval operation was applied outside its domain (e.g. log of negatives)."""


def _dn(v: float) -> float:
    return math.nextafter(v, -INF)


def _up(v: float) -> float:
    return math.nextafter(v, INF)


def _dn_lib(v: float) -> float:
    if math.isinf(v) or math.isnan(v):
        return v
    return v - abs(v) * LIBM_MARGIN - _TINY


def _up_lib(v: float) -> float:
    if math.isinf(v) or math.isnan(v):
        return v
    return v + abs(v) * LIBM_MARGIN + _TINY


def _sum_dn(a: float, b: float) -> float:
    s = a + b
    return s if a == 0 or b == 0 or math.isinf(a) or math.isinf(b) else _dn(s)


def _sum_up(a: float, b: float) -> float:
    s = a + b
    return s if a == 0 or b == 0 or math.isinf(a) or math.isinf(b) else _up(s)


def _exact_product(a: float, b: float) -> bool:
    return a == 0 or b == 0 or abs(a) == 1.0 or abs(b) == 1.0 or math.isinf(a) or math.isinf(b)


def _mul0(a: float, b: float) -> float:
    """``a·b`` with ``0·∞ = 0``."""
    if a == 0.0 or b == 0.0:
        return 0.0
    return a * b


@dataclass(frozen=True, slots=True)
class Interval:
    """The closed interval ``[lo, hi]`` of the extended reals (``lo ≤ hi``)."""

    lo: float
    hi: float

    @staticmethod
    def point(v: float) -> "Interval":
        return Interval(float(v), float(v))

    @staticmethod
    def around(v: float) -> "Interval":
        """An enclosure of a real constant computed as ``v`` by a few correctly rounded
        operations (e.g. ``2/math.sqrt(math.pi)``): ``v`` widened by 2⁻⁵⁰ relative (≥ 4 ulp)."""
        d = abs(v) * 2.0**-50
        return Interval(_dn(v - d), _up(v + d))

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi

    @property
    def finite(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def hull(self, other: "Interval") -> "Interval":
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    # -------------------------------------------------------------- arithmetic
    def __add__(self, other: "Interval | float") -> "Interval":
        if not isinstance(other, (Interval, int, float)):
            return NotImplemented
        o = _as_interval(other)
        return Interval(_sum_dn(self.lo, o.lo), _sum_up(self.hi, o.hi))

    __radd__ = __add__

    def __neg__(self) -> "Interval":
        return Interval(-self.hi, -self.lo)

    def __sub__(self, other: "Interval | float") -> "Interval":
        if not isinstance(other, (Interval, int, float)):
            return NotImplemented
        return self + (-_as_interval(other))

    def __rsub__(self, other: "Interval | float") -> "Interval":
        if not isinstance(other, (Interval, int, float)):
            return NotImplemented
        return _as_interval(other) + (-self)

    def __mul__(self, other: "Interval | float") -> "Interval":
        if not isinstance(other, (Interval, int, float)):
            return NotImplemented
        o = _as_interval(other)
        lows, highs = [], []
        for a in {self.lo, self.hi}:
            for b in {o.lo, o.hi}:
                p = _mul0(a, b)
                if _exact_product(a, b):
                    lows.append(p)
                    highs.append(p)
                else:
                    lows.append(_dn(p))
                    highs.append(_up(p))
        return Interval(min(lows), max(highs))

    __rmul__ = __mul__

    def reciprocal(self) -> "Interval":
        """``1/X`` for ``X`` not containing 0 in its interior (a 0 endpoint gives an infinite end)."""
        if self.lo > 0 or self.hi < 0:
            lo = -0.0 if math.isinf(self.hi) else _dn(1.0 / self.hi)
            hi = 0.0 if math.isinf(self.lo) else _up(1.0 / self.lo)
            return Interval(lo, hi)
        if self.lo == 0 and self.hi > 0:
            return Interval(0.0 if math.isinf(self.hi) else _dn(1.0 / self.hi), INF)
        if self.hi == 0 and self.lo < 0:
            return Interval(-INF, -0.0 if math.isinf(self.lo) else _up(1.0 / self.lo))
        raise DomainError("reciprocal of an interval containing 0")

    def __truediv__(self, other: "Interval | float") -> "Interval":
        if not isinstance(other, (Interval, int, float)):
            return NotImplemented
        return self * _as_interval(other).reciprocal()

    def __rtruediv__(self, other: "Interval | float") -> "Interval":
        return _as_interval(other) * self.reciprocal()

    def square(self) -> "Interval":
        a = self.abs()
        lo = 0.0 if a.lo == 0 else _dn(a.lo * a.lo)
        return Interval(lo, _up(a.hi * a.hi) if a.hi != 0 else 0.0)

    def abs(self) -> "Interval":
        if self.lo >= 0:
            return self
        if self.hi <= 0:
            return -self
        return Interval(0.0, max(-self.lo, self.hi))

    def pow_int(self, n: int) -> "Interval":
        """``X**n`` for an integer ``n ≥ 0`` (monotone pieces, libm margin)."""
        if n == 0:
            return Interval(1.0, 1.0)
        if n == 1:
            return self
        if n % 2 == 0:
            a = self.abs()
            return Interval(_pos_pow_dn(a.lo, n), _pos_pow_up(a.hi, n))
        return Interval(_odd_pow_dn(self.lo, n), _odd_pow_up(self.hi, n))


def _pos_pow_dn(v: float, n: int) -> float:
    if v == 0 or math.isinf(v):
        return v
    try:
        return max(0.0, _dn_lib(math.pow(v, n)))
    except OverflowError:
        return _dn(math.inf)


def _pos_pow_up(v: float, n: int) -> float:
    if v == 0 or math.isinf(v):
        return v
    try:
        return _up_lib(math.pow(v, n))
    except OverflowError:
        return INF


def _odd_pow_dn(v: float, n: int) -> float:
    return _pos_pow_dn(v, n) if v >= 0 else -_pos_pow_up(-v, n)


def _odd_pow_up(v: float, n: int) -> float:
    return _pos_pow_up(v, n) if v >= 0 else -_pos_pow_dn(-v, n)


def _as_interval(v: "Interval | float") -> Interval:
    return v if isinstance(v, Interval) else Interval.point(float(v))


# ---------------------------------------------------------------------- monotone functions
def _increasing(f: Callable[[float], float], lo_clip: float = -INF, hi_clip: float = INF, exact: Callable[[float], bool] | None = None):
    """Interval extension of an increasing libm function, widened and clipped to its range."""

    def ext(x: Interval) -> Interval:
        a, b = f(x.lo), f(x.hi)
        a = a if exact is not None and exact(x.lo) else _dn_lib(a)
        b = b if exact is not None and exact(x.hi) else _up_lib(b)
        return Interval(max(a, lo_clip), min(b, hi_clip))

    return ext


def _exp_point(v: float) -> float:
    if v > 709.0:
        return INF if v > 709.78 else math.exp(v)
    return math.exp(v)


def _sigmoid_point(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + _exp_point(-v))
    e = _exp_point(v)
    return e / (1.0 + e)


def _softplus_point(v: float) -> float:
    if math.isinf(v):
        return 0.0 if v < 0 else INF
    if v > 0:
        return v + math.log1p(_exp_point(-v))
    return math.log1p(_exp_point(v))


def _log_point(v: float) -> float:
    if v <= 0:
        return -INF
    return math.log(v) if math.isfinite(v) else INF


def _log1p_point(v: float) -> float:
    if v <= -1:
        return -INF
    return math.log1p(v) if math.isfinite(v) else INF


def _zero_exact(v: float) -> bool:
    return v == 0.0


exp = _increasing(_exp_point, 0.0, INF, exact=_zero_exact)  # exp(0) = 1 exactly
tanh = _increasing(lambda v: math.tanh(v), -1.0, 1.0, exact=lambda v: v == 0.0 or math.isinf(v))
erf = _increasing(lambda v: math.erf(v), -1.0, 1.0, exact=lambda v: v == 0.0 or math.isinf(v))
sigmoid = _increasing(_sigmoid_point, 0.0, 1.0, exact=lambda v: v == 0.0 or math.isinf(v))
_softplus_raw = _increasing(_softplus_point, 0.0, INF)


def softplus(x: Interval) -> Interval:
    """``log(1 + eˣ)``; also ``≥ max(0, x)``."""
    r = _softplus_raw(x)
    return Interval(max(r.lo, x.lo if x.lo > 0 else 0.0), r.hi)


def log(x: Interval) -> Interval:
    if x.hi < 0:
        raise DomainError("log of a negative interval")
    return _increasing(_log_point, exact=lambda v: v == 1.0 or v == 0.0 or math.isinf(v))(x)


def log1p(x: Interval) -> Interval:
    if x.hi < -1:
        raise DomainError("log1p of an interval below -1")
    return _increasing(_log1p_point, exact=lambda v: v == 0.0 or v == -1.0 or math.isinf(v))(x)


def sqrt(x: Interval) -> Interval:
    if x.hi < 0:
        raise DomainError("sqrt of a negative interval")
    lo = 0.0 if x.lo <= 0 else _dn(math.sqrt(x.lo))
    hi = INF if math.isinf(x.hi) else _up(math.sqrt(x.hi))
    return Interval(max(lo, 0.0), hi)


def relu(x: Interval) -> Interval:
    return Interval(max(x.lo, 0.0), max(x.hi, 0.0))


def maximum(a: Interval, b: Interval) -> Interval:
    return Interval(max(a.lo, b.lo), max(a.hi, b.hi))


def minimum(a: Interval, b: Interval) -> Interval:
    return Interval(min(a.lo, b.lo), min(a.hi, b.hi))


# ---------------------------------------------------------------------- even bell-shaped derivatives
def _even_decreasing(f: Callable[[float], float], peak: float):
    """Extension of an even function that decreases in ``|x|`` (value ``peak`` at 0)."""

    def ext(x: Interval) -> Interval:
        a = x.abs()
        hi = peak if a.lo == 0 else min(peak, _up_lib(f(a.lo)))
        lo = max(0.0, _dn_lib(f(a.hi))) if math.isfinite(a.hi) else 0.0
        return Interval(lo, hi)

    return ext


def _sech2_point(v: float) -> float:
    e = _exp_point(-2.0 * abs(v))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


sech2 = _even_decreasing(_sech2_point, 1.0)  # tanh' = sech²
dsigmoid = _even_decreasing(lambda v: _sech2_point(v / 2.0) / 4.0, 0.25)  # σ' = σ(1−σ)
_TWO_OVER_SQRT_PI = Interval.around(2.0 / math.sqrt(math.pi))
_gauss = _even_decreasing(lambda v: _exp_point(-v * v), 1.0)


def derf(x: Interval) -> Interval:
    """``erf'(x) = 2/√π · e^{−x²}``."""
    return _TWO_OVER_SQRT_PI * _gauss(x)


# ---------------------------------------------------------------------- jets
@dataclass(frozen=True, slots=True)
class Jet:
    """Enclosures of ``f``, ``f'`` and (if twice differentiable so far) ``f''`` on an interval."""

    v: Interval
    d1: Interval
    d2: Interval | None

    @staticmethod
    def variable(x: Interval) -> "Jet":
        return Jet(x, Interval(1.0, 1.0), Interval(0.0, 0.0))

    @staticmethod
    def constant(c: "Interval | float") -> "Jet":
        return Jet(_as_interval(c), Interval(0.0, 0.0), Interval(0.0, 0.0))

    def __add__(self, other: "Jet | Interval | float") -> "Jet":
        o = _as_jet(other)
        d2 = None if self.d2 is None or o.d2 is None else self.d2 + o.d2
        return Jet(self.v + o.v, self.d1 + o.d1, d2)

    __radd__ = __add__

    def __neg__(self) -> "Jet":
        return Jet(-self.v, -self.d1, None if self.d2 is None else -self.d2)

    def __sub__(self, other: "Jet | Interval | float") -> "Jet":
        return self + (-_as_jet(other))

    def __rsub__(self, other: "Jet | Interval | float") -> "Jet":
        return _as_jet(other) + (-self)

    def __mul__(self, other: "Jet | Interval | float") -> "Jet":
        o = _as_jet(other)
        v = self.v * o.v
        d1 = self.d1 * o.v + self.v * o.d1
        d2 = None
        if self.d2 is not None and o.d2 is not None:
            d2 = self.d2 * o.v + 2.0 * (self.d1 * o.d1) + self.v * o.d2
        return Jet(v, d1, d2)

    __rmul__ = __mul__

    def __truediv__(self, other: "Jet | Interval | float") -> "Jet":
        return self * reciprocal(_as_jet(other))

    def __rtruediv__(self, other: "Jet | Interval | float") -> "Jet":
        return _as_jet(other) * reciprocal(self)

    def apply(self, f: Interval, df: Interval, d2f: Interval | None) -> "Jet":
        """``g(self)`` given enclosures of ``g``, ``g'``, ``g''`` at ``self.v``."""
        d1 = df * self.d1
        d2 = None
        if d2f is not None and self.d2 is not None:
            d2 = d2f * self.d1.square() + df * self.d2
        return Jet(f, d1, d2)


def _as_jet(v: "Jet | Interval | float") -> Jet:
    return v if isinstance(v, Jet) else Jet.constant(v)


def j_exp(u: Jet) -> Jet:
    e = exp(u.v)
    return u.apply(e, e, e)


def j_tanh(u: Jet) -> Jet:
    t, s = tanh(u.v), sech2(u.v)
    return u.apply(t, s, -2.0 * (t * s))


def j_sigmoid(u: Jet) -> Jet:
    s, ds = sigmoid(u.v), dsigmoid(u.v)
    return u.apply(s, ds, ds * (1.0 - 2.0 * s))


def j_softplus(u: Jet) -> Jet:
    return u.apply(softplus(u.v), sigmoid(u.v), dsigmoid(u.v))


def j_erf(u: Jet) -> Jet:
    d = derf(u.v)
    return u.apply(erf(u.v), d, -2.0 * (u.v * d))


def j_log(u: Jet) -> Jet:
    r = u.v.reciprocal()
    return u.apply(log(u.v), r, -r.square())


def j_log1p(u: Jet) -> Jet:
    r = (1.0 + u.v).reciprocal()
    return u.apply(log1p(u.v), r, -r.square())


def j_sqrt(u: Jet) -> Jet:
    s = sqrt(u.v)
    d = (2.0 * s).reciprocal()
    return u.apply(s, d, -(d * d * d) * 2.0)  # (√x)'' = −1/(4 x^{3/2}) = −2 (1/(2√x))³


def reciprocal(u: Jet) -> Jet:
    r = u.v.reciprocal()
    r2 = r.square()
    return u.apply(r, -r2, 2.0 * (r2 * r))


def j_pow_int(u: Jet, n: int) -> Jet:
    if n == 0:
        return Jet.constant(1.0)
    if n == 1:
        return u
    d2 = None if n < 2 else float(n * (n - 1)) * u.v.pow_int(n - 2)
    return u.apply(u.v.pow_int(n), float(n) * u.v.pow_int(n - 1), d2)


def j_relu(u: Jet) -> Jet:
    if u.v.lo > 0:
        return u
    if u.v.hi < 0:
        return Jet.constant(0.0)
    return Jet(relu(u.v), Interval(0.0, 1.0) * u.d1, None)


def j_abs(u: Jet) -> Jet:
    if u.v.lo > 0:
        return u
    if u.v.hi < 0:
        return -u
    return Jet(u.v.abs(), Interval(-1.0, 1.0) * u.d1, None)


def j_maximum(a: Jet, b: Jet) -> Jet:
    if a.v.lo > b.v.hi:
        return a
    if b.v.lo > a.v.hi:
        return b
    return Jet(maximum(a.v, b.v), a.d1.hull(b.d1), None)


def j_minimum(a: Jet, b: Jet) -> Jet:
    if a.v.hi < b.v.lo:
        return a
    if b.v.hi < a.v.lo:
        return b
    return Jet(minimum(a.v, b.v), a.d1.hull(b.d1), None)


__all__ = [
    "DomainError", "INF", "Interval", "Jet", "LIBM_MARGIN", "derf", "dsigmoid", "erf", "exp", "j_abs", "j_erf",
    "j_exp", "j_log", "j_log1p", "j_maximum", "j_minimum", "j_pow_int", "j_relu", "j_sigmoid", "j_softplus",
    "j_sqrt", "j_tanh", "log", "log1p", "maximum", "minimum", "reciprocal", "relu", "sech2", "sigmoid", "softplus",
    "sqrt", "tanh",
]
