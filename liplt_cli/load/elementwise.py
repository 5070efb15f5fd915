"""Elementwise subgraphs recognised as one activation.

Exporters often write an activation as several elementwise ops: SiLU as ``x * sigmoid(x)``,
GELU as ``x * 0.5 * (1 + erf(x / √2))``, Mish as ``x * tanh(softplus(x))``, Softplus as
``where(x > 20, x, log1p(exp(x)))``.  None of the pieces is linear or slope-restricted on its
own, but the composite ``φ`` is one scalar function applied to every coordinate of a single
tensor (its *base*).

While walking the fx graph, an op whose inputs are all elementwise functions of the same base
(through activations and scalar affine maps) and scalar constants gives a *pending* value: the
base plus a Python function ``φ``.  When a pending value is consumed by anything else, ``φ`` is
evaluated on a dense grid over [-12, 12] and compared with every supported activation (SiLU,
GELU, Mish, Softplus with a fitted β, ...); a match within 2·10⁻⁵ becomes one
:class:`ActivationNode` with that activation's proven slope bounds, otherwise the ops are
reported as unsupported.  The whole model is then checked end to end against the source.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from liplt_cli.graph import Affine, LinearNode, make_activation
from liplt_cli.graph.nodes import ActivationNode
from liplt_cli.load.fx import Converter, Sym, Unsupported, _execute, _flatten

_GRID = (-12.0, 12.0, 4801)
_TOLERANCE = 2e-5


@dataclass
class Pending:
    """``value = fn(base)`` elementwise; ``ops`` lists the (node, op) pairs that built ``fn``."""

    base: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    ops: list[tuple[str, str]] = field(default_factory=list)


# ops that may extend a pending value (elementwise, shape-preserving with scalar constants)
_ELEMENTWISE_FUNCTIONS = {
    torch.erf, torch.special.erf, torch.exp, torch.log, torch.log1p, torch.abs, torch.sqrt, torch.rsqrt,
    torch.reciprocal, torch.pow, operator.pow, torch.where, torch.gt, torch.lt, torch.ge, torch.le,
    operator.gt, operator.lt, operator.ge, operator.le, torch.tanh, torch.sigmoid, torch.relu, F.relu,
    F.softplus, F.silu, F.gelu, F.elu, F.leaky_relu, F.mish, F.hardtanh, F.tanh, F.sigmoid, torch.clamp,
    torch.clip, operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, torch.add, torch.sub,
    torch.mul, torch.div, torch.neg, torch.rsub, torch.maximum, torch.minimum,
}
_ELEMENTWISE_METHODS = {
    "exp", "log", "log1p", "abs", "sqrt", "rsqrt", "reciprocal", "pow", "tanh", "sigmoid", "relu", "add", "sub",
    "mul", "div", "neg", "clamp", "clip", "__add__", "__sub__", "__mul__", "__truediv__", "__radd__", "__rsub__",
    "__rmul__", "__neg__", "float", "to", "type_as", "erf",
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
    torch.reciprocal, torch.pow, operator.pow, torch.where, torch.gt, torch.lt, torch.ge, torch.le,
    operator.gt, operator.lt, operator.ge, operator.le, torch.maximum, torch.minimum,
}
_STARTER_METHODS = {"exp", "log", "log1p", "abs", "sqrt", "rsqrt", "reciprocal", "pow", "erf"}
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


def _scalar_step(node: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The scalar function a node applies to its single input, if it is elementwise and uniform."""
    if isinstance(node, ActivationNode):
        return node.activation.fn
    if isinstance(node, LinearNode) and isinstance(node.op, Affine):
        scale, shift = node.op.scale, node.op.shift
        if scale.numel() == 1 and (shift is None or shift.numel() == 1):
            s = float(scale.detach().reshape(()))
            b = 0.0 if shift is None else float(shift.detach().reshape(()))
            return lambda t, s=s, b=b: t * s + b
    return None


def _ancestors(cv: Converter, s: Sym) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """``[(node, f)]`` with ``s = f(node)`` elementwise, nearest node first."""
    pending: Pending | None = s.pending  # type: ignore[attr-defined]
    name, fn = (pending.base, pending.fn) if pending else (s.name, lambda t: t)
    chain = [(name, fn)]
    while True:
        node = cv.by_name.get(name)
        step = _scalar_step(node)
        if step is None:
            return chain
        fn = (lambda f, g: (lambda t: f(g(t))))(fn, step)
        name = node.inputs[0]
        chain.append((name, fn))


def _substitute(obj: Any, fns: dict[int, Callable], t: torch.Tensor) -> Any:
    if isinstance(obj, Sym):
        return fns[id(obj)](t)
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_substitute(o, fns, t) for o in obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, fns, t) for k, v in obj.items()}
    return obj


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
    pending = [s for s in syms if getattr(s, "pending", None) is not None]
    if not _is_elementwise(cv, node):
        return None
    if not pending and not _is_starter(cv, node, len(syms)):
        return None
    chains = [_ancestors(cv, s) for s in syms]
    names = [dict(c) for c in chains]
    base = next((n for n, _ in chains[0] if all(n in other for other in names[1:])), None)
    if base is None:
        return None
    fns = {id(s): names[i][base] for i, s in enumerate(syms)}
    ops: list[tuple[str, str]] = []
    for s in pending:
        ops += [o for o in s.pending.ops if o not in ops]  # type: ignore[union-attr]
    label = str(node.target) if node.op == "call_module" and str(node.target) in cv.onnx_ops else node.name
    ops.append((label, cv.describe(node)))
    gm, modules = cv.gm, cv.modules

    def fn(t: torch.Tensor) -> torch.Tensor:
        return _execute(gm, modules, node, _substitute(args, fns, t), _substitute(kwargs, fns, t))

    result = Sym(f"<elementwise {node.name}>", out, node.name)
    result.pending = Pending(base, fn, ops)  # type: ignore[attr-defined]
    return result


def _candidates(y0: float, y_neg: float) -> list[tuple[str, dict[str, float]]]:
    cands: list[tuple[str, dict[str, float]]] = [
        ("identity", {}), ("relu", {}), ("tanh", {}), ("sigmoid", {}), ("softplus", {}), ("elu", {}), ("silu", {}),
        ("gelu", {}), ("mish", {}), ("hardswish", {}), ("hardsigmoid", {}),
    ]
    if y0 > 0:  # softplus_β(0) = ln 2 / β
        cands.append(("softplus", {"beta": math.log(2.0) / y0}))
    if y_neg < 0 and y0 == 0:  # leaky ReLU: φ(-1) = -s
        cands.append(("leaky_relu", {"negative_slope": -y_neg}))
    return cands


def identify(fn: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype, device: torch.device):
    """The supported activation equal to ``fn`` on a dense grid (or ``None``)."""
    t = torch.linspace(*_GRID, dtype=dtype, device=device)
    try:
        with torch.no_grad():
            y = fn(t)
    except Exception:
        return None
    if not isinstance(y, torch.Tensor) or y.numel() != t.numel() or not y.is_floating_point():
        return None
    y = y.reshape(-1).double().cpu()
    if not torch.isfinite(y).all():
        return None
    td = t.double().cpu()
    y0 = float(y[td.numel() // 2])
    y_neg = float(y[int(torch.argmin((td + 1).abs()))])
    scale = max(1.0, float(y.abs().max()))
    best = None
    for key, params in _candidates(y0, y_neg):
        try:
            act = make_activation(key, **params)
        except ValueError:
            continue
        err = float((act(td) - y).abs().max())
        if err <= _TOLERANCE * scale and (best is None or err < best[0]):
            best = (err, act)
    return None if best is None else best[1]


def materialize(cv: Converter, s: Sym) -> Sym:
    """Turn a pending value into one activation node (or report its ops as unsupported)."""
    pending: Pending = s.pending  # type: ignore[attr-defined]
    cached = cv.materialized.get(s.fx_name or s.name)
    if cached is not None:
        return cached
    # the nearest base first, then further back through scalar affine maps and activations
    # (exp(2x) must be read as a function of x, silu(relu(x)) as a function of relu(x))
    act = None
    for base_name, fn in _ancestors(cv, s):
        act = identify(fn, cv.dtype, cv.device)
        if act is not None:
            break
    ops = ", ".join(op for _, op in pending.ops)
    if act is None:
        # later readers of this value get a stand-in, so the problem is reported once
        cv.materialized[s.fx_name or s.name] = Sym(f"<unsupported {s.fx_name}>", s.value, None)
        raise Unsupported(
            ops, "an elementwise function that is not linear and matches no supported activation",
            node=pending.ops[0][0],
        )
    base = Sym(base_name, cv.values[base_name], None)
    if act.key == "identity":
        result = Sym(base.name, s.value, s.fx_name)
    else:
        source = f"{ops} ({' '.join(n for n, _ in pending.ops[:1])}…) recognised as {act.name}"
        result = cv.activation(base, act, s.fx_name or "activation", source, s.value, s.fx_name)
    cv.values[result.name] = s.value
    cv.materialized[s.fx_name or s.name] = result
    return result


def materialize_all(cv: Converter, obj: Any) -> Any:
    if isinstance(obj, Sym):
        return materialize(cv, obj) if getattr(obj, "pending", None) is not None else obj
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(materialize_all(cv, o) for o in obj)
    if isinstance(obj, dict):
        return {k: materialize_all(cv, v) for k, v in obj.items()}
    return obj


__all__ = ["Pending", "extend", "identify", "materialize", "materialize_all"]
