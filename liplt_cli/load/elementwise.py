"""Elementwise subgraphs read as one exact formula, then recognised by structure or bounded.

Exporters often write an activation as several elementwise ops: SiLU as ``x * sigmoid(x)``,
GELU as ``x * 0.5 * (1 + erf(x / √2))``, Mish as ``x * tanh(softplus(x))``, Softplus as
``where(βx > 20, x, softplus(βx)/β)``.  None of the pieces is linear or slope-restricted on its
own, but the composite ``φ`` is one scalar function applied to every coordinate of a single
tensor (its *base*).

While walking the fx graph, an op whose inputs are all elementwise functions of the same base
(through activations and scalar affine maps) and scalar constants gives a *pending* value: the
base plus the op's **exact formula** in it (:mod:`liplt_cli.load.formula`), built from what each
op computes — torch functions and modules (with their parameters: a Softplus module's
threshold switch is part of its formula), Tensor methods and onnx2torch's modules.  Each
formula is checked against the op's output on the example input (a check of the *reading*,
not a source of bounds).

When a pending value is consumed by anything else, :mod:`liplt_cli.load.recognise` decides
what it is: one of the supported activations (exact patterns with exact constants), or a
function with slope bounds proven from its formula, or it is refused with the node named.
Nothing is inferred from values on a grid.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from liplt_cli.graph import Affine, LinearNode, make_activation
from liplt_cli.graph.nodes import ActivationNode, SumNode
from liplt_cli.graph.slopes import Activation, derived_activation
from liplt_cli.load import formula as fm
from liplt_cli.load import recognise
from liplt_cli.load.formula import Cond, FormulaError, Poly
from liplt_cli.load.fx import Converter, Sym, Unsupported, _flatten

Formula = Poly | Cond


@dataclass
class Pending:
    """``value = formula(base)`` elementwise; ``ops`` lists the (node, op) pairs that built it."""

    base: str
    formula: Formula
    ops: list[tuple[str, str]] = field(default_factory=list)


# ops that may extend a pending value (elementwise, shape-preserving with scalar constants)
_ELEMENTWISE_FUNCTIONS = {
    torch.erf, torch.special.erf, torch.exp, torch.log, torch.log1p, torch.abs, torch.sqrt, torch.rsqrt,
    torch.reciprocal, torch.pow, operator.pow, torch.where, torch.gt, torch.lt, torch.ge, torch.le, torch.eq,
    operator.gt, operator.lt, operator.ge, operator.le, operator.eq, torch.tanh, torch.sigmoid, torch.relu, F.relu,
    F.softplus, F.silu, F.gelu, F.elu, F.leaky_relu, F.mish, F.hardtanh, F.relu6, F.hardsigmoid, F.hardswish,
    F.tanh, F.sigmoid, torch.clamp, torch.clip, operator.add, operator.sub, operator.mul, operator.truediv,
    operator.neg, torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.rsub, torch.maximum, torch.minimum,
}
_ELEMENTWISE_METHODS = {
    "exp", "log", "log1p", "abs", "sqrt", "rsqrt", "reciprocal", "pow", "tanh", "sigmoid", "relu", "add", "sub",
    "mul", "div", "neg", "clamp", "clip", "__add__", "__sub__", "__mul__", "__truediv__", "__radd__", "__rsub__",
    "__rmul__", "__rtruediv__", "__neg__", "__pow__", "__gt__", "__lt__", "__ge__", "__le__", "float", "to",
    "type_as", "erf",
}
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.ELU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Identity,
)
_ONNX_ELEMENTWISE = {
    "OnnxErf", "OnnxFunction", "OnnxBinaryMathOperation", "OnnxNeg", "OnnxPow", "OnnxSqrt", "OnnxReciprocal",
    "OnnxCompare", "OnnxWhere", "OnnxClip", "OnnxCast", "OnnxHardSigmoid", "OnnxMinMax",
}
# ops that start a pending value from ordinary symbolic inputs (not representable on their own)
_STARTERS_FUNCTIONS = {
    torch.erf, torch.special.erf, torch.exp, torch.log, torch.log1p, torch.abs, torch.sqrt, torch.rsqrt,
    torch.reciprocal, torch.pow, operator.pow, torch.where, torch.gt, torch.lt, torch.ge, torch.le, torch.eq,
    operator.gt, operator.lt, operator.ge, operator.le, operator.eq, torch.maximum, torch.minimum,
}
_STARTER_METHODS = {"exp", "log", "log1p", "abs", "sqrt", "rsqrt", "reciprocal", "pow", "erf", "__pow__",
                    "__gt__", "__lt__", "__ge__", "__le__"}
_STARTER_ONNX = {"OnnxErf", "OnnxPow", "OnnxSqrt", "OnnxReciprocal", "OnnxCompare", "OnnxWhere", "OnnxMinMax"}
_PRODUCTS = {operator.mul, torch.mul, operator.truediv, torch.div, torch.where}


def _module(cv: Converter, node: fx.Node) -> nn.Module | None:
    return cv.modules.get(str(node.target)) if node.op == "call_module" else None


def _is_elementwise(cv: Converter, node: fx.Node) -> bool:
    mod = _module(cv, node)
    if mod is not None:
        if type(mod).__module__.startswith("onnx2torch"):
            return type(mod).__name__ in _ONNX_ELEMENTWISE
        return isinstance(mod, _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return str(node.target) in _ELEMENTWISE_METHODS


def _is_starter(cv: Converter, node: fx.Node, n_syms: int) -> bool:
    mod = _module(cv, node)
    if mod is not None:
        name = type(mod).__name__
        if name == "OnnxFunction":
            return mod.function is not torch.tanh
        if name == "OnnxBinaryMathOperation":
            return n_syms >= 2 and mod.math_op_function is not torch.add and mod.math_op_function is not torch.sub
        return name in _STARTER_ONNX
    if node.op == "call_function":
        return node.target in _STARTERS_FUNCTIONS or (n_syms >= 2 and node.target in _PRODUCTS)
    target = str(node.target)
    return target in _STARTER_METHODS or (n_syms >= 2 and target in {"mul", "div", "__mul__", "__truediv__"})


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
        raise _Untranslatable()
    smooth = fm.scale(fm.unary("softplus", fm.scale(u, beta)), 1 / fm.frac(beta))
    return fm.where(fm.compare(fm.scale(u, beta), fm.const(threshold), ">"), u, smooth)


def _gelu(u: Poly, approximate: str) -> Poly:
    f = activation_formula("gelu" if approximate == "none" else "gelu_tanh", {})
    if approximate not in ("none", "tanh") or f is None:
        raise _Untranslatable()
    return fm.substitute(f, u)


def _apply(key: str, u: Poly, **params: float) -> Poly:
    f = activation_formula(key, params)
    assert f is not None
    return fm.substitute(f, u)


# ---------------------------------------------------------------------- reading one op
class _Untranslatable(Exception):
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
    raise _Untranslatable()


def _as_cond(v: Any) -> Cond | bool:
    if isinstance(v, (Cond, bool)):
        return v
    raise _Untranslatable()


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Untranslatable()
    return float(v)


def _opt_num(v: Any) -> float | None:
    return None if v is None else _num(v)


def _resolve(obj: Any, fmap: dict[int, Formula]) -> Any:
    if isinstance(obj, Sym):
        return fmap[id(obj)]
    if isinstance(obj, torch.Tensor):
        if obj.numel() != 1:
            raise _Untranslatable()
        if obj.dtype == torch.bool:
            return bool(obj.reshape(()))
        if obj.is_floating_point() or not obj.is_complex():
            return float(obj.reshape(()))
        raise _Untranslatable()
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
        raise _Untranslatable()
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
        raise _Untranslatable()
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
    raise _Untranslatable()


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


def _module_formula(mod: nn.Module, a: list[Any]) -> Formula:
    name = type(mod).__name__
    if type(mod).__module__.startswith("onnx2torch"):
        if name == "OnnxErf":
            return _unary("erf")(a[0])
        if name == "OnnxFunction":
            f = _ONNX_FUNCTIONS.get(mod.function)
            if f is None:
                raise _Untranslatable()
            return _unary(f)(a[0])
        if name == "OnnxBinaryMathOperation":
            fn = mod.math_op_function
            kind = {torch.add: "add", torch.sub: "sub", torch.mul: "mul"}.get(fn)
            if kind is None and getattr(fn, "__name__", "").endswith("div"):
                kind = "div"
            if kind is None:
                raise _Untranslatable()
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
                raise _Untranslatable()
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
                raise _Untranslatable()
            return _fold(fn, list(a))
        raise _Untranslatable()
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
    raise _Untranslatable()


def _read(cv: Converter, node: fx.Node, args: tuple, kwargs: dict, fmap: dict[int, Formula]) -> Formula:
    """The formula of ``node`` given the formulas of its symbolic arguments."""
    a = list(_resolve(list(args), fmap))
    k = {key: _resolve(v, fmap) for key, v in kwargs.items()}
    mod = _module(cv, node)
    if mod is not None:
        if k:
            raise _Untranslatable()
        return _module_formula(mod, a)
    if node.op == "call_function":
        handler = _FUNCTIONS.get(node.target)
    else:
        handler = _METHODS.get(str(node.target))
    if handler is None:
        raise _Untranslatable()
    try:
        return handler(a, k)
    except (IndexError, TypeError):
        raise _Untranslatable() from None


def _reads_correctly(value: Formula, base: torch.Tensor | None, out: torch.Tensor) -> bool:
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


# ---------------------------------------------------------------------- pending values
def _scalar_step(node: Any) -> Poly | None:
    """The formula a node applies to its single input, if it is elementwise and uniform."""
    if isinstance(node, ActivationNode):
        return activation_formula(node.activation.key, dict(node.activation.params))
    if isinstance(node, LinearNode) and isinstance(node.op, Affine):
        scale, shift = node.op.scale, node.op.shift
        if scale.numel() == 1 and (shift is None or shift.numel() == 1):
            s = float(scale.detach().reshape(()))
            b = 0.0 if shift is None else float(shift.detach().reshape(()))
            return fm.add(fm.scale(_X, s), fm.const(b))
    return None


def _compose(f: Formula, step: Poly) -> Formula:
    """``f(step(x))``."""
    if isinstance(f, Cond):
        c = fm.make_cond(fm.substitute(f.lhs, step), f.op)
        if not isinstance(c, Cond):
            raise FormulaError("the condition does not depend on the input")
        return c
    return fm.substitute(f, step)


def _node_chain(cv: Converter, name: str) -> list[tuple[str, Formula]]:
    """``[(node, f)]`` with ``value(name) = f(value(node))``, nearest first: back through
    scalar affine maps and activations, and through a sum of elementwise functions of one node."""
    cache: dict[str, list[tuple[str, Formula]]] = cv.__dict__.setdefault("_elementwise_chains", {})
    if name in cache:
        return cache[name]
    chain: list[tuple[str, Formula]] = [(name, _X)]
    node = cv.by_name.get(name)
    step = _scalar_step(node)
    try:
        if step is not None:
            # value(name) = step(value(input)) and value(input) = f(value(b))
            chain += [(b, fm.substitute(step, f)) for b, f in _node_chain(cv, node.inputs[0])[1:] if isinstance(f, Poly)]
            chain.insert(1, (node.inputs[0], step))
        elif isinstance(node, SumNode):
            parts = [dict(_node_chain(cv, i)) for i in node.inputs]
            for b, _ in _node_chain(cv, node.inputs[0]):
                if all(b in p and isinstance(p[b], Poly) for p in parts):
                    total = fm.ZERO
                    for k, p in enumerate(parts):
                        total = fm.add(total, fm.scale(p[b], node.coefficient(k)))  # type: ignore[arg-type]
                    chain.append((b, total))
    except FormulaError:
        chain = chain[:1]
    cache[name] = chain
    return chain


def _ancestors(cv: Converter, s: Sym) -> list[tuple[str, Formula]]:
    """``[(node, f)]`` with ``s = f(node)`` elementwise, nearest node first."""
    pending: Pending | None = s.pending
    if pending is None:
        return _node_chain(cv, s.name)
    chain: list[tuple[str, Formula]] = [(pending.base, pending.formula)]
    for b, step in _node_chain(cv, pending.base)[1:]:
        if not isinstance(step, Poly):
            break
        try:
            chain.append((b, _compose(pending.formula, step)))
        except FormulaError:
            break
    return chain


def extend(cv: Converter, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> Sym | None:
    """A pending value for ``node`` when it is elementwise in one base (see module docstring)."""
    if not isinstance(out, torch.Tensor) or not (out.is_floating_point() or out.dtype == torch.bool):
        return None
    values = _flatten([args, kwargs])
    syms = [v for v in values if isinstance(v, Sym)]
    if any(tuple(s.value.shape) != tuple(out.shape) for s in syms):
        return None
    if any(isinstance(v, torch.Tensor) and v.numel() > 1 for v in values if not isinstance(v, Sym)):
        return None
    pending = [s for s in syms if s.pending is not None]
    if not _is_elementwise(cv, node):
        return None
    if not pending and not _is_starter(cv, node, len(syms)):
        return None
    chains = [_ancestors(cv, s) for s in syms]
    names = [dict(c) for c in chains]
    base = next((n for n, _ in chains[0] if all(n in other for other in names[1:])), None)
    if base is None:
        return None
    fmap = {id(s): names[i][base] for i, s in enumerate(syms)}
    label = str(node.target) if node.op == "call_module" and str(node.target) in cv.onnx_ops else node.name
    try:
        value = _read(cv, node, args, kwargs, fmap)
    except _Untranslatable:
        return None
    except FormulaError as exc:
        raise Unsupported(cv.describe(node), f"cannot be read as one elementwise formula ({exc})") from None
    base_value = next((s.value for s in syms if s.name == base), cv.values.get(base))
    if not _reads_correctly(value, base_value, out):
        raise Unsupported(cv.describe(node), "its elementwise formula could not be read exactly; please report this model")
    ops: list[tuple[str, str]] = []
    for s in pending:
        ops += [o for o in s.pending.ops if o not in ops]
    ops.append((label, cv.describe(node)))
    result = Sym(f"<elementwise {node.name}>", out, node.name)
    result.pending = Pending(base, value, ops)
    return result


def _recognise(cv: Converter, chain: list[tuple[str, Formula]]) -> tuple[str, Poly, Activation | None, str | None]:
    """The base and activation for a chain (see module docstring); ``None`` plus why if refused."""
    usable = [(n, f) for n, f in chain if n in cv.values and isinstance(f, Poly)]
    if not usable:
        if chain and isinstance(chain[0][1], Cond):
            return chain[0][0], fm.ZERO, None, "a comparison is used as a number by a non-elementwise operation"
        return chain[0][0], fm.ZERO, None, "it reads the output of an unsupported node"
    for name, f in usable:
        m = recognise.match(f)
        if m is None:
            continue
        key, params = m
        try:
            act = make_activation(key, **params)
        except ValueError:
            continue
        try:  # cover the formula's own constants (e.g. a float32-rounded 1/6) where provable
            alpha, beta = recognise.derive(f)
        except recognise.Refusal:
            return name, f, act, None
        if alpha < act.alpha or beta > act.beta:
            act = replace(act, alpha=min(alpha, act.alpha), beta=max(beta, act.beta))
        return name, f, act, None
    first: str | None = None
    for name, f in usable:
        try:
            alpha, beta = recognise.derive(f)
        except recognise.Refusal as r:
            first = first or str(r)
            continue
        text = f.text(60)
        return name, f, derived_activation(f"Elementwise[{text}]", alpha, beta, lambda t, f=f: fm.evaluate(f, t)), None
    return usable[0][0], usable[0][1], None, first


def materialize(cv: Converter, s: Sym) -> Sym:
    """Turn a pending value into one activation node (or report its ops as unsupported)."""
    pending: Pending = s.pending
    cached = cv.materialized.get(s.fx_name or s.name)
    if cached is not None:
        return cached
    chain = _ancestors(cv, s)
    base_name, f, act, why = _recognise(cv, chain)
    ops = ", ".join(op for _, op in pending.ops)
    if act is None:
        # later readers of this value get a stand-in, so the problem is reported once
        cv.materialized[s.fx_name or s.name] = Sym(f"<unsupported {s.fx_name}>", s.value, None)
        raise Unsupported(
            ops, f"an elementwise function that is not linear and matches no supported activation; {why}",
            node=pending.ops[0][0],
        )
    base = Sym(base_name, cv.values[base_name], None)
    first = pending.ops[0][0]
    if act.key == "identity":
        result = Sym(base.name, s.value, s.fx_name)
    else:
        if act.key == "derived":
            source = f"{ops} ({first}…): derived slopes of {f.text(120)}"
            cv.notes.append(
                f"elementwise function {f.text(80)} at node '{first}' matches no known activation; its slopes "
                f"[{act.alpha:.6g}, {act.beta:.6g}] were proven from its formula"
            )
        else:
            source = f"{ops} ({first}…) recognised as {act.describe()}"
        result = cv.activation(base, act, s.fx_name or "activation", source, s.value, s.fx_name)
        if s.fx_name is not None:
            cv.fx_of.setdefault(result.name, s.fx_name)
    cv.values[result.name] = s.value
    cv.materialized[s.fx_name or s.name] = result
    return result


def materialize_all(cv: Converter, obj: Any) -> Any:
    if isinstance(obj, Sym):
        return materialize(cv, obj) if obj.pending is not None else obj
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(materialize_all(cv, o) for o in obj)
    if isinstance(obj, dict):
        return {k: materialize_all(cv, v) for k, v in obj.items()}
    return obj


__all__ = ["Pending", "activation_formula", "extend", "materialize", "materialize_all"]
