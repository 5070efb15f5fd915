"""Small nets for the certify tests: layer graphs built by hand, dense sound pairwise constants,
and a tiny MLP trained for a second on embedded MNIST (helpers, not a test module)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from liplt_cli.certify.radius import PairwiseConstants
from liplt_cli.graph import ActivationNode, Dense, InputNode, LayerGraph, LinearNode, Reshape, make_activation
from liplt_cli.lipschitz.result import Guarantee


def mlp_graph(weights: list[torch.Tensor], biases: list[torch.Tensor], input_shape=(1, 28, 28),
              activation: str = "relu") -> LayerGraph:
    """x ↦ W_L φ(… φ(W_1 flatten(x) + b_1) …) + b_L as a layer graph."""
    n_in = math.prod(input_shape)
    nodes: list = [InputNode("input", tuple(input_shape))]
    prev = "input"
    if len(input_shape) > 1:
        nodes.append(LinearNode("flatten", ("input",), Reshape(tuple(input_shape), (n_in,))))
        prev = "flatten"
    for k, (w, b) in enumerate(zip(weights, biases)):
        name = f"fc{k}"
        nodes.append(LinearNode(name, (prev,), Dense(w, b, (w.shape[1],), (w.shape[0],))))
        prev = name
        if k < len(weights) - 1:
            nodes.append(ActivationNode(f"act{k}", (name,), (w.shape[0],), make_activation(activation)))
            prev = f"act{k}"
    return LayerGraph(tuple(nodes), prev)


def _op_norm(w: torch.Tensor, p: float) -> float:
    w = w.double()
    if p == 2:
        return float(torch.linalg.matrix_norm(w, ord=2))
    if math.isinf(p):
        return float(w.abs().sum(dim=1).max())
    return float(w.abs().sum(dim=0).max())


def dense_pairwise(weights: list[torch.Tensor], p: float, slope: float = 1.0) -> PairwiseConstants:
    """Naive sound pairwise constants: L_ij = ‖(e_i − e_j)ᵀW_L‖_{p*} · Π_k β‖W_k‖_{p→p} (with a
    1e-6 relative margin for round-off); for one hidden layer in ℓ2 that is ‖(e_i−e_j)ᵀW2‖₂·‖W1‖₂."""
    last = weights[-1].double()
    inner = math.prod(slope * _op_norm(w, p) for w in weights[:-1])
    diff = last[:, None, :] - last[None, :, :]
    dual = 1.0 if math.isinf(p) else (math.inf if p == 1 else 2.0)
    m = torch.linalg.vector_norm(diff, ord=dual, dim=2) * inner * (1 + 1e-6)
    return PairwiseConstants(m, Guarantee.UPPER_BOUND, norm=p, method="dense")


@lru_cache(maxsize=2)
def tiny_trained_mlp(hidden: int = 32, samples: int = 300, steps: int = 60, seed: int = 0):
    """A 784-hidden-10 ReLU MLP trained (full batch Adam) on ``samples`` embedded MNIST images;
    returns (graph, weights, test images, test labels) with 200 other embedded images as test set."""
    from liplt_cli.data import load_dataset

    torch.manual_seed(seed)
    ds = load_dataset("embedded", limit=samples + 200)
    x, y = ds.x[:samples].reshape(samples, -1), ds.y[:samples]
    net = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    weights = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]
    biases = [net[0].bias.detach().clone(), net[2].bias.detach().clone()]
    return mlp_graph(weights, biases), weights, ds.x[samples:], ds.y[samples:]


@lru_cache(maxsize=1)
def small_convnet(seed: int = 0):
    """A random ReLU conv net (conv 1→4 s2 · conv 4→8 s2 · dense 392→10) traced with
    ``graph_from_module``, with 60 embedded MNIST images labelled by its own predictions (so
    every point is classified correctly and has a positive radius)."""
    from liplt_cli.data import load_dataset
    from liplt_cli.load import graph_from_module

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10),
    ).eval()
    graph = graph_from_module(net, (1, 28, 28)).detached()
    x = load_dataset("embedded", limit=60).x
    with torch.no_grad():
        y = graph.evaluate(x).argmax(dim=1)
    return graph, x, y
