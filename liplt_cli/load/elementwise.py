"""Elementwise subgraphs read as one exact formula, then recognised by structure or bounded.

Exporters often write an activation as several elementwise ops: SiLU as ``x * sigmoid(x)``,
GELU as ``x * 0.5 * (1 + erf(x / √2))``, Mish as ``x * tanh(softplus(x))``, Softplus as
``where(βx > 20, x, softplus(βx)/β)``.  None of the pieces is linear or slope-restricted on its
own, but the composite ``φ`` is one scalar function applied to every coordinate of a single
tensor (its *base*).

While walking the fx graph, an op whose inputs are all elementwise functions of the same base
(through activations and scalar affine maps) and scalar constants gives a *pending* value: the
base plus the op's **exact formula** in it (:mod:`liplt_cli.load.formula`), built from what each
op computes (:mod:`liplt_cli.load.op_formulas`).  Each formula is checked against the op's
output on the example input (a check of the *reading*, not a source of bounds).

When a pending value is consumed by anything else, :mod:`liplt_cli.load.recognise` decides
what it is: one of the supported activations (exact patterns with exact constants), or a
function with slope bounds proven from its formula, or it is refused with the node named.
Nothing is inferred from values on a grid.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from liplt_cli.graph import Affine, LinearNode, make_activation
from liplt_cli.graph.nodes import ActivationNode, SumNode
from liplt_cli.graph.slopes import Activation, derived_activation
from liplt_cli.load import formula as fm
from liplt_cli.load import recognise
from liplt_cli.load.builder import GraphBuilder
from liplt_cli.load.formula import Cond, FormulaError, Poly
from liplt_cli.load.fxnodes import FxNodes
from liplt_cli.load.op_formulas import Formula, Untranslatable, activation_formula, read, reads_correctly
from liplt_cli.load.registry import declare_capability
from liplt_cli.load.values import Sym, Unsupported, flatten

__all__ = ["ElementwiseReader", "Pending", "extend", "materialize", "materialize_all"]

declare_capability(
    "elementwise formulas that are exactly one of these activations (x*sigmoid(x), x*0.5*(1+erf(x/√2)), ...)",
    "activations",
)
declare_capability("other continuous elementwise formulas with a provable finite slope bound", "activations")

_X = fm.var()


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


def _is_elementwise(mod: nn.Module | None, node: fx.Node) -> bool:
    """Whether ``node`` (calling ``mod`` when it is a module call) may extend an elementwise chain."""
    if mod is not None:
        if type(mod).__module__.startswith("onnx2torch"):
            return type(mod).__name__ in _ONNX_ELEMENTWISE
        return isinstance(mod, _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return str(node.target) in _ELEMENTWISE_METHODS


def _is_starter(mod: nn.Module | None, node: fx.Node, n_syms: int) -> bool:
    """Whether ``node`` with ``n_syms`` input-dependent arguments starts a chain."""
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


class ElementwiseReader:
    """The reader's state during one walk: the builder it emits activations with, the fx nodes
    it reads, and its caches (each node's chain, and what each pending value became)."""

    def __init__(self, builder: GraphBuilder, fxn: FxNodes):
        self.builder = builder
        self.fxn = fxn
        self.chains: dict[str, list[tuple[str, Formula]]] = {}
        self.materialized: dict[str, Sym] = {}


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


def _node_chain(ew: ElementwiseReader, name: str) -> list[tuple[str, Formula]]:
    """``[(node, f)]`` with ``value(name) = f(value(node))``, nearest first: back through
    scalar affine maps and activations, and through a sum of elementwise functions of one node."""
    cache = ew.chains
    if name in cache:
        return cache[name]
    chain: list[tuple[str, Formula]] = [(name, _X)]
    node = ew.builder.node(name)
    step = _scalar_step(node)
    try:
        if step is not None:
            # value(name) = step(value(input)) and value(input) = f(value(b))
            chain += [(b, fm.substitute(step, f)) for b, f in _node_chain(ew, node.inputs[0])[1:] if isinstance(f, Poly)]
            chain.insert(1, (node.inputs[0], step))
        elif isinstance(node, SumNode):
            parts = [dict(_node_chain(ew, i)) for i in node.inputs]
            for b, _ in _node_chain(ew, node.inputs[0]):
                if all(b in p and isinstance(p[b], Poly) for p in parts):
                    total = fm.ZERO
                    for k, p in enumerate(parts):
                        total = fm.add(total, fm.scale(p[b], node.coefficient(k)))  # type: ignore[arg-type]
                    chain.append((b, total))
    except FormulaError:
        chain = chain[:1]
    cache[name] = chain
    return chain


def _ancestors(ew: ElementwiseReader, s: Sym) -> list[tuple[str, Formula]]:
    """``[(node, f)]`` with ``s = f(node)`` elementwise, nearest node first."""
    pending: Pending | None = s.pending
    if pending is None:
        return _node_chain(ew, s.name)
    chain: list[tuple[str, Formula]] = [(pending.base, pending.formula)]
    for b, step in _node_chain(ew, pending.base)[1:]:
        if not isinstance(step, Poly):
            break
        try:
            chain.append((b, _compose(pending.formula, step)))
        except FormulaError:
            break
    return chain


def extend(ew: ElementwiseReader, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> Sym | None:
    """A pending value for ``node`` when it is elementwise in one base (see module docstring)."""
    if not isinstance(out, torch.Tensor) or not (out.is_floating_point() or out.dtype == torch.bool):
        return None
    values = flatten([args, kwargs])
    syms = [v for v in values if isinstance(v, Sym)]
    if any(tuple(s.value.shape) != tuple(out.shape) for s in syms):
        return None
    if any(isinstance(v, torch.Tensor) and v.numel() > 1 for v in values if not isinstance(v, Sym)):
        return None
    pending = [s for s in syms if s.pending is not None]
    mod = ew.fxn.module(node)
    if not _is_elementwise(mod, node):
        return None
    if not pending and not _is_starter(mod, node, len(syms)):
        return None
    chains = [_ancestors(ew, s) for s in syms]
    names = [dict(c) for c in chains]
    base = next((n for n, _ in chains[0] if all(n in other for other in names[1:])), None)
    if base is None:
        return None
    fmap = {id(s): names[i][base] for i, s in enumerate(syms)}
    label = ew.fxn.label(node)
    try:
        value = read(mod, node, args, kwargs, fmap)
    except Untranslatable:
        return None
    except FormulaError as exc:
        raise Unsupported(ew.fxn.describe(node), f"cannot be read as one elementwise formula ({exc})") from None
    base_value = next((s.value for s in syms if s.name == base), ew.builder.value(base))
    if not reads_correctly(value, base_value, out):
        raise Unsupported(ew.fxn.describe(node), "its elementwise formula could not be read exactly; please report this model")
    ops: list[tuple[str, str]] = []
    for s in pending:
        ops += [o for o in s.pending.ops if o not in ops]
    ops.append((label, ew.fxn.describe(node)))
    result = Sym(f"<elementwise {node.name}>", out, node.name)
    result.pending = Pending(base, value, ops)
    return result


def _recognise(ew: ElementwiseReader, chain: list[tuple[str, Formula]]) -> tuple[str, Poly, Activation | None, str | None]:
    """The base and activation for a chain (see module docstring); ``None`` plus why if refused."""
    usable = [(n, f) for n, f in chain if ew.builder.has_value(n) and isinstance(f, Poly)]
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


def materialize(ew: ElementwiseReader, s: Sym) -> Sym:
    """Turn a pending value into one activation node (or report its ops as unsupported)."""
    pending: Pending = s.pending
    cached = ew.materialized.get(s.fx_name or s.name)
    if cached is not None:
        return cached
    chain = _ancestors(ew, s)
    base_name, f, act, why = _recognise(ew, chain)
    ops = ", ".join(op for _, op in pending.ops)
    if act is None:
        # later readers of this value get a stand-in, so the problem is reported once
        ew.materialized[s.fx_name or s.name] = Sym(f"<unsupported {s.fx_name}>", s.value, None)
        raise Unsupported(
            ops, f"an elementwise function that is not linear and matches no supported activation; {why}",
            node=pending.ops[0][0],
        )
    base = Sym(base_name, ew.builder.value(base_name), None)
    first = pending.ops[0][0]
    if act.key == "identity":
        result = Sym(base.name, s.value, s.fx_name)
        ew.builder.record(Sym(base.name, s.value, None))
    else:
        if act.key == "derived":
            source = f"{ops} ({first}…): derived slopes of {f.text(120)}"
            ew.builder.note(
                f"elementwise function {f.text(80)} at node '{first}' matches no known activation; its slopes "
                f"[{act.alpha:.6g}, {act.beta:.6g}] were proven from its formula"
            )
        else:
            source = f"{ops} ({first}…) recognised as {act.describe()}"
        result = ew.builder.activation(base, act, s.fx_name or "activation", source, s.value, s.fx_name)
        ew.builder.record(result)
    ew.materialized[s.fx_name or s.name] = result
    return result


def materialize_all(ew: ElementwiseReader, obj: Any) -> Any:
    if isinstance(obj, Sym):
        return materialize(ew, obj) if obj.pending is not None else obj
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(materialize_all(ew, o) for o in obj)
    if isinstance(obj, dict):
        return {k: materialize_all(ew, v) for k, v in obj.items()}
    return obj
