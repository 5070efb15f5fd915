r"""Folding constant affine maps into adjacent linear layers (exact rewrites).

For a loaded file (never a live training module: the folded weights are new tensors):

* ``Affine₂ ∘ Affine₁`` → one Affine with :math:`s = s_2 s_1`, :math:`t = s_2 t_1 + t_2`
  (e.g. ``Sub`` then ``Div`` input normalisation);
* ``Affine ∘ Dense`` / ``Affine ∘ Conv`` with a per-output-channel scale and shift (eval-mode
  BatchNorm, the ``Add`` of a MatMul+Add pair) → the layer with
  :math:`W' = \mathrm{diag}(s) W`, :math:`b' = s \odot b + t`.

Both are equalities of functions, and :math:`\|\mathrm{diag}(s)W\| \le \max|s|\,\|W\|`, so
per-layer (naive) bounds can only get tighter.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from liplt_cli.graph import Affine, Conv, Dense, LayerGraph, LinearNode
from liplt_cli.graph.nodes import Node


def _channel_vector(t: torch.Tensor, shape: tuple[int, ...], axis: int) -> torch.Tensor | None:
    """``t`` as a vector along per-sample ``axis`` of ``shape`` if it is constant along the others."""
    if t.dim() > len(shape):
        return None
    full = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape))
    n = shape[axis]
    for d, size in enumerate(full.shape):
        if d != axis and size != 1:
            return None
    if full.shape[axis] not in (1, n):
        return None
    return full.reshape(-1).expand(n) if full.shape[axis] == 1 else full.reshape(n)


def _fold_into(layer: LinearNode, aff: Affine) -> LinearNode | None:
    op = layer.op
    if isinstance(op, Dense):
        axis = len(op.out_shape) - 1
    elif isinstance(op, Conv):
        axis = 0
    else:
        return None
    s = _channel_vector(aff.scale, tuple(op.out_shape), axis)
    t = _channel_vector(aff.shift, tuple(op.out_shape), axis) if aff.shift is not None else None
    if s is None or (aff.shift is not None and t is None):
        return None
    view = (-1,) + (1,) * (op.weight.dim() - 1)
    weight = op.weight * s.reshape(view)
    bias = op.bias * s if op.bias is not None else None
    if t is not None:
        bias = t.clone() if bias is None else bias + t
    return replace(layer, op=replace(op, weight=weight, bias=bias), source=f"{layer.source} + {aff.label}")


def _merge_affine(first: LinearNode, second: Affine) -> LinearNode:
    a: Affine = first.op  # type: ignore[assignment]
    scale = second.scale * a.scale
    shift = None
    if a.shift is not None:
        shift = second.scale * a.shift
    if second.shift is not None:
        shift = second.shift if shift is None else shift + second.shift
    labels = {a.label, second.label}
    label = "normalize" if labels <= {"subtract constant", "divide by constant", "multiply by constant", "add constant", "normalize"} else f"{a.label}; {second.label}"
    return replace(first, op=Affine(scale, shift, a.in_shape, label), source=f"{first.source} + {second.label}")


def fuse_affine(graph: LayerGraph) -> LayerGraph:
    """Fold every Affine node into its producer where that is exact (see module docstring)."""
    nodes: list[Node] = list(graph.nodes)
    output = graph.output
    folded: list[str] = []
    changed = True
    while changed:
        changed = False
        users: dict[str, int] = {}
        for n in nodes:
            for i in n.inputs:
                users[i] = users.get(i, 0) + 1
        by_name = {n.name: k for k, n in enumerate(nodes)}
        for k, n in enumerate(nodes):
            if not (isinstance(n, LinearNode) and isinstance(n.op, Affine) and len(n.inputs) == 1):
                continue
            src_name = n.inputs[0]
            if users.get(src_name, 0) != 1 or src_name == output:
                continue
            src = nodes[by_name[src_name]]
            if not isinstance(src, LinearNode):
                continue
            if isinstance(src.op, Affine):
                merged: LinearNode | None = _merge_affine(src, n.op)
            else:
                merged = _fold_into(src, n.op)
            if merged is None:
                continue
            nodes[by_name[src_name]] = merged
            del nodes[k]
            nodes = [replace(m, inputs=tuple(src_name if i == n.name else i for i in m.inputs)) if n.name in m.inputs else m for m in nodes]
            if output == n.name:
                output = src_name
            folded.append(f"{n.op.label} '{n.name}' → '{src_name}'")
            changed = True
            break
    if not folded:
        return graph
    note = f"folded {len(folded)} constant affine map(s) into the preceding linear layer: " + "; ".join(folded)
    return LayerGraph(tuple(nodes), output, graph.notes + (note,))
