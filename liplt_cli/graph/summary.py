"""The description of a layer graph that ``liplt inspect --json`` prints (one walk over the nodes)."""

from __future__ import annotations

from typing import Any

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.walk import NodeRecords
from liplt_cli.notes import warnings_in


class _NodeSummary(NodeRecords):
    """Per node: the op label, parameter count and slope bounds of the ``--json`` document."""

    def input(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": "input"}

    def linear(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": n.op.kind, "params": sum(int(t.numel()) for t in n.op.tensors().values())}

    def sum(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": "sum"}

    def concat(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": "concat"}

    def activation(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": n.activation.key, "alpha": float(n.activation.alpha), "beta": float(n.activation.beta)}

    def block(self, n: Any, *_: Any) -> dict[str, Any]:
        return {"op": n.block.kind}


def graph_summary(graph: LayerGraph, model: str) -> dict[str, Any]:
    """The ``liplt inspect --json`` document of ``graph`` (keys in :mod:`liplt_cli.cli.inspect`)."""
    nodes = []
    for n, record in zip(graph.nodes, _NodeSummary(graph).run().records):
        nodes.append({
            "name": n.name,
            "kind": n.kind,
            "op": record["op"],
            "description": n.describe(),
            "inputs": list(n.inputs),
            "shape": list(n.out_shape),
            "params": record.get("params", 0),
            "alpha": record.get("alpha"),
            "beta": record.get("beta"),
            "source": getattr(n, "source", ""),
        })
    return {
        "model": model,
        "input_shape": list(graph.input_shape),
        "output_shape": list(graph.output_shape),
        "num_classes": int(graph.num_classes),
        "parameters": int(graph.parameter_count()),
        "nodes": nodes,
        "notes": list(graph.notes),
        "warnings": warnings_in(graph.notes),
    }
