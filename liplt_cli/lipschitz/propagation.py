r"""Batched propagation of many vectors through the linear network of a :class:`Structure`.

Two passes, each one call per node whatever the number of vectors (the O(L) trick of the
paper's GPU implementation):

* :func:`forward_pass` -- inject tagged batches at source nodes and read them at target nodes:
  returns :math:`A_{k,s} V` for every tag's (source s, target k);
* :func:`adjoint_pass` -- inject tagged batches at target nodes and read at source nodes:
  returns :math:`A_{k,s}^\top U`.

All tags present at a node are concatenated along the batch axis, pushed through the node's
operator once, and split again.  Modes: ``lt`` (activations act as :math:`c_j \cdot`, blocks as
0), ``cut`` (every nonlinear node is 0), and their absolute versions ``abs_lt``/``abs_cut``
(every operator replaced by its entrywise absolute value, used for sound ℓ∞/ℓ1 bounds:
:math:`|A|\mathbf{1}` is bounded entrywise by the product of absolute operators).
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

import torch

from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, InputNode, LinearNode, SumNode
from liplt_cli.lipschitz.structure import Structure

Tag = Hashable
Reader = Callable[[Tag, str, torch.Tensor], None]


def _passes(mode: str, node, structure: Structure) -> float | None:
    """Factor by which a nonlinear node passes its input in ``mode`` (None = cut)."""
    if isinstance(node, BlockNode):
        return None
    c = structure.center[node.name]
    if mode.endswith("cut") or c == 0.0:
        return None
    return abs(c) if mode.startswith("abs") else c


def _linear_op(node: LinearNode, absolute: bool):
    if not absolute:
        return node.op
    op = node.op.absolute()
    if op is None:  # pragma: no cover - every op kind defines absolute()
        raise ValueError(f"operator of node '{node.name}' has no absolute form")
    return op


def _batched(fn, tagged: dict[Tag, torch.Tensor]) -> dict[Tag, torch.Tensor]:
    if not tagged:
        return {}
    tags = list(tagged)
    sizes = [tagged[t].shape[0] for t in tags]
    out = fn(torch.cat([tagged[t] for t in tags], dim=0)) if len(tags) > 1 else fn(tagged[tags[0]])
    return dict(zip(tags, torch.split(out, sizes, dim=0)))


def forward_pass(
    structure: Structure,
    mode: str,
    sources: Iterable[tuple[Tag, str, torch.Tensor]],
    reads: dict[Tag, set[str]],
    on_read: Reader,
) -> None:
    """Propagate tagged batches from their source nodes; call ``on_read(tag, node, value)``.

    ``sources``: (tag, node name, tensor of shape (B, *node.out_shape)); one source per tag.
    ``reads[tag]``: names of the nodes at which the tag's value is read.
    """
    graph = structure.graph
    absolute = mode.startswith("abs")
    injections: dict[str, list[tuple[Tag, torch.Tensor]]] = {}
    for tag, name, tensor in sources:
        injections.setdefault(name, []).append((tag, tensor))
    if not injections:
        return
    last_read = {t: max(graph.position(n) for n in names) for t, names in reads.items() if names}
    start = min(graph.position(n) for n in injections)
    last_use = graph.last_use()
    values: dict[str, dict[Tag, torch.Tensor]] = {}
    for pos in range(start, len(graph.nodes)):
        node = graph.nodes[pos]
        incoming: dict[Tag, torch.Tensor] = {}
        if isinstance(node, LinearNode):
            op = _linear_op(node, absolute)
            incoming = _batched(op.linear, values.get(node.inputs[0], {}))
        elif isinstance(node, SumNode):
            for i, inp in enumerate(node.inputs):
                coef = node.coefficient(i)
                coef = abs(coef) if absolute else coef
                for tag, t in values.get(inp, {}).items():
                    term = t if coef == 1 else coef * t
                    incoming[tag] = incoming[tag] + term if tag in incoming else term
        elif isinstance(node, ConcatNode):
            parts = [values.get(inp, {}) for inp in node.inputs]
            tags = {tag for part in parts for tag in part}
            for tag in tags:
                batch = next(part[tag].shape[0] for part in parts if tag in part)
                chunks = []
                for inp, part in zip(node.inputs, parts):
                    if tag in part:
                        chunks.append(part[tag])
                    else:
                        ref = next(p_[tag] for p_ in parts if tag in p_)
                        chunks.append(ref.new_zeros((batch, *graph.node(inp).out_shape)))
                incoming[tag] = torch.cat(chunks, dim=node.dim + 1)
        elif isinstance(node, (ActivationNode, BlockNode)):
            factor = _passes(mode, node, structure)
            if factor is not None:
                incoming = {tag: factor * t for tag, t in values.get(node.inputs[0], {}).items()}
        elif isinstance(node, InputNode):
            incoming = {}
        for tag, tensor in injections.get(node.name, []):
            incoming[tag] = tensor
        for tag, value in incoming.items():
            if node.name in reads.get(tag, ()):
                on_read(tag, node.name, value)
        values[node.name] = {t: v for t, v in incoming.items() if last_read.get(t, -1) > pos}
        for inp in set(node.inputs):
            if last_use[inp] == pos:
                values.pop(inp, None)
        if pos >= max(last_read.values(), default=-1):
            break


def adjoint_pass(
    structure: Structure,
    mode: str,
    sources: Iterable[tuple[Tag, str, torch.Tensor]],
    reads: dict[Tag, set[str]],
    on_read: Reader,
) -> None:
    """Back-propagate tagged cotangents from target nodes; ``on_read`` at source nodes.

    The value read at a nonlinear node j is the cotangent of j's *output*, i.e.
    :math:`A_{k,j}^\\top u`; at the input node it is :math:`A_{k,0}^\\top u`.
    """
    graph = structure.graph
    absolute = mode.startswith("abs")
    cot: dict[str, dict[Tag, torch.Tensor]] = {}
    injections: dict[str, list[tuple[Tag, torch.Tensor]]] = {}
    for tag, name, tensor in sources:
        injections.setdefault(name, []).append((tag, tensor))
    if not injections:
        return
    first_read = {t: min(graph.position(n) for n in names) for t, names in reads.items() if names}
    start = max(graph.position(n) for n in injections)

    def send(name: str, tag: Tag, value: torch.Tensor) -> None:
        bucket = cot.setdefault(name, {})
        bucket[tag] = bucket[tag] + value if tag in bucket else value

    for pos in range(start, -1, -1):
        node = graph.nodes[pos]
        incoming = cot.pop(node.name, {})
        for tag, tensor in injections.get(node.name, []):
            incoming[tag] = incoming[tag] + tensor if tag in incoming else tensor
        for tag, value in incoming.items():
            if node.name in reads.get(tag, ()):
                on_read(tag, node.name, value)
        incoming = {t: v for t, v in incoming.items() if first_read.get(t, len(graph.nodes)) < pos}
        if not incoming:
            if not cot and pos <= min(graph.position(n) for n in injections):
                break
            continue
        if isinstance(node, LinearNode):
            op = _linear_op(node, absolute)
            for tag, v in _batched(op.adjoint, incoming).items():
                send(node.inputs[0], tag, v)
        elif isinstance(node, SumNode):
            for i, inp in enumerate(node.inputs):
                coef = node.coefficient(i)
                coef = abs(coef) if absolute else coef
                for tag, v in incoming.items():
                    send(inp, tag, v if coef == 1 else coef * v)
        elif isinstance(node, ConcatNode):
            sizes = [graph.node(i).out_shape[node.dim] for i in node.inputs]
            for tag, v in incoming.items():
                for inp, chunk in zip(node.inputs, torch.split(v, sizes, dim=node.dim + 1)):
                    send(inp, tag, chunk)
        elif isinstance(node, (ActivationNode, BlockNode)):
            factor = _passes(mode, node, structure)
            if factor is not None:
                for tag, v in incoming.items():
                    send(node.inputs[0], tag, factor * v)
