r"""Batched propagation of many vectors through a linear network of a :class:`Structure`.

Two walks over the graph (:class:`~liplt_cli.graph.walk.GraphWalk`), each one operator call per
node whatever the number of vectors (the O(L) trick of the paper's GPU implementation):

* :func:`forward_pass` -- inject tagged batches at source nodes and read them at target nodes:
  returns :math:`A_{k,s} V` for every tag's (source s, target k);
* :func:`adjoint_pass` -- inject tagged batches at target nodes and read at source nodes:
  returns :math:`A_{k,s}^\top U`.

A value is a dict tag → batch ``(B, *node.out_shape)``.  All tags present at a linear node are
concatenated along the batch axis, pushed through the node's operator once, and split again.
Nonlinear nodes act by their multiplier in the mode
(:meth:`~liplt_cli.lipschitz.transform.LoopTransform.apply`): :math:`c_j` in ``LT``, nothing in
``CUT``; the absolute modes replace every operator by its entrywise absolute value (sound
ℓ∞/ℓ1 bounds: :math:`|A|\mathbf{1}` is bounded entrywise by the product of absolute operators).
A tag is dropped as soon as no node left on the walk reads it, and the walk stops after the
last read.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable

import torch

from liplt_cli.graph.nodes import ConcatNode, LinearNode, Node, SumNode
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.transform import Mode

Tag = Hashable
Tagged = dict[Tag, torch.Tensor]
Reader = Callable[[Tag, str, torch.Tensor], None]
Injection = tuple[Tag, str, torch.Tensor]


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], tagged: Tagged) -> Tagged:
    if not tagged:
        return {}
    tags = list(tagged)
    sizes = [tagged[t].shape[0] for t in tags]
    out = fn(torch.cat([tagged[t] for t in tags], dim=0)) if len(tags) > 1 else fn(tagged[tags[0]])
    return dict(zip(tags, torch.split(out, sizes, dim=0)))


def _add(into: Tagged, tag: Tag, value: torch.Tensor) -> None:
    into[tag] = into[tag] + value if tag in into else value


class _Propagation(GraphWalk):
    """What both directions share: the mode, the injections, the reads and the nonlinear nodes."""

    def __init__(
        self, structure: Structure, mode: Mode, sources: Iterable[Injection], reads: dict[Tag, set[str]],
        on_read: Reader, samples: dict[Tag, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(structure.graph)
        self.transform = structure.transform
        self.mode = mode
        self.reads = reads
        self.on_read = on_read
        self.samples = samples or {}
        self.injections: dict[str, list[tuple[Tag, torch.Tensor]]] = {}
        for tag, name, tensor in sources:
            self.injections.setdefault(name, []).append((tag, tensor))

    def op(self, node: LinearNode) -> Any:
        if not self.mode.absolute:
            return node.op
        op = node.op.absolute()
        if op is None:  # pragma: no cover - every op kind defines absolute()
            raise ValueError(f"operator of node '{node.name}' has no absolute form")
        return op

    def coefficient(self, node: SumNode, i: int) -> float:
        c = node.coefficient(i)
        return abs(c) if self.mode.absolute else c

    def scaled(self, node: Node, tagged: Tagged) -> Tagged | None:
        """Node ``node`` (nonlinear) applied to every tag by its multiplier; ``None`` if cut."""
        if self.transform.multiplier(node.name, self.mode) is None:
            return None
        apply = self.transform.apply
        return {tag: apply(node.name, self.mode, t, self.samples.get(tag)) for tag, t in tagged.items()}

    def deliver(self, node: Node, tagged: Tagged) -> None:
        for tag, value in tagged.items():
            if node.name in self.reads.get(tag, ()):
                self.on_read(tag, node.name, value)


class ForwardPropagation(_Propagation):
    """Tagged batches pushed from their sources towards the nodes that read them."""

    action = "propagating forward through"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        graph = self.graph
        self.last_read = {t: max(graph.position(n) for n in names) for t, names in self.reads.items() if names}
        self.stop_after = max(self.last_read.values(), default=-1)

    def read(self, name: str) -> Tagged:
        return self.env.get(name, {})

    def input(self, node: Node) -> Tagged:
        return {}

    def linear(self, node: LinearNode, x: Tagged) -> Tagged:
        return _batched(self.op(node).linear, x)

    def sum(self, node: SumNode, *xs: Tagged) -> Tagged:
        out: Tagged = {}
        for i, x in enumerate(xs):
            coef = self.coefficient(node, i)
            for tag, t in x.items():
                _add(out, tag, t if coef == 1 else coef * t)
        return out

    def concat(self, node: ConcatNode, *xs: Tagged) -> Tagged:
        out: Tagged = {}
        for tag in dict.fromkeys(tag for x in xs for tag in x):
            ref = next(x[tag] for x in xs if tag in x)
            chunks = [
                x[tag] if tag in x else ref.new_zeros((ref.shape[0], *self.graph.node(inp).out_shape))
                for inp, x in zip(node.inputs, xs)
            ]
            out[tag] = torch.cat(chunks, dim=node.dim + 1)
        return out

    def activation(self, node: Node, x: Tagged) -> Tagged:
        return self.scaled(node, x) or {}

    block = activation

    def emit(self, pos: int, node: Node, value: Tagged) -> Tagged:
        for tag, tensor in self.injections.get(node.name, []):
            value[tag] = tensor
        self.deliver(node, value)
        return {t: v for t, v in value.items() if self.last_read.get(t, -1) > pos}

    def finished(self, pos: int) -> bool:
        return pos >= self.stop_after


class AdjointPropagation(_Propagation):
    """Tagged cotangents pulled back from their targets towards the nodes that read them."""

    reverse = True
    action = "propagating back through"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        graph = self.graph
        self.first_read = {t: min(graph.position(n) for n in names) for t, names in self.reads.items() if names}
        self.first_injection = min((graph.position(n) for n in self.injections), default=-1)

    def accumulate(self, old: Tagged | None, new: Tagged) -> Tagged:
        if old is None:
            return dict(new)
        for tag, v in new.items():
            _add(old, tag, v)
        return old

    def input(self, node: Node, v: Tagged) -> tuple[()]:
        return ()

    def linear(self, node: LinearNode, v: Tagged) -> tuple[Tagged]:
        return (_batched(self.op(node).adjoint, v),)

    def sum(self, node: SumNode, v: Tagged) -> list[Tagged]:
        parts = []
        for i in range(len(node.inputs)):
            coef = self.coefficient(node, i)
            parts.append({tag: t if coef == 1 else coef * t for tag, t in v.items()})
        return parts

    def concat(self, node: ConcatNode, v: Tagged) -> list[Tagged]:
        sizes = [self.graph.node(i).out_shape[node.dim] for i in node.inputs]
        parts: list[Tagged] = [{} for _ in node.inputs]
        for tag, t in v.items():
            for part, chunk in zip(parts, torch.split(t, sizes, dim=node.dim + 1)):
                part[tag] = chunk
        return parts

    def activation(self, node: Node, v: Tagged) -> tuple[Tagged | None]:
        return (self.scaled(node, v),)

    block = activation

    def emit(self, pos: int, node: Node, value: Tagged | None) -> Tagged | None:
        value = value or {}
        for tag, tensor in self.injections.get(node.name, []):
            _add(value, tag, tensor)
        self.deliver(node, value)
        value = {t: v for t, v in value.items() if self.first_read.get(t, len(self.graph.nodes)) < pos}
        return value or None

    def finished(self, pos: int) -> bool:
        return not self.env and pos <= self.first_injection


def forward_pass(
    structure: Structure, mode: Mode, sources: Iterable[Injection], reads: dict[Tag, set[str]], on_read: Reader,
    samples: dict[Tag, torch.Tensor] | None = None,
) -> None:
    """Propagate tagged batches from their source nodes; call ``on_read(tag, node, value)``.

    ``sources``: (tag, node name, tensor of shape (B, *node.out_shape)); one source per tag.
    ``reads[tag]``: names of the nodes at which the tag's value is read.
    ``samples[tag]``: the sample of each of the tag's B rows, for per-sample slopes (see
    :meth:`~liplt_cli.lipschitz.transform.LoopTransform.apply`); not needed otherwise.
    """
    walk = ForwardPropagation(structure, mode, sources, reads, on_read, samples)
    if walk.injections:
        walk.run(start=min(walk.graph.position(n) for n in walk.injections))


def adjoint_pass(
    structure: Structure, mode: Mode, sources: Iterable[Injection], reads: dict[Tag, set[str]], on_read: Reader,
    samples: dict[Tag, torch.Tensor] | None = None,
) -> None:
    """Back-propagate tagged cotangents from target nodes; ``on_read`` at source nodes.

    The value read at a nonlinear node j is the cotangent of j's *output*, i.e.
    :math:`A_{k,j}^\\top u`; at the input node it is :math:`A_{k,0}^\\top u`.  ``samples`` as
    for :func:`forward_pass`.
    """
    walk = AdjointPropagation(structure, mode, sources, reads, on_read, samples)
    if walk.injections:
        walk.run(start=max(walk.graph.position(n) for n in walk.injections))
