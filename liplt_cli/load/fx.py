"""PyTorch module → layer graph, through a torch.fx graph.

:func:`graph_from_module` symbolically traces a module (or takes onnx2torch's ``GraphModule``
as it is), picks a random example input, and walks the fx graph (:mod:`liplt_cli.load.walk`):
every fx node becomes a constant or layer-graph nodes emitted by the handler registered for its
op (:mod:`liplt_cli.load.registry`, handlers in :mod:`liplt_cli.load.ops`).  Unsupported nodes
are collected and reported together in one :class:`~liplt_cli.errors.UnsupportedOpError`.
Finally the layer graph is validated and checked against the module on random inputs, on large
ones and on inputs that drive pre-activations to about ±10³ (:mod:`liplt_cli.load.check`); a
difference is an error.

Weights are *shared*: a ``Conv2d``'s node stores ``module.weight`` itself, so bounds computed on
the graph are differentiable in the parameters and follow in-place optimiser updates; an
operation on one of the module's own parameters or buffers is never simplified away.  Derived
tensors (BatchNorm's per-channel scale ``γ/√(σ²+ε)`` and shift ``β-μγ/√(σ²+ε)``, a Gemm with
``alpha ≠ 1``) are new tensors, computed with autograd enabled.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import fx, nn

from liplt_cli.errors import InputShapeError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import LayerGraph
from liplt_cli.graph.nodes import Node
from liplt_cli.load.values import Sym, flatten
from liplt_cli.load.walk import FxWalk
from liplt_cli.notes import warning

__all__ = ["graph_from_module"]


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
        first = flatten([y])[0] if isinstance(y, (list, tuple, dict)) else y
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


def _walk(gm: fx.GraphModule, shape: tuple[int, ...], example: torch.Tensor, onnx_ops: Mapping[str, str] | None,
          shared: tuple[torch.Tensor, ...]) -> tuple[FxWalk, Sym, torch.Tensor]:
    """Walk ``gm`` on ``example``; retried at batch 1 when unsupported ops appear at batch 2."""
    walk = FxWalk(gm, shape, example, onnx_ops, shared)
    try:
        return walk, walk.run(), example
    except UnsupportedOpError:
        if example.shape[0] == 1:
            raise
    # a model written for batch 1 (e.g. Reshape to [1, -1]) may mix samples at batch 2
    example = example[:1]
    walk = FxWalk(gm, shape, example, onnx_ops, shared)
    return walk, walk.run(), example


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
    adjacent linear layers and lets no-op operations on the module's tensors be dropped (new
    tensors; used for ONNX files, never for live training modules).

    Raises :class:`UnsupportedOpError` listing every unsupported node, :class:`ModelLoadError`
    for untraceable modules or weights that depend on the input, :class:`InputShapeError` when
    the module does not run on ``input_shape``, :class:`GraphError` when the graph is invalid
    (e.g. NaN weights), and :class:`~liplt_cli.load.check.ModelMismatchError` (a GraphError and a
    ModelLoadError) when it does not reproduce the module (see :mod:`liplt_cli.load.check`).
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise InputShapeError(f"input shape must be positive integers, got {list(shape)}")
    shared = () if fuse else (*module.parameters(), *module.buffers())
    was_training = module.training
    module.eval()
    try:
        gm = _trace(module)
        gm.eval()
        dtype, device = _model_dtype(module)
        walk, out, example = _walk(gm, shape, _pick_batch(gm, shape, dtype, device, seed), onnx_ops, shared)
        nodes = _prune(walk.builder.nodes, out.name)
        notes = walk.builder.notes
        if out.stripped:
            notes.append(warning(f"stripped final {out.stripped}: bounds and radii are about the logits before it"))
        if len(nodes) == 1:
            raise ModelLoadError("the model is the identity on its input; there is nothing to bound")
        graph = unfused = LayerGraph(tuple(nodes), out.name, tuple(notes))
        if fuse:
            from liplt_cli.load.fuse import fuse_affine

            graph = fuse_affine(graph)
        graph.validate()
        if check and out.fx_name is not None:
            _check_equal(graph, unfused, gm, out.fx_name, example, seed, walk.builder.fx_of)
        return graph
    finally:
        module.train(was_training)
