"""The exact formula of one elementwise op, read from what the op computes.

:mod:`liplt_cli.load.elementwise` follows chains of elementwise ops; this module gives one fx
node's exact formula (:mod:`liplt_cli.load.formula`) given the formulas of its arguments:
torch functions and modules (with their parameters: a Softplus module's threshold switch is
part of its formula), Tensor methods and onnx2torch's modules.  An op that is not one of these
raises :class:`Untranslatable`, and the ordinary handlers take over.
:func:`activation_formula` gives the formula of each supported activation.
"""

from __future__ import annotations

import math
import operator
from fractions import Fraction
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from liplt_cli.load import formula as fm
from liplt_cli.load.formula import Cond, Poly
from liplt_cli.load.values import Sym

__all__ = ["Formula", "Untranslatable", "activation_formula", "read", "reads_correctly"]

Formula = Poly | Cond

# ---------------------------------------------------------------------- activations as formulas
_X = fm.var()


def _clamp01(u: Poly) -> Poly:
    return fm.clamp(u, 0.0, 1.0)


def activation_formula(key: str, params: dict[str, float]) -> Poly | None:
    """The exact formula of a supported activation in ``x`` (``None`` for a derived one)."""
    x = _X
    if key == "identity":
        return x
    if key == "relu":
        return fm.unary("relu", x)
    if key == "leaky_relu":
        s = float(params.get("negative_slope", 0.01))
        return fm.where(fm.compare(x, fm.ZERO, ">"), x, fm.scale(x, s))
    if key in ("tanh", "sigmoid"):
        return fm.unary(key, x)
    if key == "elu":
        a = float(params.get("alpha", 1.0))
        return fm.where(fm.compare(x, fm.ZERO, ">"), x, fm.scale(fm.sub(fm.unary("exp", x), fm.ONE), a))
    if key == "softplus":
        b = fm.frac(float(params.get("beta", 1.0)))
        return fm.scale(fm.unary("softplus", fm.scale(x, b)), 1 / b)
    if key in ("clip", "hardtanh", "relu6"):
        return fm.clamp(x, float(params.get("min", -1.0)), float(params.get("max", 1.0)))
    if key in ("hardsigmoid", "hardswish"):
        a = fm.frac(params["alpha"]) if "alpha" in params else Fraction(1, 6)
        b = fm.frac(params["beta"]) if "beta" in params else Fraction(1, 2)
        hs = _clamp01(fm.add(fm.scale(x, a), fm.const(b)))
        return hs if key == "hardsigmoid" else fm.mul(x, hs)
    if key == "silu":
        return fm.mul(x, fm.unary("sigmoid", x))
    if key == "gelu":
        return fm.add(fm.scale(x, 0.5), fm.scale(fm.mul(x, fm.unary("erf", fm.scale(x, math.sqrt(0.5)))), 0.5))
    if key == "gelu_tanh":
        k, c = math.sqrt(2.0 / math.pi), 0.044715
        inner = fm.add(fm.scale(x, k), fm.scale(fm.power(x, 3), k * c))
        return fm.add(fm.scale(x, 0.5), fm.scale(fm.mul(x, fm.unary("tanh", inner)), 0.5))
    if key == "mish":
        return fm.mul(x, fm.unary("tanh", fm.unary("softplus", x)))
    return None


def _torch_softplus(u: Poly, beta: float, threshold: float) -> Poly:
    """torch's softplus: ``u`` where ``βu > threshold``, else ``softplus(βu)/β``."""
    if not (math.isfinite(beta) and beta > 0 and not math.isnan(threshold)):
        raise Untranslatable()
    smooth = fm.scale(fm.unary("softplus", fm.scale(u, beta)), 1 / fm.frac(beta))
    return fm.where(fm.compare(fm.scale(u, beta), fm.const(threshold), ">"), u, smooth)


def _gelu(u: Poly, approximate: str) -> Poly:
    f = activation_formula("gelu" if approximate == "none" else "gelu_tanh", {})
    if approximate not in ("none", "tanh") or f is None:
        raise Untranslatable()
    return fm.substitute(f, u)


def _apply(key: str, u: Poly, **params: float) -> Poly:
    f = activation_formula(key, params)
    assert f is not None
    return fm.substitute(f, u)


# ---------------------------------------------------------------------- reading one op
class Untranslatable(Exception):
    """The op is not one this module reads as a formula (the ordinary handlers take over)."""


def _as_poly(v: Any) -> Poly:
    if isinstance(v, Poly):
        return v
    if isinstance(v, Cond):
        return fm.where(v, fm.ONE, fm.ZERO)
    if isinstance(v, bool):
        return fm.ONE if v else fm.ZERO
    if isinstance(v, (int, float)):
        return fm.const(float(v))
    raise Untranslatable()


def _as_cond(v: Any) -> Cond | bool:
    if isinstance(v, (Cond, bool)):
        return v
    raise Untranslatable()


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Untranslatable()
    return float(v)


def _opt_num(v: Any) -> float | None:
    return None if v is None else _num(v)


def _resolve(obj: Any, fmap: dict[int, Formula]) -> Any:
    if isinstance(obj, Sym):
        return fmap[id(obj)]
    if isinstance(obj, torch.Tensor):
        if obj.numel() != 1:
            raise Untranslatable()
        if obj.dtype == torch.bool:
            return bool(obj.reshape(()))
        if obj.is_floating_point() or not obj.is_complex():
            return float(obj.reshape(()))
        raise Untranslatable()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(o, fmap) for o in obj) if not hasattr(obj, "_fields") else obj
    return obj


def _arith(kind: str, a: Any, b: Any, alpha: Any = 1) -> Poly:
    pa, pb = _as_poly(a), _as_poly(b)
    if kind == "add":
        return fm.add(pa, fm.scale(pb, _num(alpha)))
    if kind == "sub":
        return fm.sub(pa, fm.scale(pb, _num(alpha)))
    if kind == "mul":
        return fm.mul(pa, pb)
    return fm.div(pa, pb)


def _pow(a: Any, e: Any) -> Poly:
    if isinstance(e, (Poly, Cond)):
        raise Untranslatable()
    return fm.power(_as_poly(a), _num(e))


def _cmp(op: str) -> Callable[..., Cond | bool]:
    return lambda a, b: fm.compare(_as_poly(a), _as_poly(b), op)


def _where(c: Any, a: Any, b: Any) -> Poly:
    return fm.where(_as_cond(c), _as_poly(a), _as_poly(b))


def _clamp(x: Any, lo: Any = None, hi: Any = None) -> Poly:
    return fm.clamp(_as_poly(x), _opt_num(lo), _opt_num(hi))


def _cast(x: Any, dtype: Any = None) -> Formula:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        if isinstance(dtype, torch.dtype) and dtype == torch.bool and isinstance(x, (Cond, bool)):
            return x
        raise Untranslatable()
    return _as_poly(x)


def _unary(name: str) -> Callable[[Any], Poly]:
    return lambda u: fm.unary(name, _as_poly(u))


def _fold(fn: Callable[[Poly, Poly], Poly], values: list[Any]) -> Poly:
    out = _as_poly(values[0])
    for v in values[1:]:
        out = fn(out, _as_poly(v))
    return out


def _arg(args: list[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


_FUNCTIONS: dict[Any, Callable[[list[Any], dict[str, Any]], Formula]] = {
    operator.add: lambda a, k: _arith("add", a[0], a[1]),
    torch.add: lambda a, k: _arith("add", a[0], _arg(a, k, 1, "other"), k.get("alpha", 1)),
    operator.sub: lambda a, k: _arith("sub", a[0], a[1]),
    torch.sub: lambda a, k: _arith("sub", a[0], _arg(a, k, 1, "other"), k.get("alpha", 1)),
    torch.rsub: lambda a, k: _arith("sub", _arg(a, k, 1, "other"), a[0], k.get("alpha", 1)),
    operator.mul: lambda a, k: _arith("mul", a[0], a[1]),
    torch.mul: lambda a, k: _arith("mul", a[0], _arg(a, k, 1, "other")),
    operator.truediv: lambda a, k: _arith("div", a[0], a[1]),
    torch.div: lambda a, k: _arith("div", a[0], _arg(a, k, 1, "other")) if k.get("rounding_mode") is None else _no(),
    operator.neg: lambda a, k: fm.neg(_as_poly(a[0])),
    torch.neg: lambda a, k: fm.neg(_as_poly(a[0])),
    operator.pow: lambda a, k: _pow(a[0], a[1]),
    torch.pow: lambda a, k: _pow(a[0], _arg(a, k, 1, "exponent")),
    torch.exp: lambda a, k: _unary("exp")(a[0]),
    torch.log: lambda a, k: _unary("log")(a[0]),
    torch.log1p: lambda a, k: _unary("log1p")(a[0]),
    torch.erf: lambda a, k: _unary("erf")(a[0]),
    torch.special.erf: lambda a, k: _unary("erf")(a[0]),
    torch.abs: lambda a, k: _unary("abs")(a[0]),
    torch.sqrt: lambda a, k: _unary("sqrt")(a[0]),
    torch.rsqrt: lambda a, k: fm.recip(_unary("sqrt")(a[0])),
    torch.reciprocal: lambda a, k: fm.recip(_as_poly(a[0])),
    torch.tanh: lambda a, k: _unary("tanh")(a[0]),
    F.tanh: lambda a, k: _unary("tanh")(a[0]),
    torch.sigmoid: lambda a, k: _unary("sigmoid")(a[0]),
    F.sigmoid: lambda a, k: _unary("sigmoid")(a[0]),
    torch.relu: lambda a, k: _unary("relu")(a[0]),
    F.relu: lambda a, k: _unary("relu")(a[0]),
    F.relu6: lambda a, k: _clamp(a[0], 0.0, 6.0),
    F.softplus: lambda a, k: _torch_softplus(_as_poly(a[0]), _num(_arg(a, k, 1, "beta", 1.0)), _num(_arg(a, k, 2, "threshold", 20.0))),
    F.silu: lambda a, k: _apply("silu", _as_poly(a[0])),
    F.mish: lambda a, k: _apply("mish", _as_poly(a[0])),
    F.gelu: lambda a, k: _gelu(_as_poly(a[0]), str(_arg(a, k, 1, "approximate", "none"))),
    F.elu: lambda a, k: _apply("elu", _as_poly(a[0]), alpha=_num(_arg(a, k, 1, "alpha", 1.0))),
    F.leaky_relu: lambda a, k: _apply("leaky_relu", _as_poly(a[0]), negative_slope=_num(_arg(a, k, 1, "negative_slope", 0.01))),
    F.hardtanh: lambda a, k: _clamp(a[0], _arg(a, k, 1, "min_val", -1.0), _arg(a, k, 2, "max_val", 1.0)),
    F.hardsigmoid: lambda a, k: _apply("hardsigmoid", _as_poly(a[0])),
    F.hardswish: lambda a, k: _apply("hardswish", _as_poly(a[0])),
    torch.clamp: lambda a, k: _clamp(a[0], _arg(a, k, 1, "min"), _arg(a, k, 2, "max")),
    torch.clip: lambda a, k: _clamp(a[0], _arg(a, k, 1, "min"), _arg(a, k, 2, "max")),
    torch.where: lambda a, k: _where(a[0], a[1], a[2]),
    torch.maximum: lambda a, k: fm.maximum(_as_poly(a[0]), _as_poly(a[1])),
    torch.minimum: lambda a, k: fm.minimum(_as_poly(a[0]), _as_poly(a[1])),
    torch.gt: lambda a, k: _cmp(">")(a[0], a[1]), operator.gt: lambda a, k: _cmp(">")(a[0], a[1]),
    torch.ge: lambda a, k: _cmp(">=")(a[0], a[1]), operator.ge: lambda a, k: _cmp(">=")(a[0], a[1]),
    torch.lt: lambda a, k: _cmp("<")(a[0], a[1]), operator.lt: lambda a, k: _cmp("<")(a[0], a[1]),
    torch.le: lambda a, k: _cmp("<=")(a[0], a[1]), operator.le: lambda a, k: _cmp("<=")(a[0], a[1]),
    torch.eq: lambda a, k: _cmp("==")(a[0], a[1]), operator.eq: lambda a, k: _cmp("==")(a[0], a[1]),
}


def _no() -> Formula:
    raise Untranslatable()


_METHODS: dict[str, Callable[[list[Any], dict[str, Any]], Formula]] = {
    "add": _FUNCTIONS[torch.add], "sub": _FUNCTIONS[torch.sub], "mul": _FUNCTIONS[torch.mul],
    "div": _FUNCTIONS[torch.div], "__add__": _FUNCTIONS[operator.add], "__sub__": _FUNCTIONS[operator.sub],
    "__mul__": _FUNCTIONS[operator.mul], "__truediv__": _FUNCTIONS[operator.truediv],
    "__radd__": lambda a, k: _arith("add", a[1], a[0]), "__rsub__": lambda a, k: _arith("sub", a[1], a[0]),
    "__rmul__": lambda a, k: _arith("mul", a[1], a[0]), "__rtruediv__": lambda a, k: _arith("div", a[1], a[0]),
    "neg": _FUNCTIONS[torch.neg], "__neg__": _FUNCTIONS[torch.neg], "pow": _FUNCTIONS[torch.pow],
    "__pow__": _FUNCTIONS[operator.pow],
    "exp": _FUNCTIONS[torch.exp], "log": _FUNCTIONS[torch.log], "log1p": _FUNCTIONS[torch.log1p],
    "erf": _FUNCTIONS[torch.erf], "abs": _FUNCTIONS[torch.abs], "sqrt": _FUNCTIONS[torch.sqrt],
    "rsqrt": _FUNCTIONS[torch.rsqrt], "reciprocal": _FUNCTIONS[torch.reciprocal], "tanh": _FUNCTIONS[torch.tanh],
    "sigmoid": _FUNCTIONS[torch.sigmoid], "relu": _FUNCTIONS[torch.relu], "clamp": _FUNCTIONS[torch.clamp],
    "clip": _FUNCTIONS[torch.clip],
    "__gt__": _FUNCTIONS[operator.gt], "__ge__": _FUNCTIONS[operator.ge], "__lt__": _FUNCTIONS[operator.lt],
    "__le__": _FUNCTIONS[operator.le],
    "float": lambda a, k: _cast(a[0]),
    "to": lambda a, k: _cast(a[0], next((v for v in list(a[1:]) + list(k.values()) if isinstance(v, torch.dtype)), None)),
    "type_as": lambda a, k: _cast(a[0]),
}

_ONNX_FUNCTIONS = {torch.abs: "abs", torch.exp: "exp", torch.log: "log", torch.tanh: "tanh"}


def _onnx_module_formula(mod: nn.Module, a: list[Any]) -> Formula:
    """The formula of an onnx2torch module applied to the argument formulas ``a``."""
    name = type(mod).__name__
    if name == "OnnxErf":
        return _unary("erf")(a[0])
    if name == "OnnxFunction":
        f = _ONNX_FUNCTIONS.get(mod.function)
        if f is None:
            raise Untranslatable()
        return _unary(f)(a[0])
    if name == "OnnxBinaryMathOperation":
        fn = mod.math_op_function
        kind = {torch.add: "add", torch.sub: "sub", torch.mul: "mul"}.get(fn)
        if kind is None and getattr(fn, "__name__", "").endswith("div"):
            kind = "div"
        if kind is None:
            raise Untranslatable()
        return _arith(kind, a[0], a[1])
    if name == "OnnxNeg":
        return fm.neg(_as_poly(a[0]))
    if name == "OnnxPow":
        return _pow(a[0], a[1])
    if name == "OnnxSqrt":
        return _unary("sqrt")(a[0])
    if name == "OnnxReciprocal":
        return fm.recip(_as_poly(a[0]))
    if name == "OnnxCompare":
        op = {torch.eq: "==", torch.less: "<", torch.less_equal: "<=", torch.greater: ">",
              torch.greater_equal: ">="}.get(mod.compare_function)
        if op is None:
            raise Untranslatable()
        return _cmp(op)(a[0], a[1])
    if name == "OnnxWhere":
        return _where(a[0], a[1], a[2])
    if name == "OnnxClip":
        return _clamp(a[0], mod.min_val, mod.max_val)
    if name == "OnnxCast":
        return _cast(a[0], mod.torch_dtype)
    if name == "OnnxHardSigmoid":
        return _clamp01(fm.add(fm.scale(_as_poly(a[0]), _num(mod.alpha)), fm.const(_num(mod.beta))))
    if name == "OnnxMinMax":
        fn = {torch.amin: fm.minimum, torch.amax: fm.maximum}.get(mod._operator)
        if fn is None:
            raise Untranslatable()
        return _fold(fn, list(a))
    raise Untranslatable()


def _torch_module_formula(mod: nn.Module, a: list[Any]) -> Formula:
    """The formula of a torch activation module (or Identity) applied to ``a[0]``."""
    u = _as_poly(a[0]) if a else _no()
    if isinstance(mod, nn.Identity):
        return u  # type: ignore[return-value]
    if isinstance(mod, nn.Hardtanh):  # also ReLU6
        return _clamp(u, float(mod.min_val), float(mod.max_val))
    if isinstance(mod, nn.Softplus):
        return _torch_softplus(u, _num(mod.beta), _num(mod.threshold))  # type: ignore[arg-type]
    if isinstance(mod, nn.ELU):
        return _apply("elu", u, alpha=_num(mod.alpha))  # type: ignore[arg-type]
    if isinstance(mod, nn.LeakyReLU):
        return _apply("leaky_relu", u, negative_slope=_num(mod.negative_slope))  # type: ignore[arg-type]
    if isinstance(mod, nn.GELU):
        return _gelu(u, mod.approximate)  # type: ignore[arg-type]
    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Mish: "mish",
              nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid"}
    for cls, key in simple.items():
        if type(mod) is cls:
            return _apply(key, u)  # type: ignore[arg-type]
    raise Untranslatable()


def _module_formula(mod: nn.Module, a: list[Any]) -> Formula:
    if type(mod).__module__.startswith("onnx2torch"):
        return _onnx_module_formula(mod, a)
    return _torch_module_formula(mod, a)


def read(mod: nn.Module | None, node: fx.Node, args: tuple, kwargs: dict, fmap: dict[int, Formula]) -> Formula:
    """The formula of ``node`` (calling ``mod`` when it is a module call) given the formulas of
    its symbolic arguments (``fmap``: id of each :class:`Sym` → its formula)."""
    a = list(_resolve(list(args), fmap))
    k = {key: _resolve(v, fmap) for key, v in kwargs.items()}
    if mod is not None:
        if k:
            raise Untranslatable()
        return _module_formula(mod, a)
    if node.op == "call_function":
        handler = _FUNCTIONS.get(node.target)
    else:
        handler = _METHODS.get(str(node.target))
    if handler is None:
        raise Untranslatable()
    try:
        return handler(a, k)
    except (IndexError, TypeError):
        raise Untranslatable() from None


def reads_correctly(value: Formula, base: torch.Tensor | None, out: torch.Tensor) -> bool:
    """The formula reproduces the op's output on the example input (a check of the reading)."""
    if base is None or base.shape != out.shape:
        return True
    with torch.no_grad():
        xb = base.detach().to(torch.float64)
        if isinstance(value, Cond):
            if out.dtype != torch.bool:
                return False
            truth, lhs = fm.evaluate_cond(value, xb)
            clear = lhs.abs() > 1e-5 * (1 + lhs.abs().max())
            return bool((truth == out)[clear].all())
        if out.dtype == torch.bool:
            return False
        y, o = fm.evaluate(value, xb), out.detach().to(torch.float64)
        finite = torch.isfinite(o)
        return bool(((y - o).abs() <= 1e-4 * (1 + o.abs()))[finite].all())

