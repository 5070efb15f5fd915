r"""The loaded layer graph must compute the source model's function: checked where it matters.

The graph and the model (both in the model's dtype) are run on

* random inputs (standard normal, and a data-like ``0.5·N(0,1) + 0.5``), compared to
  ``1e-5 · max(1, max|model(x)|)`` as before;
* large inputs (``100·N(0,1)`` and ``10⁴·N(0,1)``), and an input scaled so that the largest
  pre-activation of the graph (the input of an activation or of a MaxPool) is about ±10³ —
  where a mis-read elementwise function (a switch at 50, a polynomial close to the identity
  near 0) shows.  These are compared relative to the magnitude of the computation,
  ``1e-4 · max(1, max|model(x)|, max|pre-activation|)``: float32 rounding of sums of terms of
  that size stays far below it.

Samples on which the model's own output is not finite (float32 overflow of e.g. ``exp`` in the
model) are left out; a non-finite graph output where the model's is finite is a difference.
Half-precision models get only the random inputs.  A difference raises
:class:`ModelMismatchError` (a :class:`~liplt_cli.errors.ModelLoadError`) naming the input kind,
the size of the difference and, when it can be located, the first layer-graph node whose value
differs from the source model's.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from liplt_cli.errors import GraphError, ModelLoadError
from liplt_cli.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, InputNode, LinearNode, SumNode

TOLERANCE = 1e-5
LARGE_TOLERANCE = 1e-4
PREACTIVATION_TARGET = 1e3


class ModelMismatchError(GraphError, ModelLoadError):
    """The layer graph does not compute the source model's function."""


def node_values(graph: LayerGraph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The value of every node of ``graph`` on the batch ``x``."""
    env: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n in graph.nodes:
            args = [env[i] for i in n.inputs]
            if isinstance(n, InputNode):
                v = x
            elif isinstance(n, LinearNode):
                v = n.op.forward(args[0])
            elif isinstance(n, SumNode):
                v = sum(n.coefficient(k) * a for k, a in enumerate(args))  # type: ignore[assignment]
            elif isinstance(n, ConcatNode):
                v = torch.cat(args, dim=n.dim + 1)
            elif isinstance(n, ActivationNode):
                v = n.activation(args[0])
            elif isinstance(n, BlockNode):
                v = n.block(args[0])
            else:  # a node kind this walker does not know: evaluate the prefix graph
                v = LayerGraph(graph.nodes[: graph.position(n.name) + 1], n.name).evaluate(x)
            env[n.name] = v
    return env


def preactivation_peak(graph: LayerGraph, x: torch.Tensor) -> float:
    """``max |v|`` over the inputs of the graph's activations and Lipschitz blocks."""
    values = node_values(graph, x)
    peak = 0.0
    for n in graph.nodes:
        if isinstance(n, (ActivationNode, BlockNode)):
            v = values[n.inputs[0]]
            if v.numel():
                peak = max(peak, float(v.detach().abs().max()))
    return peak


def trial_inputs(graph: LayerGraph, example: torch.Tensor, seed: int) -> list[tuple[str, torch.Tensor, bool]]:
    """``(description, input, large)`` for every comparison (see module docstring)."""
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)

    def randn() -> torch.Tensor:
        return torch.randn(example.shape, generator=gen, dtype=torch.float64).to(dtype=example.dtype, device=example.device)

    trials = [("a random input", randn() * 0.5 + 0.5, False)]
    trials += [("a random input", randn(), False) for _ in range(1 if example.shape[0] > 1 else 2)]
    if example.dtype in (torch.float16, torch.bfloat16):
        return trials
    trials += [("a random input of magnitude 1e2", randn() * 100, True), ("a random input of magnitude 1e4", randn() * 1e4, True)]
    x0, s = randn(), 1.0
    for _ in range(3):
        peak = preactivation_peak(graph, x0 * s)
        if not math.isfinite(peak) or peak == 0:
            break
        s *= PREACTIVATION_TARGET / peak
    if math.isfinite(s) and s > 0:
        trials.append((f"an input scaled so that pre-activations reach about ±{PREACTIVATION_TARGET:g}", x0 * s, True))
    return trials


def check_equal(
    graph: LayerGraph,
    reference: Callable[[torch.Tensor], torch.Tensor],
    example: torch.Tensor,
    seed: int,
    locate: Callable[[torch.Tensor, float], str | None] | None = None,
) -> None:
    """Compare ``graph`` with ``reference`` (the source model) on the inputs of :func:`trial_inputs`."""
    for what, x, large in trial_inputs(graph, example, seed):
        with torch.no_grad():
            ref = reference(x)
            got = graph.evaluate(x)
        ref = ref.reshape(got.shape) if ref.numel() == got.numel() else ref
        if ref.shape != got.shape:
            raise ModelMismatchError(f"layer graph output shape {list(got.shape)} differs from the model's {list(ref.shape)}")
        ref64, got64 = ref.detach().to(torch.float64), got.detach().to(torch.float64)
        rows = torch.isfinite(ref64.reshape(ref64.shape[0], -1)).all(1)
        if not bool(rows.any()):
            continue  # the model overflows on every sample: nothing to compare
        ref64, got64 = ref64[rows], got64[rows]
        scale = max(1.0, float(ref64.abs().max()))
        tol = TOLERANCE if example.dtype not in (torch.float16, torch.bfloat16) else 1e-2
        if large:
            scale = max(scale, preactivation_peak(graph, x[rows]))
            tol = LARGE_TOLERANCE
        diff = (got64 - ref64).abs()
        err = float(diff.max()) if bool(torch.isfinite(diff).all()) else math.inf
        if err > tol * scale:
            where = locate(x[rows], tol) if locate is not None else None
            flat = int(torch.nan_to_num(diff, nan=math.inf).reshape(-1).argmax())
            raise ModelMismatchError(
                f"the layer graph does not reproduce the model on {what}: max |difference| {err:.3g} "
                f"(model {float(ref64.reshape(-1)[flat]):.6g}, graph {float(got64.reshape(-1)[flat]):.6g}; "
                f"tolerance {tol * scale:.3g})" + (f"; {where}" if where else "") + "; please report this model"
            )


def first_difference(
    graph: LayerGraph, source_values: dict[str, torch.Tensor], fx_of: dict[str, str], x: torch.Tensor, tol: float
) -> str | None:
    """The first node of ``graph`` (in order) whose value differs from its source value."""
    values = node_values(graph, x)
    for n in graph.nodes:
        fx_name = fx_of.get(n.name)
        if fx_name is None or fx_name not in source_values:
            continue
        mine, theirs = values[n.name], source_values[fx_name]
        if not isinstance(theirs, torch.Tensor) or theirs.numel() != mine.numel():
            continue
        a, b = mine.detach().to(torch.float64).reshape(-1), theirs.detach().to(torch.float64).reshape(-1)
        keep = torch.isfinite(b)
        if not bool(keep.any()):
            continue
        scale = max(1.0, float(b[keep].abs().max()))
        d = (a[keep] - b[keep]).abs()
        err = float(d.max()) if bool(torch.isfinite(d).all()) else math.inf
        if err > tol * scale:
            return f"the first difference is at layer-graph node '{n.name}' ({n.source or type(n).__name__}): max |difference| {err:.3g}"
    return None


__all__ = ["ModelMismatchError", "check_equal", "first_difference", "node_values", "preactivation_peak", "trial_inputs"]
