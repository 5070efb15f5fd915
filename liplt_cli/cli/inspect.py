"""`liplt inspect MODEL`: show the layer graph a model became, before trusting a bound on it.

Examples::

    liplt inspect examples/mlp_relu.onnx
    liplt inspect model.onnx --input-shape 1,28,28 --mean 0.1307 --std 0.3081
    liplt inspect weights.safetensors --arch 4C3F --json

``--json`` prints one document::

    {"model": PATH, "input_shape": [..], "output_shape": [..], "num_classes": K,
     "parameters": N,
     "nodes": [{"name", "kind" (input|linear|sum|concat|activation|block),
                "op" (dense|conv|conv_transpose|affine|reshape|permute|pad|<activation key>|
                      sum|concat|maxpool|input),
                "description", "inputs": [..], "shape": [..], "params": n,
                "alpha", "beta" (activation slope bounds, else null), "source"}],
     "notes": [..]}
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from liplt_cli.cli.options import ArchOpt, InputShapeOpt, JsonOpt, MeanOpt, ModelArg, StdOpt, load_cli_model
from liplt_cli.cli.render import print_json, stdout_console
from liplt_cli.graph.walk import NodeRecords


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


def graph_summary(graph: Any, model: str) -> dict[str, Any]:
    """The ``--json`` document of ``liplt inspect`` (see module docstring)."""
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
    }


def _render(summary: dict[str, Any]) -> None:
    console = stdout_console()
    table = Table(
        title=f"{summary['model']}: input {summary['input_shape']} → output {summary['output_shape']}",
        title_justify="left",
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("name", overflow="fold")
    table.add_column("kind")
    table.add_column("description", overflow="fold")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("inputs", overflow="fold")
    styles = {"activation": "cyan", "block": "magenta", "sum": "yellow", "concat": "yellow", "input": "green"}
    for i, n in enumerate(summary["nodes"]):
        kind = n["kind"]
        description = escape(n["description"])
        if " + " in n["source"]:  # constant maps folded into this layer when loading
            description += f" [dim](+ {escape(n['source'].split(' + ', 1)[1])})[/]"
        table.add_row(
            str(i), n["name"], f"[{styles.get(kind, 'default')}]{kind}[/]", description,
            "×".join(str(s) for s in n["shape"]), f"{n['params']:,}" if n["params"] else "", ", ".join(n["inputs"]),
        )
    if not console.is_terminal:  # a pipe or file: wide enough for the table (Rich would use 80 columns)
        console.width = max(console.width, 150)
    console.print(table)
    counts: dict[str, int] = {}
    for n in summary["nodes"]:
        counts[n["kind"]] = counts.get(n["kind"], 0) + 1
    parts = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "input")
    console.print(
        f"{len(summary['nodes'])} nodes ({parts}); {summary['parameters']:,} parameters; "
        f"{summary['num_classes']} classes"
    )
    for note in summary["notes"]:
        console.print(f"[bold]note:[/] {note}")


def register(app: typer.Typer) -> None:
    @app.command(
        "inspect",
        help="Show the layer graph a model became: nodes, op kinds, shapes, activation slopes, parameter counts.",
    )
    def inspect_cmd(
        model: ModelArg,
        input_shape: InputShapeOpt = None,
        mean: MeanOpt = None,
        std: StdOpt = None,
        arch: ArchOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        graph = load_cli_model(model, input_shape, mean, std, arch)
        summary = graph_summary(graph, str(model))
        if json_out:
            print_json(summary)
        else:
            _render(summary)
