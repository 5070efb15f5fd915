"""Small layer graphs built directly from weights, for the compare/lower/lipsdp/refine tests."""

from __future__ import annotations

import torch

from liplt_cli.graph import ActivationNode, Dense, InputNode, LayerGraph, LinearNode, SumNode, make_activation


def mlp_graph(weights: list[torch.Tensor], activation: str = "relu", biases: bool = True, seed: int = 0) -> LayerGraph:
    """x → W0 → φ → W1 → φ → … → W_last (logits), weights given as (out, in) matrices."""
    gen = torch.Generator().manual_seed(seed)
    nodes: list = [InputNode("x", (weights[0].shape[1],))]
    prev = "x"
    for i, w in enumerate(weights):
        b = torch.randn(w.shape[0], generator=gen, dtype=w.dtype) * 0.1 if biases else None
        nodes.append(LinearNode(f"fc{i}", (prev,), Dense(w, b, (w.shape[1],), (w.shape[0],))))
        prev = f"fc{i}"
        if i < len(weights) - 1:
            nodes.append(ActivationNode(f"act{i}", (prev,), (w.shape[0],), make_activation(activation)))
            prev = f"act{i}"
    graph = LayerGraph(tuple(nodes), prev)
    graph.validate()
    return graph


def random_mlp(sizes: list[int], activation: str = "relu", seed: int = 0, dtype=torch.float64) -> LayerGraph:
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(sizes[i + 1], sizes[i], generator=gen, dtype=dtype) / sizes[i] ** 0.5 for i in range(len(sizes) - 1)]
    return mlp_graph(weights, activation, seed=seed)


def residual_graph(h: torch.Tensor, g: torch.Tensor, w: torch.Tensor, activation: str = "relu") -> LayerGraph:
    """h(x) = H x + G φ(W x), equation (8) of the paper."""
    n0 = w.shape[1]
    k = h.shape[0]
    nodes = (
        InputNode("x", (n0,)),
        LinearNode("W", ("x",), Dense(w, None, (n0,), (w.shape[0],))),
        ActivationNode("phi", ("W",), (w.shape[0],), make_activation(activation)),
        LinearNode("G", ("phi",), Dense(g, None, (w.shape[0],), (k,))),
        LinearNode("H", ("x",), Dense(h, None, (n0,), (k,))),
        SumNode("out", ("H", "G"), (k,)),
    )
    graph = LayerGraph(nodes, "out")
    graph.validate()
    return graph


def random_residual(n0: int = 5, n1: int = 8, k: int = 4, seed: int = 0, activation: str = "relu") -> LayerGraph:
    gen = torch.Generator().manual_seed(seed)
    def r(a, b):
        return torch.randn(a, b, generator=gen, dtype=torch.float64) / b ** 0.5
    return residual_graph(r(k, n0), r(k, n1), r(n1, n0), activation)
