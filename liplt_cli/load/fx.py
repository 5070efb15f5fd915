"""PyTorch module → layer graph, through a torch.fx graph.

:func:`graph_from_module` symbolically traces a module (or takes onnx2torch's ``GraphModule``
as it is) and walks its fx nodes in order, keeping for every fx node either

* a **constant** (a tensor or Python value that does not depend on the input: parameters,
  buffers, ONNX initialisers and everything computed only from them — constant folding), or
* a **symbolic value** (:class:`Sym`): the name of the layer-graph node that produces it and an
  example value computed by the *source* op on a random input (so shapes are always known).

Every fx node with a symbolic argument is mapped onto layer-graph nodes by a handler in
:mod:`liplt_cli.load.fx_ops`.  Unsupported nodes are collected and reported together in one
:class:`~liplt_cli.errors.UnsupportedOpError`.  Finally the layer graph is validated and checked
against the module on random inputs, on large ones and on inputs that drive pre-activations to
about ±10³ (:mod:`liplt_cli.load.check`); a difference is an error.

Weights are *shared*: a ``Conv2d``'s node stores ``module.weight`` itself, so bounds computed on
the graph are differentiable in the parameters and follow in-place optimiser updates.  Derived
tensors (BatchNorm's per-channel scale ``γ/√(σ²+ε)`` and shift ``β-μγ/√(σ²+ε)``, a Gemm with
``alpha ≠ 1``) are new tensors, computed with autograd enabled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import fx, nn

from liplt_cli.errors import GraphError, InputShapeError, LipltError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import InputNode, LayerGraph, LinearNode
from liplt_cli.graph.nodes import ActivationNode, Node

__all__ = ["graph_from_module", "Sym", "Unsupported", "Converter", "SUPPORTED_OPS"]

#: Human-readable list of what the fx loader understands (shown in unsupported-op errors).
SUPPORTED_OPS = [
    "Conv1d/2d/3d", "ConvTranspose", "Linear/Gemm", "MatMul with a constant", "BatchNorm (eval)",
    "AvgPool", "AdaptiveAvgPool (divisible)", "GlobalAveragePool", "ReduceMean over spatial axes",
    "MaxPool", "Flatten", "Reshape/view", "Squeeze/Unsqueeze", "Transpose/Permute", "Pad (zeros)",
    "Add/Sub of two tensors", "Add/Sub/Mul/Div by a constant", "Neg", "Concat", "Identity",
    "Dropout", "Cast to float", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "Softplus",
    "Hardtanh", "ReLU6", "Clip/clamp", "SiLU", "GELU (erf and tanh forms)", "Mish", "HardSigmoid", "HardSwish",
    "elementwise formulas that are exactly one of these activations (x*sigmoid(x), x*0.5*(1+erf(x/√2)), ...)",
    "other continuous elementwise formulas with a provable finite slope bound",
    "final Softmax/LogSoftmax (stripped)",
]

class Unsupported(Exception):
    """Raised by a handler: this fx node cannot be represented (message says why)."""

    def __init__(self, op: str, why: str = "", node: str | None = None):
        self.op = op
        self.why = why
        self.node = node  # the node to name in the error, when not the one being converted
        super().__init__(f"{op}{': ' + why if why else ''}")


@dataclass
class Sym:
    """An input-dependent value: produced by layer-graph node ``name``.

    ``value`` is the example value (batch first) computed by the source op; ``fx_name`` is the
    fx node whose concrete value equals this one (used by the final equality check);
    ``stripped`` is set when this is the logits under a stripped final Softmax/LogSoftmax.
    """

    name: str
    value: torch.Tensor
    fx_name: str | None = None
    stripped: str | None = None
    pending: Any = None  # an elementwise function of another node (liplt_cli.load.elementwise)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape[1:])

    @property
    def batch(self) -> int:
        return int(self.value.shape[0])


def _flatten(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [v for o in obj for v in _flatten(o)]
    if isinstance(obj, dict):
        return [v for o in obj.values() for v in _flatten(o)]
    if isinstance(obj, slice):
        return _flatten([obj.start, obj.stop, obj.step])
    return [obj]


def _concrete(obj: Any) -> Any:
    if isinstance(obj, Sym):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return type(obj)(_concrete(o) for o in obj) if not hasattr(obj, "_fields") else type(obj)(*(_concrete(o) for o in obj))
    if isinstance(obj, dict):
        return {k: _concrete(v) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(_concrete(obj.start), _concrete(obj.stop), _concrete(obj.step))
    return obj


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _execute(gm: fx.GraphModule, modules: Mapping[str, nn.Module], node: fx.Node, args: tuple, kwargs: dict) -> Any:
    if node.op == "call_module":
        return modules[node.target](*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, node.target)(*rest, **kwargs)  # type: ignore[arg-type]
    raise AssertionError(node.op)


_NAME_RE = re.compile(r"[^A-Za-z0-9_.]+")


class Converter:
    """Walks an fx graph and emits layer-graph nodes (see module docstring)."""

    def __init__(
        self,
        gm: fx.GraphModule,
        input_shape: tuple[int, ...],
        example: torch.Tensor,
        onnx_ops: Mapping[str, str] | None = None,
    ):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.input_shape = tuple(input_shape)
        self.example = example
        self.onnx_ops = dict(onnx_ops or {})
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.problems: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.dtype = example.dtype
        self.device = example.device
        self.by_name: dict[str, Node] = {}
        self.values: dict[str, torch.Tensor] = {}  # example value of each emitted node
        self.materialized: dict[str, Sym] = {}
        self.fx_of: dict[str, str] = {}  # emitted node -> the fx node whose value it equals

    # ------------------------------------------------------------------ node emission
    def unique(self, base: str) -> str:
        base = _NAME_RE.sub("_", base).strip("_") or "node"
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def emit(self, node: Node) -> None:
        self.nodes.append(node)
        self.by_name[node.name] = node

    def linear(self, src: Sym, op: Any, base: str, source: str, value: torch.Tensor | None = None, fx_name: str | None = None) -> Sym:
        """Append a :class:`LinearNode` reading ``src``; returns its symbolic value."""
        if tuple(op.in_shape) != src.shape:
            raise GraphError(f"internal: {base} expects input {list(op.in_shape)}, got {list(src.shape)}")
        name = self.unique(base)
        self.emit(LinearNode(name, (src.name,), op, source=source))
        if value is None:
            with torch.no_grad():
                value = op.forward(src.value)
        if tuple(value.shape[1:]) != tuple(op.out_shape):
            raise Unsupported(source, f"output shape {list(value.shape[1:])} differs from the layer's {list(op.out_shape)}")
        self.values[name] = value
        return Sym(name, value, fx_name)

    def activation(self, src: Sym, act: Any, base: str, source: str, value: torch.Tensor, fx_name: str | None) -> Sym:
        name = self.unique(base)
        self.emit(ActivationNode(name, (src.name,), src.shape, act, source=source))
        self.values[name] = value
        return Sym(name, value, fx_name)

    def const(self, value: Any) -> torch.Tensor:
        """A constant as a floating tensor of the model's dtype (a same-dtype tensor is kept as is)."""
        if isinstance(value, torch.Tensor):
            if value.dtype == self.dtype and value.device == self.device:
                return value
            return value.to(dtype=self.dtype, device=self.device)
        return torch.as_tensor(value, dtype=self.dtype, device=self.device)

    def describe(self, node: fx.Node) -> str:
        """The op of an fx node in user terms (ONNX op type when it came from ONNX)."""
        if node.op == "call_module":
            target = str(node.target)
            if target in self.onnx_ops:
                return self.onnx_ops[target]
            return type(self.modules[target]).__name__
        if node.op == "call_function":
            fn = node.target
            return getattr(fn, "__name__", str(fn))
        if node.op == "call_method":
            return f"Tensor.{node.target}"
        return node.op

    def source(self, node: fx.Node) -> str:
        op = self.describe(node)
        if node.op == "call_module":
            return f"{op} '{node.target}'"
        return f"{op} '{node.name}'"

    # ------------------------------------------------------------------ the walk
    def run(self) -> Sym:
        from liplt_cli.load import elementwise, fx_ops

        env: dict[fx.Node, Any] = {}
        output: Any = None
        placeholders = 0
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    if node.args:  # has a default value
                        env[node] = node.args[0]
                        continue
                    raise ModelLoadError(f"the model has more than one input ('{node.name}'); only one input is supported")
                name = self.unique("input")
                self.emit(InputNode(name, self.input_shape))
                self.values[name] = self.example
                env[node] = Sym(name, self.example, node.name)
            elif node.op == "get_attr":
                env[node] = _fetch_attr(self.gm, str(node.target))
            elif node.op in ("call_module", "call_function", "call_method"):
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                syms = [v for v in _flatten([args, kwargs]) if isinstance(v, Sym)]
                if not syms:
                    try:
                        env[node] = _execute(self.gm, self.modules, node, args, kwargs)
                    except Exception as exc:  # a constant subgraph that cannot run
                        raise ModelLoadError(f"constant node '{node.name}' ({self.describe(node)}) cannot be computed: {exc}") from exc
                    continue
                stripped = [s for s in syms if s.stripped]
                with torch.no_grad():
                    try:
                        out = _execute(self.gm, self.modules, node, _concrete(args), _concrete(kwargs))
                    except Exception as exc:
                        raise ModelLoadError(
                            f"node '{node.name}' ({self.describe(node)}) fails on an input of shape "
                            f"{[self.example.shape[0], *self.input_shape]}: {exc}"
                        ) from exc
                try:
                    if stripped:
                        keep = stripped[0]
                        if len(syms) == 1 and isinstance(out, torch.Tensor) and out.shape == keep.value.shape \
                                and torch.equal(out, keep.value):
                            env[node] = keep  # Identity / Dropout / Cast after the final Softmax
                            continue
                        raise Unsupported(keep.stripped or "Softmax", "a Softmax is only supported as the last layer")
                    result = elementwise.extend(self, node, args, kwargs, out)
                    if result is None:
                        try:
                            args = elementwise.materialize_all(self, args)
                            kwargs = elementwise.materialize_all(self, kwargs)
                        except Unsupported as exc:  # report it, then look for this node's own problems
                            self._problem(node, exc)
                            args = elementwise.materialize_all(self, args)
                            kwargs = elementwise.materialize_all(self, kwargs)
                        result = fx_ops.convert(self, node, args, kwargs, out)
                    env[node] = result
                    if isinstance(result, Sym) and result.pending is None and result.name in self.by_name:
                        self.values[result.name] = result.value
                        if result.fx_name is not None:
                            self.fx_of.setdefault(result.name, result.fx_name)
                except Unsupported as exc:
                    self._problem(node, exc)
                    env[node] = self._placeholder(node, out)
            elif node.op == "output":
                output = fx.node.map_arg(node.args[0], lambda n: env[n])
                try:
                    output = elementwise.materialize_all(self, output)
                except Unsupported as exc:
                    self._problem(node, exc)
        if self.problems:
            raise UnsupportedOpError(self.problems, SUPPORTED_OPS)
        values = _flatten([output])
        syms = [v for v in values if isinstance(v, Sym)]
        if len(values) != 1:
            raise ModelLoadError(f"the model has {len(values)} outputs; only a single logit tensor is supported")
        if not syms:
            raise ModelLoadError("the model's output does not depend on its input")
        return syms[0]

    def _problem(self, node: fx.Node, exc: Unsupported) -> None:
        op = exc.op if exc.op else self.describe(node)
        label = exc.node or (str(node.target) if node.op == "call_module" and str(node.target) in self.onnx_ops else node.name)
        self.problems.append((label, f"{op}{' — ' + exc.why if exc.why else ''}"))

    def _placeholder(self, node: fx.Node, out: Any) -> Any:
        """After an unsupported node: a stand-in value so the walk can report later problems too."""
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return Sym(f"<unsupported {node.name}>", out, None)
        if isinstance(out, (list, tuple)):
            return type(out)(self._placeholder(node, o) for o in out) if not hasattr(out, "_fields") else out
        return out


# ---------------------------------------------------------------------- tracing
class _LeafTracer(fx.Tracer):
    """torch.fx tracer that keeps torch.nn and onnx2torch modules as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if type(m).__module__.startswith("onnx2torch"):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.GraphModule:
    if isinstance(module, fx.GraphModule):
        return module
    try:
        tracer = _LeafTracer()
        graph = tracer.trace(module)
    except Exception as exc:
        raise ModelLoadError(
            f"{type(module).__name__} cannot be traced by torch.fx ({type(exc).__name__}: {exc}); "
            "data-dependent control flow is not supported"
        ) from exc
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _model_dtype(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.float32, torch.device("cpu")


def _pick_batch(gm: fx.GraphModule, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """A random example input; batch 2 when the model accepts it, else batch 1 (fixed-batch ONNX)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    last: Exception | None = None
    for batch in (2, 1):
        x = torch.randn((batch, *shape), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        try:
            with torch.no_grad():
                y = gm(x)
        except Exception as exc:
            last = exc
            continue
        first = _flatten([y])[0] if isinstance(y, (list, tuple, dict)) else y
        if batch == 1 or (isinstance(first, torch.Tensor) and first.dim() > 0 and first.shape[0] == batch):
            return x  # (a batch-2 run whose output has another batch size mixed the samples)
    raise InputShapeError(
        f"the model does not run on inputs of per-sample shape {list(shape)}: {type(last).__name__}: {last}"
    )


class _Recorder(fx.Interpreter):
    """Runs the fx graph and keeps the values of the nodes named in ``want``."""

    def __init__(self, gm: fx.GraphModule, want: set[str]):
        super().__init__(gm)
        self.want = want
        self.captured: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.name in self.want:
            self.captured[n.name] = result
        return result


def _fx_values(gm: fx.GraphModule, x: torch.Tensor, names: set[str]) -> dict[str, Any]:
    rec = _Recorder(gm, names)
    rec.run(x)
    return rec.captured


def _check_equal(graph: LayerGraph, unfused: LayerGraph, gm: fx.GraphModule, out_fx: str, example: torch.Tensor,
                 seed: int, fx_of: Mapping[str, str]) -> None:
    """Compare the layer graph with the module (see :mod:`liplt_cli.load.check`)."""
    from liplt_cli.load.check import check_equal, first_difference

    def reference(x: torch.Tensor) -> torch.Tensor:
        return _fx_values(gm, x, {out_fx})[out_fx]

    def locate(x: torch.Tensor, tol: float) -> str | None:
        try:
            with torch.no_grad():
                values = _fx_values(gm, x, set(fx_of.values()))
            return first_difference(unfused, values, dict(fx_of), x, tol)
        except Exception:  # locating is a courtesy; the difference itself is reported anyway
            return None

    check_equal(graph, reference, example, seed, locate)


def _prune(nodes: list[Node], output: str) -> list[Node]:
    """Drop nodes the output does not depend on (the input is always kept)."""
    needed = {output}
    for n in reversed(nodes):
        if n.name in needed:
            needed.update(n.inputs)
    return [n for i, n in enumerate(nodes) if i == 0 or n.name in needed]


def graph_from_module(
    module: nn.Module,
    input_shape: tuple[int, ...] | list[int],
    *,
    fuse: bool = False,
    check: bool = True,
    seed: int = 0,
    onnx_ops: Mapping[str, str] | None = None,
) -> LayerGraph:
    """Build the layer graph of ``module`` for per-sample input shape ``input_shape``.

    The module is traced with torch.fx (an ``fx.GraphModule``, e.g. from onnx2torch, is used as
    is) and evaluated in eval mode (its mode is restored afterwards).  The graph shares the
    module's parameter tensors.  ``fuse=True`` additionally folds constant affine maps into the
    adjacent linear layers (new tensors; used for ONNX files, never for live training modules).

    Raises :class:`UnsupportedOpError` listing every unsupported node, :class:`ModelLoadError`
    for untraceable modules or weights that depend on the input, :class:`InputShapeError` when
    the module does not run on ``input_shape``, :class:`GraphError` when the graph is invalid
    (e.g. NaN weights), and :class:`~liplt_cli.load.check.ModelMismatchError` (a GraphError and a
    ModelLoadError) when it does not reproduce the module (see :mod:`liplt_cli.load.check`).
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise InputShapeError(f"input shape must be positive integers, got {list(shape)}")
    was_training = module.training
    module.eval()
    try:
        gm = _trace(module)
        gm.eval()
        dtype, device = _model_dtype(module)
        example = _pick_batch(gm, shape, dtype, device, seed)
        conv = Converter(gm, shape, example, onnx_ops)
        try:
            out = conv.run()
        except UnsupportedOpError:
            if example.shape[0] == 1:
                raise
            # a model written for batch 1 (e.g. Reshape to [1, -1]) may mix samples at batch 2
            example = example[:1]
            conv = Converter(gm, shape, example, onnx_ops)
            out = conv.run()
        nodes = _prune(conv.nodes, out.name)
        notes = list(conv.notes)
        if out.stripped:
            notes.append(f"stripped final {out.stripped}: bounds and radii are about the logits before it")
        if len(nodes) == 1:
            raise ModelLoadError("the model is the identity on its input; there is nothing to bound")
        graph = unfused = LayerGraph(tuple(nodes), out.name, tuple(notes))
        if fuse:
            from liplt_cli.load.fuse import fuse_affine

            graph = fuse_affine(graph)
        graph.validate()
        if check and out.fx_name is not None:
            _check_equal(graph, unfused, gm, out.fx_name, example, seed, conv.fx_of)
        return graph
    except LipltError:
        raise
    finally:
        module.train(was_training)
