"""Dense oracle of the local LipLT recursion (per-neuron slopes), and a driver of the local engine.

The oracle does not use the local engine: it evaluates the loop-transformed network with one
centre per neuron as an ordinary function of the input and of injection vectors, takes explicit
Jacobians with autograd, restricts them to the unstable rows and scales the columns by the
per-neuron radii, takes norms with numpy and runs the recursion

    m_k = ‖P_{U_k} A_{k,0}‖ + Σ_j ‖P_{U_k} A_{k,j} R_j‖ m_j,
    L_c = ‖cᵀ A_{out,0}‖_{p*} + Σ_j ‖cᵀ A_{out,j} R_j‖_{p*} m_j

on those dense matrices (one sample).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from liplt_cli.graph import LayerGraph
from liplt_cli.local.engine import LocalConstants, LocalLipLT, one_hot_rows


def drive_engine(graph: LayerGraph, p: float, slopes: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 samples: int) -> LocalConstants:
    """The local engine with the given per-neuron, per-sample slope ranges ``(S, *shape)``."""
    lt = LocalLipLT(graph, p, samples)
    for node in graph.nodes:
        if node.kind == "activation":
            lt.set_slopes(node.name, *slopes[node.name])
            unstable = lt.unstable[node.name]
        elif node.kind == "block":
            lt.set_block(node.name)
            unstable = lt.unstable[node.name]
        else:
            continue
        rows, which = one_hot_rows(unstable)
        if rows.shape[0] == 0:
            lt.m[node.name] = torch.zeros(samples, dtype=torch.float64)
            continue
        lt.inner(node.name, lt.pull_back(lt.pre(node.name), rows, which), which)
    return lt.output_constants()


def _run(graph: LayerGraph, x: torch.Tensor, inj: dict[str, torch.Tensor], centre: dict[str, torch.Tensor]):
    env: dict[str, torch.Tensor] = {}
    for n in graph.nodes:
        if n.kind == "input":
            v = x
        elif n.kind == "linear":
            v = n.op.linear(env[n.inputs[0]])
        elif n.kind == "sum":
            v = sum(n.coefficient(i) * env[i_] for i, i_ in enumerate(n.inputs))
        elif n.kind == "concat":
            v = torch.cat([env[i] for i in n.inputs], dim=n.dim + 1)
        elif n.kind == "activation":
            v = centre[n.name] * env[n.inputs[0]] + inj[n.name]
        else:  # block: passes nothing, only its injection
            v = inj[n.name]
        env[n.name] = v
    return env


def _opnorm(a: np.ndarray, p: float) -> float:
    if a.size == 0:
        return 0.0
    if p == 2:
        return float(np.linalg.norm(a, 2))
    if math.isinf(p):
        return float(np.abs(a).sum(axis=1).max())
    return float(np.abs(a).sum(axis=0).max())


def _dual(v: np.ndarray, p: float) -> float:
    q = 2 if p == 2 else (1 if math.isinf(p) else math.inf)
    return float(np.linalg.norm(v, q))


def dense_local(graph: LayerGraph, p: float, alpha: dict[str, torch.Tensor], beta: dict[str, torch.Tensor]) -> dict:
    """Oracle numbers {'global', 'per_class', 'pairwise'} for one sample (slopes without a sample axis)."""
    g = graph.detached().to(dtype=torch.float64)
    nonlinear = [n for n in g.nodes if n.kind in ("activation", "block")]
    shapes = {n.name: n.out_shape for n in g.nodes}
    centre = {j: ((alpha[j] + beta[j]) / 2)[None] for j in alpha}
    radius, unstable = {}, {}
    for n in nonlinear:
        if n.kind == "activation":
            r = ((beta[n.name] - alpha[n.name]) / 2).reshape(-1).numpy()
            radius[n.name] = r
            unstable[n.name] = r > 0
        else:
            radius[n.name] = np.full(math.prod(n.out_shape), n.block.lipschitz(p))
            unstable[n.name] = np.ones(math.prod(shapes[n.inputs[0]]), dtype=bool)
    targets = [n.inputs[0] for n in nonlinear] + [g.output]
    sources = [g.input.name] + [n.name for n in nonlinear]
    zero = {n.name: torch.zeros(1, *n.out_shape, dtype=torch.float64) for n in nonlinear}
    maps = {}
    for s in sources:
        def f(v, s=s):
            x = torch.zeros(1, *g.input_shape, dtype=torch.float64)
            inj = dict(zero)
            if s == g.input.name:
                x = v.reshape(1, *g.input_shape)
            else:
                inj[s] = v.reshape(1, *shapes[s])
            env = _run(g, x, inj, centre)
            return torch.cat([env[t].reshape(-1) for t in targets])
        jac = torch.autograd.functional.jacobian(f, torch.zeros(math.prod(shapes[s]), dtype=torch.float64)).numpy()
        offset = 0
        for t in targets:
            d = math.prod(shapes[t])
            maps[(t, s)] = jac[offset:offset + d]
            offset += d
    m: dict[str, float] = {}
    for n in nonlinear:  # in topological order
        k, u = n.inputs[0], unstable[n.name]
        total = _opnorm(maps[(k, g.input.name)][u], p)
        for j in nonlinear:
            if j.name in m:
                total += _opnorm(maps[(k, j.name)][u] * radius[j.name][None, :], p) * m[j.name]
        m[n.name] = total
    rows = {s: maps[(g.output, s)] for s in sources}

    def spec(fn):
        total = fn(rows[g.input.name])
        for j in nonlinear:
            total += fn(rows[j.name] * radius[j.name][None, :]) * m[j.name]
        return total

    k = g.num_classes
    return {
        "global": spec(lambda a: _opnorm(a, p)),
        "per_class": [spec(lambda a, i=i: _dual(a[i], p)) for i in range(k)],
        "pairwise": [[0.0 if i == j else spec(lambda a, i=i, j=j: _dual(a[i] - a[j], p)) for j in range(k)]
                     for i in range(k)],
    }
