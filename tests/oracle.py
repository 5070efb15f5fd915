"""Independent dense oracles for the Lipschitz engine tests, and random layer-graph builders.

The oracle does not use the engine's propagation code: it evaluates the loop-transformed (or
cut) network as an ordinary function of the input and of explicit injection vectors, takes
explicit Jacobians with ``torch.autograd.functional.jacobian``, computes norms with numpy
(SVD / abs-sums), and runs the recursions of eqs. 11 and 16 on those dense matrices.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from liplt_cli.graph import (
    ActivationNode,
    Affine,
    BlockNode,
    ConcatNode,
    Conv,
    Dense,
    InputNode,
    LayerGraph,
    LinearNode,
    MaxPool,
    Reshape,
    SumNode,
    make_activation,
)
from liplt_cli.graph.linear_ops import conv_out_size


# ----------------------------------------------------------------------------- builders
class Builder:
    """Small helper to build layer graphs by hand with random weights."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0, dtype=torch.float64):
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.nodes: list = [InputNode("x", shape)]
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def shape(self, name: str) -> tuple[int, ...]:
        return next(n.out_shape for n in self.nodes if n.name == name)

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.gen, dtype=self.dtype) * scale

    def dense(self, src: str, out: int) -> str:
        (d,) = self.shape(src)
        op = Dense(self.randn(out, d, scale=d**-0.5 * 1.5), self.randn(out, scale=0.1), (d,), (out,))
        return self._add(LinearNode(self._name("fc"), (src,), op))

    def conv(self, src: str, out_c: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> str:
        c, h, w = self.shape(src)
        ho, wo = conv_out_size(h, k, stride, padding, 1), conv_out_size(w, k, stride, padding, 1)
        weight = self.randn(out_c, c // groups, k, k, scale=(c * k * k / groups) ** -0.5 * 1.5)
        op = Conv(weight, self.randn(out_c, scale=0.1), (stride, stride), (padding, padding), (1, 1), groups, (c, h, w), (out_c, ho, wo))
        return self._add(LinearNode(self._name("conv"), (src,), op))

    def affine(self, src: str, per_channel: bool = True) -> str:
        shape = self.shape(src)
        view = (shape[0],) + (1,) * (len(shape) - 1) if per_channel else shape
        scale = 0.5 + self.randn(*view).abs()
        return self._add(LinearNode(self._name("bn"), (src,), Affine(scale, self.randn(*view), shape, "bn")))

    def flatten(self, src: str) -> str:
        shape = self.shape(src)
        return self._add(LinearNode(self._name("flat"), (src,), Reshape(shape, (math.prod(shape),))))

    def act(self, src: str, kind: str = "relu", **params) -> str:
        return self._add(ActivationNode(self._name("act"), (src,), self.shape(src), make_activation(kind, **params)))

    def maxpool(self, src: str, k: int = 2, stride: int = 2) -> str:
        c, h, w = self.shape(src)
        block = MaxPool((k, k), (stride, stride), (0, 0), (1, 1))
        out = (c, conv_out_size(h, k, stride, 0, 1), conv_out_size(w, k, stride, 0, 1))
        return self._add(BlockNode(self._name("pool"), (src,), out, block))

    def add(self, a: str, b: str, coefficients=()) -> str:
        return self._add(SumNode(self._name("add"), (a, b), self.shape(a), tuple(coefficients)))

    def concat(self, a: str, b: str) -> str:
        sa, sb = self.shape(a), self.shape(b)
        out = (sa[0] + sb[0], *sa[1:])
        return self._add(ConcatNode(self._name("cat"), (a, b), out, 0))

    def _add(self, node) -> str:
        self.nodes.append(node)
        return node.name

    def build(self, output: str) -> LayerGraph:
        g = LayerGraph(tuple(self.nodes), output)
        g.validate()
        return g


def mlp(sizes, activation="relu", seed=0, **params) -> LayerGraph:
    b = Builder((sizes[0],), seed)
    h = "x"
    for i, s in enumerate(sizes[1:]):
        h = b.dense(h, s)
        if i < len(sizes) - 2:
            h = b.act(h, activation, **params)
    return b.build(h)


def convnet(activation="relu", seed=0, channels=3, size=6, classes=4, pool=False) -> LayerGraph:
    b = Builder((channels, size, size), seed)
    h = b.conv("x", 4, 3, 1, 1)
    h = b.act(h, activation)
    h = b.conv(h, 4, 3, 2, 1)
    h = b.act(h, activation)
    if pool:
        h = b.maxpool(h, 2, 1)
    h = b.flatten(h)
    h = b.dense(h, 12)
    h = b.act(h, activation)
    h = b.dense(h, classes)
    return b.build(h)


def residual_net(activation="relu", seed=0, bn=True, classes=3) -> LayerGraph:
    """normalise → conv → act → [conv → bn → act → conv] + skip → act → flatten → fc."""
    b = Builder((2, 5, 5), seed)
    h = b.affine("x")  # input normalisation
    h = b.conv(h, 3, 3, 1, 1)
    h = b.act(h, activation)
    r = b.conv(h, 3, 3, 1, 1)
    if bn:
        r = b.affine(r)
    r = b.act(r, activation)
    r = b.conv(r, 3, 3, 1, 1)
    h = b.add(h, r)
    h = b.act(h, activation)
    h = b.flatten(h)
    h = b.dense(h, classes)
    return b.build(h)


def residual_mlp(activation="relu", seed=0, width=6, classes=3, coefficients=()) -> LayerGraph:
    """h(x) = Hx + Gφ(Wx) twice, the structure of eq. 8 / eq. 14."""
    b = Builder((5,), seed)
    h = b.dense("x", width)
    for _ in range(2):
        r = b.dense(h, width)
        r = b.act(r, activation)
        r = b.dense(r, width)
        h = b.add(h, r, coefficients)
    h = b.act(h, activation)
    h = b.dense(h, classes)
    return b.build(h)


def concat_net(seed=0) -> LayerGraph:
    b = Builder((4,), seed)
    a = b.act(b.dense("x", 5), "tanh")
    c = b.act(b.dense("x", 3), "relu")
    h = b.concat(a, c)
    h = b.dense(h, 3)
    return b.build(h)


# ----------------------------------------------------------------------------- oracle
def _nonlinear(graph: LayerGraph):
    return [n for n in graph.nodes if isinstance(n, (ActivationNode, BlockNode))]


def _run(graph: LayerGraph, x: torch.Tensor, inj: dict[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
    """Evaluate the linearised network (no batch axis juggling: x has batch 1)."""
    env: dict[str, torch.Tensor] = {}
    for n in graph.nodes:
        if isinstance(n, InputNode):
            v = x
        elif isinstance(n, LinearNode):
            v = n.op.linear(env[n.inputs[0]])
        elif isinstance(n, SumNode):
            v = sum(n.coefficient(i) * env[i_] for i, i_ in enumerate(n.inputs))
        elif isinstance(n, ConcatNode):
            v = torch.cat([env[i] for i in n.inputs], dim=n.dim + 1)
        elif isinstance(n, ActivationNode):
            c = n.activation.center if mode == "lt" else 0.0
            v = c * env[n.inputs[0]] + inj[n.name]
        elif isinstance(n, BlockNode):
            v = inj[n.name]
        env[n.name] = v
    return env


def explicit_maps(graph: LayerGraph, mode: str) -> dict[tuple[str, str], np.ndarray]:
    """A_{k,s} (mode 'lt') or B_{k,s} (mode 'cut') as dense numpy matrices, via autograd."""
    g = graph.detached().to(dtype=torch.float64)
    nl = _nonlinear(g)
    targets = [n.inputs[0] for n in nl] + [g.output]
    sources = ["x"] + [n.name for n in nl]
    shapes = {n.name: n.out_shape for n in g.nodes}
    zero_inj = {n.name: torch.zeros(1, *n.out_shape, dtype=torch.float64) for n in nl}
    maps = {}
    for s in sources:
        def f(v, s=s):
            x = torch.zeros(1, *g.input_shape, dtype=torch.float64)
            inj = dict(zero_inj)
            if s == "x":
                x = v.reshape(1, *g.input_shape)
            else:
                inj[s] = v.reshape(1, *shapes[s])
            env = _run(g, x, inj, mode)
            return torch.cat([env[t].reshape(-1) for t in targets])
        dim_s = math.prod(shapes[s])
        jac = torch.autograd.functional.jacobian(f, torch.zeros(dim_s, dtype=torch.float64), vectorize=True).numpy()
        offset = 0
        for t in targets:
            d = math.prod(shapes[t])
            maps[(t, s)] = jac[offset : offset + d]
            offset += d
    return maps


def _opnorm(a: np.ndarray, p: float) -> float:
    if p == 2:
        return float(np.linalg.norm(a, 2)) if a.size else 0.0
    if math.isinf(p):
        return float(np.abs(a).sum(axis=1).max()) if a.size else 0.0
    return float(np.abs(a).sum(axis=0).max()) if a.size else 0.0


def _dual(v: np.ndarray, p: float) -> float:
    q = 2 if p == 2 else (1 if math.isinf(p) else math.inf)
    return float(np.linalg.norm(v, q))


def dense_bounds(graph: LayerGraph, p: float = 2.0, maps_by_mode: dict | None = None) -> dict[str, dict]:
    """Oracle naive and LipLT numbers: {'naive': {...}, 'liplt': {...}} with global/per_class/pairwise.

    ``maps_by_mode`` may pass precomputed ``{"cut": explicit_maps(g, "cut"), "lt": ...}``.
    """
    g = graph.detached().to(dtype=torch.float64)
    nl = _nonlinear(g)
    info = {}
    for n in nl:
        if isinstance(n, ActivationNode):
            a = n.activation
            info[n.name] = (n.inputs[0], a.center, a.radius, a.lipschitz)
        else:
            lip = n.block.lipschitz(p)
            info[n.name] = (n.inputs[0], 0.0, lip, lip)
    out = {}
    for method, mode in (("naive", "cut"), ("liplt", "lt")):
        maps = maps_by_mode[mode] if maps_by_mode else explicit_maps(g, mode)
        m: dict[str, float] = {}
        for n in nl:  # targets in order
            k = n.inputs[0]
            if k in m:
                continue
            total = _opnorm(maps[(k, "x")], p) if method == "liplt" else 0.0
            for j in nl:
                pre, c, r, lip = info[j.name]
                if pre not in m:
                    continue
                factor = r if method == "liplt" else lip
                total += factor * _opnorm(maps[(k, j.name)], p) * m[pre]
            if method == "naive":
                total += _opnorm(maps[(k, "x")], p)
            m[k] = total
        K = g.num_classes
        rows = {s: maps[(g.output, s)] for s in ["x"] + [n.name for n in nl]}

        def spec(fn):
            total = fn(rows["x"])
            for j in nl:
                pre, c, r, lip = info[j.name]
                total += (r if method == "liplt" else lip) * fn(rows[j.name]) * m[pre]
            return total

        glob = spec(lambda a: _opnorm(a, p))
        per = [spec(lambda a, i=i: _dual(a[i], p)) for i in range(K)]
        pair = [[0.0 if i == j else spec(lambda a, i=i, j=j: _dual(a[i] - a[j], p)) for j in range(K)] for i in range(K)]
        out[method] = {"global": glob, "per_class": per, "pairwise": pair}
    return out
