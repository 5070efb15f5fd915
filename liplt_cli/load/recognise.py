r"""What an elementwise formula is: a known activation (exact pattern) or proven slope bounds.

Given a formula ``f`` of one variable (:mod:`liplt_cli.load.formula`), in this order:

1. **Pieces.**  Every switch condition must be affine in ``x``, so its switch point ``t`` is an
   exact rational (``−a₀/a₁`` of the stored float coefficients).  The switch points cut ℝ into
   open pieces on which every condition has one truth value; on each piece ``f`` is a formula
   without switches.  A switch on a non-affine function is refused (its switch points are not
   located exactly).
2. **Continuity.**  At each switch point ``t`` the left piece, the right piece and ``f`` itself
   are evaluated at ``t``: in exact rational arithmetic when the pieces are polynomial there
   (then they must be equal), otherwise with interval arithmetic, and then they must agree to
   within 2⁻²⁴ of their magnitude (float32 resolution: a float32 model cannot tell them
   apart).  A discontinuous ``f`` has no Lipschitz constant and is refused.
3. **Patterns.**  The pieces are compared with the exact formulas of the supported activations:
   ReLU, LeakyReLU, Clip (one- or two-sided), HardSigmoid, HardSwish, ELU, Sigmoid, Tanh,
   Softplus(β), SiLU ``x·σ(x)``, GELU ``½x(1 + erf(x/√2))``, GELU-tanh
   ``½x(1 + tanh(√(2/π)(x + 0.044715x³)))``, Mish ``x·tanh(softplus(x))`` and the identity.
   Structure must match exactly; constants must be exact where they scale the slopes, and
   within 2⁻²² relative (float32 rounding of the stored constants, and of a product or
   quotient of two of them) only where the slope range is unchanged or covered (see
   :func:`_smooth_pattern`): ``x·σ(1.01x)`` is *not* SiLU.  The loader also widens a
   recognised activation's [α, β] to the bounds proven for the formula itself (step 4)
   whenever those can be proven, so a piecewise-linear activation whose stored constants are
   float32-rounded (HardSigmoid's ``0.16666667``) keeps a sound slope bound.
4. **Derived bounds.**  Otherwise ``f'`` is enclosed with interval arithmetic on each piece —
   bounded pieces in adaptively bisected cells, unbounded ones up to ±(16 + 2 max|t|) and then
   one cell reaching to ±∞ — and [α, β] is the hull.  By the mean value theorem on each piece
   and continuity at the switch points, every chord slope of ``f`` lies in [α, β].  A cell
   whose enclosure is not finite (``x²``, ``eˣ``, ``x·tanh(x)``, a pole) means no finite
   global bound could be proven: the formula is refused.

Nothing is derived from values sampled on a grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from liplt_cli.graph.interval import DomainError, Interval, Jet
from liplt_cli.load import formula as fm
from liplt_cli.load.formula import Cond, Fn, FormulaError, Poly, X

REL = 2.0**-22  # constants: float32 rounding of stored values (and of one product/quotient of them)
JUMP = 2.0**-24  # switch points: float32 resolution
MAX_SWITCHES = 64
_CELLS = 32
_MAX_CELLS = 4000


class Refusal(Exception):
    """The formula cannot be bounded soundly; the message says why (one clause)."""


@dataclass(frozen=True)
class Piece:
    lo: Fraction | None  # None: −∞
    hi: Fraction | None  # None: +∞
    poly: Poly  # the formula on (lo, hi), without switches


# ---------------------------------------------------------------------- pieces
def _switch_point(c: Cond) -> Fraction:
    aff = c.lhs.affine()
    if aff is None or aff[0] == 0:
        raise Refusal(
            f"it switches on '{c.lhs.text(50)} {c.op} 0', which is not an affine function of its input, "
            "so the switch points cannot be located exactly"
        )
    a1, a0 = aff
    return -Fraction(a0) / Fraction(a1)


def _decide_at(point: Fraction):
    def choose(c: Cond) -> bool | None:
        aff = c.lhs.affine()
        if aff is None:
            return None
        return c.holds(Fraction(aff[0]) * point + Fraction(aff[1]))

    return choose


def _representative(lo: Fraction | None, hi: Fraction | None) -> Fraction:
    if lo is None and hi is None:
        return Fraction(0)
    if lo is None:
        return hi - 1  # type: ignore[operator]
    if hi is None:
        return lo + 1
    return (lo + hi) / 2


def _split(p: Poly, lo: Fraction | None, hi: Fraction | None, depth: int = 0) -> list[Piece]:
    conds = fm.conditions(p)
    if not conds:
        return [Piece(lo, hi, p)]
    if depth > 8:
        raise Refusal("its switches are nested too deeply")
    points = sorted({t for t in map(_switch_point, conds) if (lo is None or t > lo) and (hi is None or t < hi)})
    if len(points) > MAX_SWITCHES:
        raise Refusal(f"it has more than {MAX_SWITCHES} switch points")
    bounds = [lo, *points, hi]
    pieces: list[Piece] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        spec = fm.rebuild(p, fm.var(), _decide_at(_representative(a, b)))
        pieces += _split(spec, a, b, depth + 1)
    return pieces


def pieces(p: Poly) -> list[Piece]:
    """``p`` as formulas without switches on consecutive open intervals (see module docstring)."""
    return _split(p, None, None)


def _point_interval(t: Fraction) -> Interval:
    f = float(t)
    if Fraction(f) == t:
        return Interval.point(f)
    return Interval(math.nextafter(f, -math.inf), math.nextafter(f, math.inf))


def _value_at(p: Poly, t: Fraction) -> tuple[Fraction | None, Interval | None]:
    e = fm.exact(p, t)
    if e is not None:
        return e, None
    spec = fm.rebuild(p, fm.var(), _decide_at(t))
    try:
        return None, fm.jet(spec, Jet.variable(_point_interval(t))).v
    except (FormulaError, DomainError, ZeroDivisionError):
        return None, None


def _mig(i: Interval) -> float:
    return 0.0 if i.lo <= 0 <= i.hi else min(abs(i.lo), abs(i.hi))


def _as_interval(v: Fraction | None, i: Interval | None) -> Interval | None:
    if v is not None:
        return _point_interval(v)
    return i


def discontinuity(p: Poly, parts: list[Piece]) -> str | None:
    """Why ``p`` is not continuous at one of its switch points (``None`` when it is)."""
    for left, right in zip(parts[:-1], parts[1:]):
        t = left.hi
        assert t is not None
        values = [_value_at(q, t) for q in (left.poly, right.poly, p)]
        if all(v is not None for v, _ in values):
            if len({v for v, _ in values}) == 1:
                continue
            return f"it jumps at x = {float(t):.6g} (from {float(values[0][0]):.6g} to {float(values[1][0]):.6g})"  # type: ignore[arg-type]
        boxes = [_as_interval(v, i) for v, i in values]
        if any(b is None or not b.finite for b in boxes):
            return f"its value at the switch point x = {float(t):.6g} cannot be bounded"
        scale = max(_mig(b) for b in boxes)  # type: ignore[arg-type]
        for b in boxes[1:]:
            d = b - boxes[0]  # type: ignore[operator]
            jump = max(abs(d.lo), abs(d.hi))
            if jump > JUMP * scale:
                return (f"it jumps by about {jump:.2g} at x = {float(t):.6g}, more than float32 rounding of its "
                        f"value there ({scale:.3g})")
    return None


# ---------------------------------------------------------------------- patterns
def _near(v: float | Fraction, nominal: float, scale: float = 1.0) -> bool:
    return abs(float(v) - nominal) <= REL * max(abs(nominal), scale)


def _coeffs_are(p: Poly, want: dict[int, float]) -> bool:
    c = p.coeffs()
    if c is None or set(c) != {k for k, v in want.items() if v != 0}:
        return False
    return all(_near(c[k], want[k]) for k in c)


def _single(p: Poly) -> tuple[Fraction, int, list[tuple[Fn, int]]] | None:
    """``(coef, power of x, [(fn atom, power)])`` of a one-term formula."""
    if len(p.terms) != 1:
        return None
    m, c = p.terms[0]
    xp, fns = 0, []
    for a, k in m:
        if a is X:
            xp = k
        elif isinstance(a, Fn):
            fns.append((a, k))
        else:
            return None
    return c, xp, fns


def _fn_of(p: Poly, name: str, xpower: int, coef: float | None = 1.0) -> tuple[Fraction, Poly] | None:
    """``(c, u)`` when ``p = c · x^xpower · name(u)``."""
    s = _single(p)
    if s is None:
        return None
    c, xp, fns = s
    if xp != xpower or len(fns) != 1 or fns[0][1] != 1 or fns[0][0].name != name:
        return None
    if coef is not None and not _near(c, coef):
        return None
    return c, fns[0][0].args[0]


def _is_x(u: Poly) -> bool:
    return _coeffs_are(u, {1: 1.0})


def _split_terms(p: Poly) -> tuple[Poly, Poly]:
    """(the part linear in x, the rest)."""
    lin = [(m, c) for m, c in p.terms if len(m) == 1 and m[0][0] is X and m[0][1] == 1]
    rest = [(m, c) for m, c in p.terms if not (len(m) == 1 and m[0][0] is X and m[0][1] == 1)]
    return Poly(tuple(lin)), Poly(tuple(rest))


_SQRT1_2 = math.sqrt(0.5)
_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _exactly(p: Poly, want: dict[int, Fraction]) -> bool:
    """``p`` is exactly the polynomial ``want`` (no rounding allowed)."""
    return p.coeffs() == {k: v for k, v in want.items() if v != 0}


_ONE, _HALF = Fraction(1), Fraction(1, 2)


def _smooth_pattern(p: Poly) -> tuple[str, dict[str, float]] | None:
    """Outer coefficients (the 1 of x·σ(x), the ½ of GELU) must be exact: exporters write them
    exactly, and they scale the slopes.  An *inner* coefficient may differ from its nominal value
    by float32 rounding only where that leaves the slope range unchanged or covered:
    ``x·σ(kx) = SiLU(kx)/k``, ``½x(1 + erf(cx)) = GELU(sx)/s`` (s = c√2) and
    ``x·tanh(softplus(kx)) = Mish(kx)/k`` have ``φ'(x) = ψ'(kx)``, the same range as ψ'; GELU-tanh's
    proven bounds hold for both of its constants anywhere within 2⁻²⁰ of nominal
    (:mod:`liplt_cli.graph.slopes`).  Sigmoid, Tanh and Softplus take float32-rounded constants
    (a Div by 3 becomes a multiplication by float32(1/3)) because the loader then widens their
    bounds to the ones proven for the formula itself (``k·σ(cx)`` has slopes in [0, kc/4]).
    The identity must be exact: it leaves no node whose slopes could be widened."""
    if _exactly(p, {1: _ONE}):
        return "identity", {}
    for name in ("sigmoid", "tanh"):
        m = _fn_of(p, name, 0)
        if m is not None and _is_x(m[1]):
            return name, {}
    m = _fn_of(p, "softplus", 0, coef=None)
    if m is not None:
        c, u = m
        aff = u.coeffs()
        if aff is not None and set(aff) == {1} and aff[1] > 0 and _near(c * aff[1], 1.0):
            return "softplus", {"beta": float(aff[1])}
    m = _fn_of(p, "sigmoid", 1)
    if m is not None and m[0] == 1 and _is_x(m[1]):
        return "silu", {}
    m = _fn_of(p, "tanh", 1)
    if m is not None and m[0] == 1:
        inner = _fn_of(m[1], "softplus", 0)
        if inner is not None and inner[0] == 1 and _is_x(inner[1]):
            return "mish", {}
    lin, rest = _split_terms(p)
    if _exactly(lin, {1: _HALF}):
        m = _fn_of(rest, "erf", 1, coef=0.5)
        if m is not None and m[0] == _HALF and _coeffs_are(m[1], {1: _SQRT1_2}):
            return "gelu", {}
        m = _fn_of(rest, "tanh", 1, coef=0.5)
        if m is not None and m[0] == _HALF and _coeffs_are(m[1], {1: _GELU_K, 3: _GELU_K * _GELU_C}):
            return "gelu_tanh", {}
    return None


def _const_of(p: Poly) -> Fraction | None:
    c = p.coeffs()
    if c is None or any(k != 0 for k in c):
        return None
    return c.get(0, Fraction(0))


def _piecewise_pattern(parts: list[Piece]) -> tuple[str, dict[str, float]] | None:
    ts = [float(q.hi) for q in parts[:-1]]  # type: ignore[arg-type]
    polys = [q.poly for q in parts]
    if len(parts) == 2:
        (t,), (left, right) = ts, polys
        if _coeffs_are(right, {1: 1.0}):
            lo = _const_of(left)
            if lo is not None and _near(t, lo):
                return ("relu", {}) if lo == 0 else ("clip", {"min": float(lo), "max": math.inf})
            if _near(t, 0.0):
                c = left.coeffs()
                if c is not None and set(c) == {1}:
                    return "leaky_relu", {"negative_slope": float(c[1])}
                e = _fn_of(Poly(tuple((m, cc) for m, cc in left.terms if m)), "exp", 0, coef=None)
                const_part = _const_of(Poly(tuple((m, cc) for m, cc in left.terms if not m)))
                if e is not None and _is_x(e[1]) and e[0] > 0 and const_part is not None and _near(const_part, -e[0]):
                    return "elu", {"alpha": float(e[0])}
        if _coeffs_are(left, {1: 1.0}):
            hi = _const_of(right)
            if hi is not None and _near(t, hi):
                return "clip", {"min": -math.inf, "max": float(hi)}
    if len(parts) == 3:
        (t1, t2), (left, mid, right) = ts, polys
        lo, hi = _const_of(left), _const_of(right)
        if _coeffs_are(mid, {1: 1.0}) and lo is not None and hi is not None and _near(t1, lo) and _near(t2, hi):
            return "clip", {"min": float(lo), "max": float(hi)}
        if _near(t1, -3.0) and _near(t2, 3.0) and lo == 0:
            # x·clip(αx + β, 0, 1) or clip(αx + β, 0, 1) with α, β from the formula itself
            if hi == 1 and _coeffs_are(mid, {1: 1 / 6, 0: 0.5}):
                return "hardsigmoid", _hard_params(mid.coeffs()[1], mid.coeffs()[0])  # type: ignore[index]
            if _coeffs_are(mid, {2: 1 / 6, 1: 0.5}) and _exactly(right, {1: _ONE}):
                return "hardswish", _hard_params(mid.coeffs()[2], mid.coeffs()[1])  # type: ignore[index]
    return None


def _hard_params(alpha: Fraction, beta: Fraction) -> dict[str, float]:
    """HardSigmoid's α, β as floats (none when exactly 1/6, 1/2); α rounded up, so the
    slope bound [0, α] stays above the exact one."""
    if alpha == Fraction(1, 6) and beta == _HALF:
        return {}
    a = float(alpha)
    if Fraction(a) < alpha:
        a = math.nextafter(a, math.inf)
    return {"alpha": a, "beta": float(beta)}


def match(p: Poly) -> tuple[str, dict[str, float]] | None:
    """The supported activation ``p`` is exactly (up to float rounding of its constants)."""
    try:
        parts = pieces(p)
        if len(parts) == 1:
            return _smooth_pattern(parts[0].poly)
        if discontinuity(p, parts) is not None:
            return None
        return _piecewise_pattern(parts)
    except (Refusal, FormulaError):
        return None


# ---------------------------------------------------------------------- derived bounds
def _cells(lo: Fraction | None, hi: Fraction | None, reach: float) -> list[tuple[float, float]]:
    a = -reach if lo is None else math.nextafter(float(lo), -math.inf)
    b = reach if hi is None else math.nextafter(float(hi), math.inf)
    cells: list[tuple[float, float]] = []
    if a < b:
        step = (b - a) / _CELLS
        edges = [a + k * step for k in range(_CELLS)] + [b]
        cells += list(zip(edges[:-1], edges[1:]))
    # the unbounded cells last, so they are looked at first (most refusals are decided there)
    if lo is None:
        cells.append((-math.inf, min(a, b)))
    if hi is None:
        cells.append((max(a, b), math.inf))
    return cells


def _where(lo: float, hi: float) -> str:
    if math.isinf(hi):
        return "as x → +∞"
    if math.isinf(lo):
        return "as x → −∞"
    return f"for x in [{lo:.4g}, {hi:.4g}]"


def _loose(p: Poly, a: float, b: float, d1: Interval) -> bool:
    """The enclosure of f' on [a, b] is much wider than the spread of f' at the cell's ends
    (interval arithmetic's overestimation, which bisection reduces)."""
    try:
        ends = [fm.jet(p, Jet.variable(Interval.point(v))).d1 for v in (a, b)]
    except (FormulaError, DomainError, ZeroDivisionError, OverflowError):
        return True
    spread = ends[0].hull(ends[1])
    return d1.width > 2.0 * spread.width + 1e-3 * (1.0 + max(abs(d1.lo), abs(d1.hi)))


def derive(p: Poly) -> tuple[float, float]:
    """Proven ``(α, β)`` with ``α ≤ f' ≤ β`` on every piece of a continuous ``f`` (raises
    :class:`Refusal`)."""
    try:
        parts = pieces(p)
        why = discontinuity(p, parts)
    except FormulaError as exc:
        raise Refusal(f"its formula cannot be analysed ({exc})") from None
    if why is not None:
        raise Refusal(why)
    switches = [abs(float(q.hi)) for q in parts[:-1]]  # type: ignore[arg-type]
    reach = 16.0 + 2.0 * max(switches, default=0.0)
    alpha, beta = math.inf, -math.inf
    budget = _MAX_CELLS
    for part in parts:
        stack = _cells(part.lo, part.hi, reach)
        finite = [b - a for a, b in stack if math.isfinite(a) and math.isfinite(b)]
        smallest = max(1e-6, sum(finite) / 4096)
        while stack:
            a, b = stack.pop()
            budget -= 1
            try:
                d1 = fm.jet(part.poly, Jet.variable(Interval(a, b))).d1
            except (FormulaError, DomainError, ZeroDivisionError, OverflowError):
                d1 = Interval(-math.inf, math.inf)
            if not d1.finite:
                if math.isfinite(a) and math.isfinite(b) and b - a > 1e-9 and budget > 0:
                    m = a + (b - a) / 2
                    stack += [(a, m), (m, b)]
                    continue
                raise Refusal(f"no finite bound on its slope could be proven (its derivative is unbounded {_where(a, b)})")
            if math.isfinite(a) and math.isfinite(b) and b - a > smallest and budget > 0 and _loose(part.poly, a, b, d1):
                m = a + (b - a) / 2
                stack += [(a, m), (m, b)]
                continue
            alpha, beta = min(alpha, d1.lo), max(beta, d1.hi)
    return alpha, beta


__all__ = ["JUMP", "Piece", "REL", "Refusal", "derive", "discontinuity", "match", "pieces"]
