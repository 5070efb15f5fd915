"""Numbers pinned bit for bit, so that a refactor of the engine or the graph walk changes none.

The fixture ``tests/fixtures/pinned.json`` holds what this module computes on a trusted commit:

* ``bound``: the ``liplt bound --json`` document (without timings and paths) of every example
  model and of the shipped model, in ℓ2, ℓ∞ and ℓ1, sound and ``--fast``;
* ``engine``: ``compute_bounds`` on small hand-built graphs that the examples lack (MaxPool,
  concatenation, weighted sums, α < 0, an activation with centre 0), sound, structural only
  (nothing explicit) and fast;
* ``training``: :func:`~liplt_cli.lipschitz.pairwise_bound_tensor` (LipLT and naive), its
  warm-started second call, and a digest of its gradient in the weights;
* ``refine``: :func:`~liplt_cli.lipschitz.refine.refined_bounds` (SN, AOL, SLL) and a digest of
  the dense maps of :func:`~liplt_cli.lipschitz.refine.loop_maps`;
* ``lipsdp``: the dense chains :func:`~liplt_cli.lipschitz.lipsdp.feedforward_chain` reads;
* ``graph``: logits of every model on a fixed input, the serialised description and the
  ``liplt inspect --json`` summary.

Floats are stored as JSON numbers (Python's ``repr``, which round-trips exactly) and compared
with ``==``; tensors too large to list are stored as a SHA-256 of their bytes.  Floating-point
results depend on the machine (BLAS kernels, vector width), so the fixture is regenerated on a
new platform, and only from a commit whose numbers are trusted::

    PYTHONPATH=. python -m tests.pinned tests/fixtures/pinned.json

Settings are chosen to keep the default test fast: the sound bound uses the default explicit
budget except where that takes more than a second or two (then a smaller ``--explicit-budget``,
which still makes the smaller maps explicit); ``--fast`` uses 10 power iterations.  The slow test
pins the full defaults on every model.  Computation runs on one torch thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from tests.conftest import one_thread

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "pinned.json"
MODELS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("*.onnx")) + [
    "liplt_cli/models/mnist_default.safetensors"
]
NORMS = ("2", "inf", "1")
SMALL_BUDGET = "1e8"
# (model, norm) whose sound bound at the default explicit budget takes too long for the fast suite
SLOW_SOUND = {
    ("examples/conv_stride_pad.onnx", "2"),
    ("examples/norm_batchnorm.onnx", "2"),
    ("examples/residual.onnx", "2"),
    ("examples/residual.onnx", "inf"),
    ("examples/residual.onnx", "1"),
}
FAST_ITERATIONS = "10"


def digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (bit-exact identity)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _floats(t: torch.Tensor) -> Any:
    return t.detach().cpu().to(torch.float64).tolist()


# ----------------------------------------------------------------------------- liplt bound --json
def bound_argv(model: str, norm: str, mode: str) -> list[str]:
    """The ``liplt bound`` command line of one pinned case (``mode``: sound, sound-full or fast)."""
    argv = ["bound", str(ROOT / model), "--norm", norm, "--json", "--device", "cpu"]
    if mode == "fast":
        argv += ["--fast", "--iterations", FAST_ITERATIONS]
    elif mode == "sound" and (model, norm) in SLOW_SOUND:
        argv += ["--explicit-budget", SMALL_BUDGET]
    return argv


def bound_case(model: str, norm: str, mode: str) -> dict[str, Any]:
    """``liplt bound --json`` of one case, without timings and the model path."""
    from liplt_cli.cli.app import run

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = run(bound_argv(model, norm, mode))
    if code != 0:
        raise RuntimeError(f"liplt bound failed with exit {code}: {bound_argv(model, norm, mode)}")
    doc = json.loads(out.getvalue())
    doc.pop("model")
    for m in doc["methods"].values():
        m.pop("seconds")
    return doc


def bound_cases(modes: tuple[str, ...] = ("sound", "fast")) -> dict[str, Any]:
    return {f"{m} {n} {mode}": bound_case(m, n, mode) for m in MODELS for n in NORMS for mode in modes}


# ----------------------------------------------------------------------------- engine on small graphs
def _engine_graphs():
    from tests.compare_nets import random_mlp
    from tests.oracle import concat_net, convnet, mlp, residual_mlp, residual_net

    yield "convnet pool", convnet("relu", seed=1, pool=True)
    yield "convnet silu", convnet("silu", seed=2)
    yield "residual_net", residual_net("leaky_relu", seed=3)
    yield "residual_mlp", residual_mlp("tanh", seed=1, coefficients=(1.0, -0.5))
    yield "concat_net", concat_net(seed=2)
    yield "mlp hardswish", mlp([5, 7, 6, 3], "hardswish", seed=4)
    yield "zero-centre leaky", zero_centre(random_mlp([4, 6, 5, 3], "leaky_relu", seed=5))


def engine_cases() -> dict[str, Any]:
    """``compute_bounds`` on small graphs with MaxPool, concatenation, weighted sums, α < 0, c = 0."""
    from liplt_cli.lipschitz import EngineOptions, compute_bounds

    out: dict[str, Any] = {}
    for name, graph in _engine_graphs():
        for norm in (2.0, math.inf, 1.0):
            for label, options in (
                ("sound", EngineOptions(norm=norm)),
                ("structural", EngineOptions(norm=norm, explicit_budget=0.0, explicit_max_side=0)),
                ("fast", EngineOptions(norm=norm, fast=True, iterations=20)),
            ):
                res = compute_bounds(graph, options)
                out[f"{name} {norm} {label}"] = {m: _method_dict(b) for m, b in res.methods.items()}
    return out


# ----------------------------------------------------------------------------- training path
def _trainable(model: str):
    from liplt_cli.load import load_model

    graph = load_model(ROOT / model)
    return graph.map_tensors(lambda t: t.detach().clone().requires_grad_(True))


def training_case(model: str, method: str) -> dict[str, Any]:
    """Two warm-started calls of ``pairwise_bound_tensor`` and the gradient of the second."""
    from liplt_cli.lipschitz import pairwise_bound_tensor

    graph = _trainable(model)
    torch.manual_seed(0)
    first, state = pairwise_bound_tensor(graph, method=method, iterations=5)
    second, state = pairwise_bound_tensor(graph, method=method, state=state, iterations=2)
    second.sum().backward()
    grads = {name: digest(t.grad) for name, t in graph.tensors() if t.grad is not None}
    return {
        "first": _floats(first),
        "second": _floats(second),
        "vectors": {"|".join(k): digest(v) for k, v in sorted(state.vectors.items())},
        "last_relative_change": state.last_relative_change,
        "grads": grads,
    }


TRAINING_MODELS = ("examples/mlp_relu.onnx", "examples/conv_stride_pad.onnx", "examples/residual.onnx",
                   "examples/mlp_tanh_sigmoid.onnx", "examples/norm_batchnorm.onnx")


def training_cases() -> dict[str, Any]:
    return {f"{m} {method}": training_case(m, method) for m in TRAINING_MODELS for method in ("liplt", "naive")}


# ----------------------------------------------------------------------------- refine
def _refine_graphs():
    from liplt_cli.load import load_model
    from tests.compare_nets import random_mlp, random_residual
    from tests.oracle import concat_net, residual_mlp

    yield "mlp_tanh_sigmoid.onnx", load_model(ROOT / "examples/mlp_tanh_sigmoid.onnx")
    yield "conv_stride_pad.onnx", load_model(ROOT / "examples/conv_stride_pad.onnx")  # skipped: too many neurons
    yield "random_residual", random_residual(seed=3)
    yield "random_mlp leaky", random_mlp([4, 9, 7, 3], "leaky_relu", seed=4)
    yield "residual_mlp", residual_mlp("tanh", seed=1, coefficients=(1.0, -0.5))
    yield "concat_net", concat_net(seed=2)
    yield "zero-centre leaky", zero_centre(random_mlp([4, 6, 5, 3], "leaky_relu", seed=5))


def zero_centre(graph):
    """The same graph with LeakyReLU(-1) (slopes [-1, 1], centre 0) on its first activation."""
    from dataclasses import replace

    from liplt_cli.graph import ActivationNode, LayerGraph, make_activation

    nodes, first = [], True
    for n in graph.nodes:
        if isinstance(n, ActivationNode) and first:
            n, first = replace(n, activation=make_activation("leaky_relu", negative_slope=-1.0)), False
        nodes.append(n)
    return LayerGraph(tuple(nodes), graph.output)


def _method_dict(res) -> dict[str, Any]:
    d = res.to_dict()
    d.pop("seconds", None)
    return d


def refine_cases() -> dict[str, Any]:
    from liplt_cli.lipschitz.refine import NotApplicable, loop_maps, refined_bounds

    out: dict[str, Any] = {}
    for name, graph in _refine_graphs():
        for choice in ("sn", "aol", "sll"):
            out[f"{name} {choice}"] = _method_dict(refined_bounds(graph, choice))
        try:
            lm = loop_maps(graph)
            out[f"{name} maps"] = {f"{t} <- {s}": digest(m) for (t, s), m in lm.maps.items()}
        except NotApplicable as exc:
            out[f"{name} maps"] = f"not applicable: {exc}"
    return out


# ----------------------------------------------------------------------------- lipsdp chains
def lipsdp_cases() -> dict[str, Any]:
    """The dense chains LipSDP reads off each graph (or why it cannot)."""
    from liplt_cli.lipschitz.lipsdp import NotApplicable, feedforward_chain
    from liplt_cli.load import load_model

    graphs = [(m, load_model(ROOT / m)) for m in MODELS] + list(_engine_graphs()) + list(_refine_graphs())
    out: dict[str, Any] = {}
    for name, graph in graphs:
        try:
            chain = feedforward_chain(graph)
        except NotApplicable as exc:
            out[name] = f"not applicable: {exc}"
            continue
        weights = [digest(torch.from_numpy(w)) for w in chain.weights]
        out[name] = {"weights": weights, "alpha": chain.alpha, "beta": chain.beta, "names": chain.names}
    return out


# ----------------------------------------------------------------------------- graph walks
def graph_cases() -> dict[str, Any]:
    from liplt_cli.graph.summary import graph_summary
    from liplt_cli.graph.serialize import graph_to_dict
    from liplt_cli.load import load_model

    out: dict[str, Any] = {}
    for model in MODELS:
        graph = load_model(ROOT / model)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(3, *graph.input_shape, generator=gen, dtype=graph.dtype)
        logits = graph.evaluate(x)
        out[f"{model} logits"] = _floats(logits)
        out[f"{model} logits digest"] = digest(logits)
        out[f"{model} serialised"] = graph_to_dict(graph)
        out[f"{model} inspect"] = graph_summary(graph, model)
    return out


def compute(full: bool = False) -> dict[str, Any]:
    """Every pinned number (``full``: the sound bound at the default settings on every case)."""
    with one_thread():
        if full:
            return {"bound_full": bound_cases(("sound-full",))}
        return {
            "bound": bound_cases(),
            "engine": engine_cases(),
            "training": training_cases(),
            "refine": refine_cases(),
            "lipsdp": lipsdp_cases(),
            "graph": graph_cases(),
        }


def _clean(obj: Any) -> Any:
    """JSON cannot hold NaN/inf as numbers: store them as strings, both when writing and comparing."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def normalised(obj: Any) -> Any:
    """What a computed value looks like after a JSON round trip (tuples become lists, etc.)."""
    return json.loads(json.dumps(_clean(obj)))


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else FIXTURE
    doc = normalised(compute())
    doc |= normalised(compute(full=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
