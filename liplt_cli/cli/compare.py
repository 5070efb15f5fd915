"""`liplt compare MODEL [MODEL...]`: Lipschitz methods side by side (the paper's Table 2).

Examples::

    liplt compare model.onnx                                  # every method, ℓ2
    liplt compare a.onnx b.onnx --methods naive,liplt,lower   # several models, some methods
    liplt compare model.onnx --plot compare.png               # bars per method, linear from 0
    liplt compare model.onnx --json                           # the JSON contract below

One row per (model, method): mean pairwise L_ij, mean L_i + L_j, mean √2·L (ℓ2 only), the
guarantee label, the gap to the empirical lower bound and the time.  The ``lower`` row is an
*estimate from below*: the true constant lies between it and the smallest sound upper bound.

``--json`` prints ``ComparisonResult.to_dict()``::

    {"norm": "2"|"inf"|"1", "device": ..., "methods": [...], "settings": {...},
     "models": [{"model": PATH, "num_classes": K, "notes": [...],
                 "rows": [{"method", "guarantee", "skipped", "reason", "global", "pairwise_mean",
                           "sum_per_class_mean", "sqrt2_global", "gap_to_lower", "seconds",
                           "notes"}]}]}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from liplt_cli.cli.options import (
    PANEL_METHOD,
    PANEL_OUTPUT,
    DeviceChoice,
    DeviceOpt,
    JsonOpt,
    ModelSource,
    NormChoice,
    NormOpt,
    at_least,
    model_source_options,
    resolve_device,
)
from liplt_cli.cli.render import StageProgress, add_warnings, fmt, print_json, stderr_console, stdout_console, warn

if TYPE_CHECKING:
    from liplt_cli.compare.result import ComparisonResult

PANEL_LOWER = "Lower bound"
GUARANTEE_STYLE = {"exact": "green", "upper bound": "green", "estimate": "yellow", "skipped": "dim"}


def _render(result: ComparisonResult) -> None:
    from rich.table import Table

    console = stdout_console()
    if not console.is_terminal:
        console.width = max(console.width, 150)
    norm = result.to_dict()["norm"]
    table = Table(
        title=f"Lipschitz constants by method (input norm ℓ{norm}, {result.device}); means over class pairs i<j",
        title_justify="left",
    )
    for col in ("model", "method", "mean L_ij", "mean L_i+L_j", "√2·L", "global L", "guarantee", "÷ lower", "time"):
        table.add_column(col, justify="left" if col in ("model", "method", "guarantee") else "right")
    for mc in result.models:
        for k, row in enumerate(mc.rows):
            label = row.guarantee
            style = GUARANTEE_STYLE.get(label, "cyan")
            table.add_row(
                mc.model if k == 0 else "",
                row.method,
                fmt(row.pairwise_mean) if not row.skipped else "—",
                fmt(row.sum_per_class_mean) if not row.skipped else "—",
                fmt(row.sqrt2_global) if row.sqrt2_global is not None and not row.skipped else "—",
                fmt(row.global_) if not row.skipped else "—",
                f"[{style}]{label}[/]",
                f"{row.gap:.2f}×" if row.gap is not None else "—",
                f"{row.seconds:.2f}s",
                end_section=k == len(mc.rows) - 1,
            )
    console.print(table)
    for mc in result.models:
        for row in mc.rows:
            if row.skipped:
                console.print(f"[dim]{mc.model}: {row.method} skipped: {row.reason}[/]")
            elif row.method in ("liplt", "designed") and row.notes:
                console.print(f"{mc.model}: {row.method}: {'; '.join(row.notes)}")
            elif row.guarantee == "estimate" and row.method != "lower":
                console.print(f"[yellow]{mc.model}: {row.method} is an estimate, not a guaranteed bound: {'; '.join(row.notes)}[/]")
    if "lower" in result.methods:
        console.print(
            "lower = largest Jacobian norm found (sampling + ascent): the true constant lies between it "
            "and the smallest sound upper bound; '÷ lower' is each method's mean L_ij over the lower bound's."
        )


def register(app: typer.Typer) -> None:
    @app.command(
        "compare",
        help=(
            "Compare Lipschitz methods on one or more models: naive, LipLT, LipLT with the Theorem 2 "
            "refinement (T = AOL / SLL / SN), LipSDP (optional cvxpy extra, small nets) and an empirical "
            "lower bound; Table 2 columns (mean L_ij, L_i+L_j, √2·L), guarantee and time."
        ),
    )
    @model_source_options
    def compare_cmd(
        models: Annotated[
            list[Path],
            typer.Argument(
                metavar="MODEL...", show_default=False,
                help="Model files (ONNX or liplt safetensors); one table block per model.",
            ),
        ],
        norm: NormOpt = NormChoice.l2,
        methods: Annotated[
            str,
            typer.Option(
                "--methods", metavar="M[,M...]", rich_help_panel=PANEL_METHOD,
                help="Comma-separated: naive, liplt, designed, liplt-sn, liplt-aol, liplt-sll, lipsdp, lower (or all). "
                "designed (Proposition 2 models) is shown after liplt whenever the model has certified blocks.",
            ),
        ] = "naive,liplt,liplt-aol,liplt-sll,lipsdp,lower",
        samples: Annotated[
            int,
            typer.Option("--samples", metavar="N", callback=at_least(1), rich_help_panel=PANEL_LOWER,
                         help="Random points for the lower bound (at least 1)."),
        ] = 256,
        ascent_steps: Annotated[
            int,
            typer.Option("--ascent-steps", metavar="N", callback=at_least(0), rich_help_panel=PANEL_LOWER,
                         help="Ascent steps per spec for the lower bound."),
        ] = 25,
        seed: Annotated[
            int, typer.Option("--seed", metavar="N", rich_help_panel=PANEL_LOWER, help="Seed of the lower bound's random search.")
        ] = 0,
        lipsdp_max_neurons: Annotated[
            int,
            typer.Option(
                "--lipsdp-max-neurons", metavar="N", callback=at_least(1), rich_help_panel=PANEL_METHOD,
                help="Largest SDP (hidden neurons + input rank) LipSDP attempts; larger is slow (one SDP per class pair).",
            ),
        ] = 150,
        plot: Annotated[
            Optional[Path],
            typer.Option("--plot", metavar="PNG", rich_help_panel=PANEL_OUTPUT, show_default="none",
                         help="Write a bar chart (mean L_ij per method, lower bound marked) to this PNG."),
        ] = None,
        device: DeviceOpt = DeviceChoice.auto,
        json_out: JsonOpt = False,
        *,
        source: ModelSource,
    ) -> None:
        from liplt_cli.compare import compare_models, parse_methods, plot_comparison
        from liplt_cli.errors import ArgumentError, ModelLoadError
        from liplt_cli.paths import check_output_file

        chosen = parse_methods(methods)
        if plot is not None:  # checked before anything is computed
            if plot.suffix.lower() != ".png":
                raise ArgumentError(f"--plot must name a .png file, got '{plot}'")
            check_output_file(plot, "--plot")
        for m in models:
            if not m.exists():
                raise ModelLoadError(f"model file '{m}' does not exist")
        dev = resolve_device(device)
        graphs = [(str(m), source.load(m)) for m in models]
        with StageProgress(enabled=not json_out) as report:
            result = compare_models(
                graphs, norm=norm.p, methods=chosen, device=dev, lower_samples=samples,
                lower_steps=ascent_steps, seed=seed, progress=report, lipsdp_max_neurons=lipsdp_max_neurons,
            )
        ignored = []
        if "lower" not in chosen and (samples, ascent_steps, seed) != (256, 25, 0):
            ignored.append("--samples, --ascent-steps and --seed are ignored without the lower method")
        if "lipsdp" not in chosen and lipsdp_max_neurons != 150:
            ignored.append("--lipsdp-max-neurons is ignored without the lipsdp method")
        result = add_warnings(result, ignored)
        for line in result.warnings:
            warn(line)
        if plot is not None:
            plot_comparison(result, plot)
        if json_out:
            print_json(result.to_dict())
        else:
            _render(result)
            if plot is not None:
                stderr_console().print(f"wrote {plot}")
