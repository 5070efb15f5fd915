r"""Elementwise functions of one real variable as exact symbolic formulas.

A :class:`Poly` is a sum of monomials ``c · Π aᵢ^{pᵢ}`` (an exact rational coefficient ``c``:
the stored float constants are exact rationals, and sums, products and quotients of them are
kept exact, so ``x·clip(x+3, 0, 6)/6`` is continuous at −3 in exact arithmetic; integer
powers) over *atoms*: the variable :data:`X`, a function of formulas (:class:`Fn`: ``exp``,
``log``, ``log1p``, ``erf``, ``tanh``, ``sigmoid``, ``softplus``, ``sqrt``, ``recip``,
``pow``, ``max``, ``min``, ``relu``, ``abs``), or a switch :class:`Where` ``(cond, a, b)`` whose
condition :class:`Cond` is ``lhs ▷ 0`` (▷ one of ``> ≥ < ≤ =``).  Products are expanded and
like terms collected, so one function written in different ways by different exporters gets
the same normal form (``x*0.5*(1+erf(x/√2))`` and ``0.5*x + 0.5*x*erf(0.7071…*x)`` are equal).

Canonical rewrites, each an identity of real functions:

* ``log1p(exp(u))`` and ``log(1 + exp(u))`` → ``softplus(u)``; ``1/(1 + exp(−u))`` → ``σ(u)``;
* ``relu(u)``, ``|u|``, ``max(a, b)``, ``min(a, b)`` → a :class:`Where` when the switch
  (``u``, ``a − b``) is affine in ``x``, so the switch point is known exactly; otherwise they stay
  atoms (they are continuous, so no switch point is needed);
* a where/switch with a constant condition or equal branches is folded.

One rewrite is *not* an identity and is stated as such: ``where(u > t, k·u, k·softplus(u))``
with ``u`` affine in ``x`` and ``t ≥ 15`` (the threshold switch of torch's softplus, as both
ONNX exporters write it) becomes ``k·softplus(u)``.  The two differ by at most
``|k|·log1p(e^{−t}) ≤ 3.1·10⁻⁷ |k|`` on ``u > t``, where ``|k·u| ≥ 15|k|``: less than float32's
half-ulp there, so no float32 evaluation of the model can tell them apart.

A formula can be evaluated on tensors (:func:`evaluate`), on interval jets
(:func:`jet`, for proofs), exactly at a rational point when it is polynomial there
(:func:`exact`), and shown (:meth:`Poly.text`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Union

import torch

from liplt_cli.graph import interval as iv
from liplt_cli.graph.interval import Interval, Jet

MAX_TERMS = 64
SOFTPLUS_SWITCH = 15.0


class FormulaError(ValueError):
    """The formula cannot be represented (too large, division by zero, ...)."""


# ---------------------------------------------------------------------- atoms
class Atom:
    key: str


@dataclass(frozen=True, eq=False)
class _Var(Atom):
    key: str = "x"


X = _Var()


@dataclass(frozen=True, eq=False)
class Fn(Atom):
    """``name(args…; params…)``."""

    name: str
    args: tuple["Poly", ...]
    params: tuple[float, ...] = ()
    key: str = field(init=False)

    def __post_init__(self) -> None:
        inner = ";".join(a.key for a in self.args)
        extra = "," + ",".join(repr(p) for p in self.params) if self.params else ""
        object.__setattr__(self, "key", f"{self.name}({inner}{extra})")


@dataclass(frozen=True, eq=False)
class Cond:
    """``lhs ▷ 0`` with ▷ in ``> >= < <= ==``."""

    lhs: "Poly"
    op: str
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"[{self.lhs.key}{self.op}0]")

    def holds(self, value: Fraction | float) -> bool:
        return {">": value > 0, ">=": value >= 0, "<": value < 0, "<=": value <= 0, "==": value == 0}[self.op]


@dataclass(frozen=True, eq=False)
class Where(Atom):
    cond: Cond
    a: "Poly"
    b: "Poly"
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"where({self.cond.key};{self.a.key};{self.b.key})")


Monomial = tuple[tuple[Atom, int], ...]


def _mono_key(m: Monomial) -> str:
    return "*".join(a.key if p == 1 else f"{a.key}^{p}" for a, p in m)


@dataclass(frozen=True, eq=False)
class Poly:
    """``Σ coef · monomial`` (sorted by monomial, no zero coefficients)."""

    terms: tuple[tuple[Monomial, Fraction], ...]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "+".join(f"{c}·{_mono_key(m)}" for m, c in self.terms) or "0")

    # -------------------------------------------------------------- queries
    def is_const(self) -> bool:
        return all(not m for m, _ in self.terms)

    def const_value(self) -> Fraction:
        return sum((c for m, c in self.terms if not m), Fraction(0))

    def coeffs(self) -> dict[int, Fraction] | None:
        """``{power: coef}`` when the formula is a polynomial in ``x`` (``None`` otherwise)."""
        out: dict[int, Fraction] = {}
        for m, c in self.terms:
            if not m:
                out[0] = c
            elif len(m) == 1 and m[0][0] is X and m[0][1] > 0:
                out[m[0][1]] = c
            else:
                return None
        return out

    def affine(self) -> tuple[Fraction, Fraction] | None:
        """``(a1, a0)`` with ``self = a1·x + a0`` (``None`` when not affine)."""
        c = self.coeffs()
        if c is None or any(k > 1 for k in c):
            return None
        return c.get(1, Fraction(0)), c.get(0, Fraction(0))

    def atoms(self) -> list[Atom]:
        return [a for m, _ in self.terms for a, _ in m]

    def text(self, limit: int = 80) -> str:
        s = _text(self)
        return s if len(s) <= limit else s[: limit - 1] + "…"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Poly) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


Number = Union[int, float, Fraction]


def frac(v: Number) -> Fraction:
    """The exact rational value of a finite number."""
    if isinstance(v, Fraction):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        raise FormulaError(f"non-finite constant {v}")
    return Fraction(v)


def _make(d: dict[str, tuple[Monomial, Fraction]]) -> Poly:
    items = sorted((k, m, c) for k, (m, c) in d.items() if c != 0)
    if len(items) > MAX_TERMS:
        raise FormulaError(f"the formula has more than {MAX_TERMS} terms")
    return Poly(tuple((m, c) for _, m, c in items))


def const(c: Number) -> Poly:
    v = frac(c)
    return Poly((((), v),)) if v != 0 else Poly(())


def var() -> Poly:
    return Poly(((((X, 1),), Fraction(1)),))


def atom(a: Atom, power: int = 1) -> Poly:
    return Poly(((((a, power),), Fraction(1)),))


ZERO, ONE = const(0), const(1)


# ---------------------------------------------------------------------- arithmetic
def add(p: Poly, q: Poly) -> Poly:
    d = {_mono_key(m): (m, c) for m, c in p.terms}
    for m, c in q.terms:
        k = _mono_key(m)
        d[k] = (m, d[k][1] + c) if k in d else (m, c)
    return _make(d)


def scale(p: Poly, s: Number) -> Poly:
    f = frac(s)
    return _make({_mono_key(m): (m, c * f) for m, c in p.terms})


def neg(p: Poly) -> Poly:
    return scale(p, -1)


def sub(p: Poly, q: Poly) -> Poly:
    return add(p, neg(q))


def _mono_mul(m1: Monomial, m2: Monomial) -> Monomial:
    powers: dict[str, list] = {}
    for a, p in list(m1) + list(m2):
        if a.key in powers:
            powers[a.key][1] += p
        else:
            powers[a.key] = [a, p]
    return tuple((a, p) for k, (a, p) in sorted(powers.items()) if p != 0)


def mul(p: Poly, q: Poly) -> Poly:
    if len(p.terms) * len(q.terms) > 16 * MAX_TERMS:
        raise FormulaError(f"the formula has more than {MAX_TERMS} terms")
    d: dict[str, tuple[Monomial, Fraction]] = {}
    for m1, c1 in p.terms:
        for m2, c2 in q.terms:
            m = _mono_mul(m1, m2)
            k = _mono_key(m)
            d[k] = (m, d[k][1] + c1 * c2) if k in d else (m, c1 * c2)
    return _make(d)


def recip(p: Poly) -> Poly:
    if p.is_const():
        c = p.const_value()
        if c == 0:
            raise FormulaError("division by zero")
        return const(1 / c)
    if len(p.terms) == 1:
        m, c = p.terms[0]
        return Poly(((tuple((a, -k) for a, k in m), 1 / c),))
    # 1/(1 + exp(w)) = σ(−w)
    d = dict((_mono_key(m), (m, c)) for m, c in p.terms)
    if len(p.terms) == 2 and d.get("", (None, 0))[1] == 1:
        (m, c), = [(m, c) for m, c in p.terms if m]
        if c == 1 and len(m) == 1 and m[0][1] == 1 and isinstance(m[0][0], Fn) and m[0][0].name == "exp":
            return unary("sigmoid", neg(m[0][0].args[0]))
    return atom(Fn("recip", (p,)))


def div(p: Poly, q: Poly) -> Poly:
    return mul(p, recip(q))


def power(p: Poly, e: float) -> Poly:
    if p.is_const():
        c = p.const_value()
        try:
            if float(e).is_integer() and abs(e) <= 64:
                return const(c ** int(e))
            return const(float(c) ** float(e))
        except (OverflowError, ZeroDivisionError, ValueError, TypeError) as exc:
            raise FormulaError(f"constant power {c}**{e}: {exc}") from None
    if float(e).is_integer() and abs(e) <= 16:
        n = int(e)
        result = ONE
        for _ in range(abs(n)):
            result = mul(result, p)
        return result if n >= 0 else recip(result)
    if e == 0.5:
        return unary("sqrt", p)
    return atom(Fn("pow", (p,), (float(e),)))


# ---------------------------------------------------------------------- functions
_POINT: dict[str, Callable[[float], float]] = {
    "exp": math.exp, "log": math.log, "log1p": math.log1p, "erf": math.erf, "tanh": math.tanh,
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)),
    "softplus": lambda v: v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v)),
    "sqrt": math.sqrt, "relu": lambda v: max(v, 0.0), "abs": abs,
}


def unary(name: str, p: Poly) -> Poly:
    """``name(p)`` with constant folding and the canonical rewrites of the module docstring."""
    if p.is_const():
        try:
            return const(_POINT[name](float(p.const_value())))
        except (OverflowError, ValueError) as exc:
            raise FormulaError(f"{name} of the constant {p.const_value()}: {exc}") from None
    if name in ("relu", "abs") and p.affine() is not None:
        other = ZERO if name == "relu" else neg(p)
        return where(make_cond(p, ">"), p, other)
    if name == "log1p":
        e = _single_fn(p, "exp")
        if e is not None:
            return unary("softplus", e.args[0])
    if name == "log":
        rest = sub(p, ONE)
        e = _single_fn(rest, "exp")
        if e is not None:
            return unary("softplus", e.args[0])
        e = _single_fn(p, "exp")
        if e is not None:
            return e.args[0]
    return atom(Fn(name, (p,)))


def _single_fn(p: Poly, name: str) -> Fn | None:
    """``f`` when ``p`` is exactly ``1·f`` with ``f`` an atom ``name(…)``."""
    if len(p.terms) != 1:
        return None
    m, c = p.terms[0]
    if c != 1 or len(m) != 1 or m[0][1] != 1 or not isinstance(m[0][0], Fn) or m[0][0].name != name:
        return None
    return m[0][0]


def maximum(a: Poly, b: Poly) -> Poly:
    d = sub(a, b)
    if d.is_const():
        return a if d.const_value() >= 0 else b
    if d.affine() is not None:
        return where(make_cond(d, ">"), a, b)
    return atom(Fn("max", tuple(sorted((a, b), key=lambda q: q.key))))


def minimum(a: Poly, b: Poly) -> Poly:
    d = sub(a, b)
    if d.is_const():
        return a if d.const_value() <= 0 else b
    if d.affine() is not None:
        return where(make_cond(d, "<"), a, b)
    return atom(Fn("min", tuple(sorted((a, b), key=lambda q: q.key))))


def clamp(p: Poly, lo: Number | None, hi: Number | None) -> Poly:
    """``torch.clamp``: ``min(max(p, lo), hi)``."""
    if lo is not None and not math.isinf(lo):
        p = maximum(p, const(lo))
    if hi is not None and not math.isinf(hi):
        p = minimum(p, const(hi))
    return p


def make_cond(lhs: Poly, op: str) -> "Cond | bool":
    """``lhs ▷ 0`` with ``<``/``<=`` written as ``>``/``>=`` of ``−lhs`` (a constant one is folded)."""
    if op in ("<", "<="):
        lhs, op = neg(lhs), ">" if op == "<" else ">="
    if lhs.is_const():
        return Cond(ZERO, op).holds(lhs.const_value())
    return Cond(lhs, op)


def compare(a: Poly, b: Poly, op: str) -> "Cond | bool":
    """``a ▷ b`` with ▷ in ``> >= < <= ==``."""
    return make_cond(sub(a, b), op)


def where(cond: "Cond | bool", a: Poly, b: Poly) -> Poly:
    if isinstance(cond, bool):
        return a if cond else b
    if a == b:
        return a
    folded = _softplus_switch(cond, a, b)
    if folded is not None:
        return folded
    return atom(Where(cond, a, b))


def _softplus_switch(cond: Cond, a: Poly, b: Poly) -> Poly | None:
    """``where(u > t, k·u, k·softplus(u))`` with ``u`` affine, ``t ≥ 15`` → ``k·softplus(u)``."""
    if len(b.terms) != 1 or cond.op == "==":
        return None
    m, k = b.terms[0]
    if len(m) != 1 or m[0][1] != 1 or not isinstance(m[0][0], Fn) or m[0][0].name != "softplus":
        return None
    u = m[0][0].args[0]
    ua, la = u.affine(), cond.lhs.affine()
    if ua is None or la is None or ua[0] == 0 or la[0] == 0:
        return None
    if not _close_poly(a, scale(u, k)):
        return None
    # the condition must select the branch where u is large: lhs increases with u
    if (la[0] > 0) != (ua[0] > 0):
        return None
    x0 = -la[1] / la[0]
    t = ua[0] * x0 + ua[1]
    if not t >= SOFTPLUS_SWITCH:
        return None
    return b


def _close_poly(p: Poly, q: Poly, rel: float = 2.0**-22) -> bool:
    dp, dq = {_mono_key(m): c for m, c in p.terms}, {_mono_key(m): c for m, c in q.terms}
    if dp.keys() != dq.keys():
        return False
    return all(abs(float(dp[k] - dq[k])) <= rel * max(abs(float(dq[k])), abs(float(dp[k]))) for k in dp)


# ---------------------------------------------------------------------- rebuilding
def rebuild(p: Poly, leaf: Poly, choose: Callable[[Cond], bool | None] | None = None) -> Poly:
    """``p`` with ``x`` replaced by ``leaf`` and, where ``choose(cond)`` decides, each switch by
    its branch (all canonical rewrites apply again)."""
    cache: dict[str, Poly] = {}

    def go(q: Poly) -> Poly:
        if q.key in cache:
            return cache[q.key]
        total = ZERO
        for m, c in q.terms:
            term = const(c)
            for a, k in m:
                term = mul(term, power(go_atom(a), k) if k != 1 else go_atom(a))
            total = add(total, term)
        cache[q.key] = total
        return total

    def go_cond(cnd: Cond) -> "Cond | bool":
        return compare(go(cnd.lhs), ZERO, cnd.op)

    def go_atom(a: Atom) -> Poly:
        if a is X:
            return leaf
        if isinstance(a, Where):
            decided = choose(a.cond) if choose is not None else None
            if decided is not None:
                return go(a.a if decided else a.b)
            return where(go_cond(a.cond), go(a.a), go(a.b))
        assert isinstance(a, Fn)
        args = [go(x) for x in a.args]
        if a.name == "recip":
            return recip(args[0])
        if a.name == "pow":
            return power(args[0], a.params[0])
        if a.name == "max":
            return maximum(args[0], args[1])
        if a.name == "min":
            return minimum(args[0], args[1])
        return unary(a.name, args[0])

    return go(p)


def substitute(p: Poly, inner: Poly) -> Poly:
    """``p(inner(x))``."""
    return rebuild(p, inner)


def conditions(p: Poly) -> list[Cond]:
    """Every switch condition in ``p`` (nested ones included), each once."""
    seen: dict[str, Cond] = {}

    def go(q: Poly) -> None:
        for a in q.atoms():
            if isinstance(a, Where):
                seen.setdefault(a.cond.key, a.cond)
                go(a.cond.lhs)
                go(a.a)
                go(a.b)
            elif isinstance(a, Fn):
                for x in a.args:
                    go(x)

    go(p)
    return list(seen.values())


# ---------------------------------------------------------------------- evaluation
Value = Union[torch.Tensor, Jet]


def evaluate(p: Poly, x: torch.Tensor) -> torch.Tensor:
    """``p(x)`` elementwise on a floating tensor (in its dtype)."""
    cache: dict[str, torch.Tensor] = {}

    def go(q: Poly) -> torch.Tensor:
        if q.key in cache:
            return cache[q.key]
        total = torch.zeros_like(x)
        for m, c in q.terms:
            term = torch.full_like(x, float(c))
            for a, k in m:
                v = go_atom(a)
                term = term * (v if k == 1 else v**k)
            total = total + term
        cache[q.key] = total
        return total

    def go_cond(cnd: Cond) -> torch.Tensor:
        v = go(cnd.lhs)
        return {">": v > 0, ">=": v >= 0, "<": v < 0, "<=": v <= 0, "==": v == 0}[cnd.op]

    def go_atom(a: Atom) -> torch.Tensor:
        if a is X:
            return x
        if isinstance(a, Where):
            return torch.where(go_cond(a.cond), go(a.a), go(a.b))
        assert isinstance(a, Fn)
        args = [go(q) for q in a.args]
        return _TORCH[a.name](*args, *a.params)

    return go(p)


def evaluate_cond(c: Cond, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(truth, lhs)`` of a condition on a tensor."""
    v = evaluate(c.lhs, x)
    return {">": v > 0, ">=": v >= 0, "<": v < 0, "<=": v <= 0, "==": v == 0}[c.op], v


_TORCH: dict[str, Callable[..., torch.Tensor]] = {
    "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "erf": torch.erf, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "softplus": lambda t: torch.logaddexp(t, torch.zeros_like(t)), "sqrt": torch.sqrt,
    "recip": torch.reciprocal, "pow": lambda t, e: torch.pow(t, e), "max": torch.maximum, "min": torch.minimum,
    "relu": torch.relu, "abs": torch.abs,
}


def jet(p: Poly, x: Jet) -> Jet:
    """Interval jet of a formula *without switches* (see :mod:`liplt_cli.graph.interval`)."""
    cache: dict[str, Jet] = {}

    def go(q: Poly) -> Jet:
        if q.key in cache:
            return cache[q.key]
        total: Jet = Jet.constant(0.0)
        for m, c in q.terms:
            term: Jet = Jet.constant(coef_interval(c))
            for a, k in m:
                v = go_atom(a)
                if k != 1:
                    v = iv.j_pow_int(v, k) if k > 0 else iv.reciprocal(iv.j_pow_int(v, -k))
                term = term * v
            total = total + term
        cache[q.key] = total
        return total

    def go_atom(a: Atom) -> Jet:
        if a is X:
            return x
        if isinstance(a, Where):
            raise FormulaError("internal: jet of a formula with a switch")
        assert isinstance(a, Fn)
        args = [go(q) for q in a.args]
        if a.name == "pow":
            return _jet_pow(args[0], a.params[0])
        return _JETS[a.name](*args)

    return go(p)


def coef_interval(c: Fraction) -> Interval:
    """An interval of doubles containing the rational ``c``."""
    f = float(c)
    if Fraction(f) == c:
        return Interval.point(f)
    return Interval(math.nextafter(f, -math.inf), math.nextafter(f, math.inf))


def _jet_pow(u: Jet, e: float) -> Jet:
    # u^e = exp(e·log u) for u > 0 (non-integer powers need a positive base)
    return iv.j_exp(e * iv.j_log(u))


_JETS: dict[str, Callable[..., Jet]] = {
    "exp": iv.j_exp, "log": iv.j_log, "log1p": iv.j_log1p, "erf": iv.j_erf, "tanh": iv.j_tanh,
    "sigmoid": iv.j_sigmoid, "softplus": iv.j_softplus, "sqrt": iv.j_sqrt, "recip": iv.reciprocal,
    "max": iv.j_maximum, "min": iv.j_minimum, "relu": iv.j_relu, "abs": iv.j_abs,
}


def exact(p: Poly, t: Fraction) -> Fraction | None:
    """``p(t)`` in exact rational arithmetic, or ``None`` where a transcendental function is
    needed at a point where its value is irrational (exact special values: exp(0) = 1,
    log(1) = log1p(0) = erf(0) = tanh(0) = 0, σ(0) = 1/2, √0 = 0, √1 = 1)."""

    def go(q: Poly) -> Fraction | None:
        total = Fraction(0)
        for m, c in q.terms:
            term = c
            for a, k in m:
                v = go_atom(a)
                if v is None:
                    return None
                if k < 0 and v == 0:
                    return None
                term *= v**k
            total += term
        return total

    def go_atom(a: Atom) -> Fraction | None:
        if a is X:
            return t
        if isinstance(a, Where):
            lhs = go(a.cond.lhs)
            if lhs is None:
                return None
            return go(a.a if a.cond.holds(lhs) else a.b)
        assert isinstance(a, Fn)
        args = [go(q) for q in a.args]
        if any(v is None for v in args):
            return None
        v = args[0]
        if a.name == "recip":
            return None if v == 0 else 1 / v
        if a.name == "max":
            return max(args)  # type: ignore[type-var]
        if a.name == "min":
            return min(args)  # type: ignore[type-var]
        if a.name == "relu":
            return max(v, Fraction(0))  # type: ignore[type-var]
        if a.name == "abs":
            return abs(v)  # type: ignore[arg-type]
        special = {("exp", 0): 1, ("log", 1): 0, ("log1p", 0): 0, ("erf", 0): 0, ("tanh", 0): 0,
                   ("sigmoid", 0): Fraction(1, 2), ("sqrt", 0): 0, ("sqrt", 1): 1}
        key = (a.name, v)
        if key in special:
            return Fraction(special[key])
        return None

    return go(p)


# ---------------------------------------------------------------------- text
def _num(c: float) -> str:
    return f"{c:.6g}"


def _text(p: Poly) -> str:
    if not p.terms:
        return "0"
    parts = []
    for m, c in p.terms:
        factors = []
        for a, k in m:
            s = _atom_text(a)
            factors.append(s if k == 1 else f"{s}^{k}")
        if not factors:
            parts.append(_num(float(c)))
        elif c == 1:
            parts.append("·".join(factors))
        elif c == -1:
            parts.append("-" + "·".join(factors))
        else:
            parts.append(_num(float(c)) + "·" + "·".join(factors))
    return " + ".join(parts).replace("+ -", "- ")


def _atom_text(a: Atom) -> str:
    if a is X:
        return "x"
    if isinstance(a, Where):
        return f"where({_text(a.cond.lhs)} {a.cond.op} 0, {_text(a.a)}, {_text(a.b)})"
    assert isinstance(a, Fn)
    args = ", ".join(_text(q) for q in a.args)
    if a.name == "pow":
        return f"({args})^{a.params[0]:g}"
    if a.name == "recip":
        return f"1/({args})"
    return f"{a.name}({args})"


__all__ = [
    "Atom", "Cond", "Fn", "FormulaError", "MAX_TERMS", "ONE", "Poly", "SOFTPLUS_SWITCH", "Where", "X", "ZERO", "add",
    "atom", "clamp", "compare", "conditions", "const", "div", "evaluate", "evaluate_cond", "exact", "jet",
    "maximum", "minimum", "mul", "neg", "power", "rebuild", "recip", "scale", "sub", "substitute", "unary", "var",
    "where", "make_cond", "frac", "coef_interval",
]
