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

from liplt_cli.cli.options import JsonOpt, ModelArg, ModelSource, model_source_options
from liplt_cli.cli.render import print_json, print_warnings, stdout_console


def _render(summary: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

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
        console.print(f"[bold]note:[/] {escape(note)}")


def register(app: typer.Typer) -> None:
    @app.command(
        "inspect",
        help="Show the layer graph a model became: nodes, op kinds, shapes, activation slopes, parameter counts.",
    )
    @model_source_options
    def inspect_cmd(model: ModelArg, json_out: JsonOpt = False, *, source: ModelSource) -> None:
        from liplt_cli.graph.summary import graph_summary

        graph = source.load(model)
        summary = graph_summary(graph, str(model))
        print_warnings(graph.notes)
        if json_out:
            print_json(summary)
        else:
            _render(summary)
