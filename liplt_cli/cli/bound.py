"""`liplt bound MODEL`: naive and LipLT upper bounds on the Lipschitz constant.

Examples::

    liplt bound model.onnx                       # ℓ2, both methods, sound (exact / upper bound)
    liplt bound model.onnx --norm inf --per-class
    liplt bound model.onnx --fast --iterations 50   # power-iteration estimates (not bounds)
    liplt bound model.onnx --json                # the stable JSON contract below
    liplt bound model.onnx --at inputs.npz --eps 0.1 --input-range 0,1   # local constants

``--at inputs.npz --eps E`` gives *local* constants (global, per class, pairwise) valid on the
ℓp ball of radius E around each input (∩ ``--input-range``), each the smaller of the local
recursion's number and the global one; ``--json`` then prints ``LocalBoundResult.to_dict()``
({model, norm, eps_text, domain, device, guarantee, sound, global_reference{...}, samples[{eps,
global, per_class, pairwise, pairwise_mean, unstable_neurons}], neurons, seconds, notes,
warnings}).

On a model with Proposition 2 residual blocks (``liplt train --arch prop2-…``, or any file with
the structure ``s·x + Wᵀdiag(t)φ(Wx + b)``) whose condition is re-verified from the weights, a
``designed`` row gives the product of the certified per-block bounds, and LipLT uses those
blocks' bounds as extra terms, so LipLT ≤ designed (the notes under the table say so).

``--json`` prints ``BoundResult.to_dict()``::

    {"model": PATH, "norm": "2"|"inf"|"1", "device": ..., "settings": {...},
     "methods": {"naive"|"liplt"|"designed": {"global": L, "per_class": [L_i], "pairwise": [[L_ij]],
                 "pairwise_mean", "pairwise_max", "sum_per_class_mean", "sqrt2_global",
                 "guarantee": "exact"|"upper bound"|"estimate", "term_counts": {...},
                 "seconds", "iterations", "last_relative_change", "notes"}}}
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from liplt_cli.cli.options import (
    PANEL_LOCAL,
    PANEL_METHOD,
    PANEL_OUTPUT,
    DeviceChoice,
    DeviceOpt,
    JsonOpt,
    ModelArg,
    ModelSource,
    NormChoice,
    NormOpt,
    at_least,
    model_source_options,
    parse_input_range,
    resolve_device,
)
from liplt_cli.cli.render import StageProgress, add_warnings, fmt, print_json, print_warnings, stdout_console
from liplt_cli.eps import parse_epsilons
from liplt_cli.errors import ArgumentError, DataError


class MethodChoice(str, Enum):
    naive = "naive"
    liplt = "liplt"
    all = "all"


GUARANTEE_STYLE = {"exact": "green", "upper bound": "green", "estimate": "yellow"}


def _render(result, show: str, model: str) -> None:
    from rich.table import Table

    console = stdout_console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    norm = result.to_dict()["norm"]
    table = Table(title=f"Lipschitz bounds of {model} (input norm ℓ{norm}, {result.device})", title_justify="left")
    for col in ("method", "global L", "mean L_ij", "max L_ij", "mean L_i+L_j", "√2·L", "guarantee", "terms", "time"):
        table.add_column(col, justify="right" if col not in ("method", "guarantee", "terms") else "left")
    for m in result.methods.values():
        g = m.guarantee.value
        terms = ", ".join(f"{v} {k}" for k, v in m.term_counts.items() if v)
        table.add_row(
            m.method, fmt(m.global_), fmt(m.pairwise_mean), fmt(m.pairwise_max), fmt(m.sum_per_class_mean),
            fmt(m.sqrt2_global) if norm == "2" else "—", f"[{GUARANTEE_STYLE[g]}]{g}[/]", terms, f"{m.seconds:.2f}s",
        )
    console.print(table)
    if "naive" in result.methods and "liplt" in result.methods:
        n, l = result.methods["naive"], result.methods["liplt"]
        if l.pairwise_mean > 0 and l.global_ > 0:
            console.print(
                f"tightness naive / LipLT: global {n.global_ / l.global_:.2f}×, mean pairwise "
                f"{n.pairwise_mean / l.pairwise_mean:.2f}×"
            )
    for m in result.methods.values():
        for line in m.notes:
            console.print(f"{m.method}: {line}")
    for m in result.methods.values():
        if m.guarantee.value == "estimate":
            change = f", last relative change {m.last_relative_change:.1e}" if m.last_relative_change is not None else ""
            console.print(
                f"[yellow]{m.method}: power-iteration estimates ({m.iterations} iterations{change}); "
                "they converge from below and are NOT guaranteed upper bounds.[/]"
            )
    if show == "per-class":
        t = Table(title="per-class constants L_i", title_justify="left")
        t.add_column("class", justify="right")
        for m in result.methods.values():
            t.add_column(f"{m.method} ({m.guarantee.value})", justify="right")
        k = next(iter(result.methods.values())).num_classes
        for i in range(k):
            t.add_row(str(i), *[fmt(m.per_class[i]) for m in result.methods.values()])
        console.print(t)
    if show == "pairwise":
        for m in result.methods.values():
            k = m.num_classes
            if k > 20:
                console.print(f"{m.method}: {k}×{k} pairwise matrix not shown (use --json)")
                continue
            t = Table(title=f"pairwise constants L_ij, {m.method} ({m.guarantee.value})", title_justify="left")
            t.add_column("i\\j", justify="right")
            for j in range(k):
                t.add_column(str(j), justify="right")
            for i in range(k):
                t.add_row(str(i), *["·" if i == j else fmt(m.pairwise[i][j], 3) for j in range(k)])
            console.print(t)


def register(app: typer.Typer) -> None:
    @app.command(
        "bound",
        help=(
            "Upper bounds on the Lipschitz constant of MODEL: naive (product of norms, eq. 11) and "
            "LipLT (loop transformation, eq. 16), global, per class and per class pair. Sound by "
            "default: every number is exact or a guaranteed upper bound; --fast gives estimates."
        ),
    )
    @model_source_options
    def bound_cmd(
        model: ModelArg,
        norm: NormOpt = NormChoice.l2,
        method: Annotated[
            MethodChoice,
            typer.Option("--method", metavar="naive|liplt|all", help="Which bound to compute.", rich_help_panel=PANEL_METHOD),
        ] = MethodChoice.all,
        pairwise: Annotated[
            bool, typer.Option("--pairwise", help="Also print the K×K matrix of L_ij.", rich_help_panel=PANEL_OUTPUT)
        ] = False,
        per_class: Annotated[
            bool, typer.Option("--per-class", help="Also print L_i for every class.", rich_help_panel=PANEL_OUTPUT)
        ] = False,
        global_only: Annotated[
            bool,
            typer.Option("--global", help="Print only the summary table (what you get without --pairwise or --per-class).",
                         rich_help_panel=PANEL_OUTPUT),
        ] = False,
        fast: Annotated[
            bool,
            typer.Option("--fast", help="Power-iteration estimates for inner norms (fast; NOT guaranteed).",
                         rich_help_panel=PANEL_METHOD),
        ] = False,
        iterations: Annotated[
            int,
            typer.Option("--iterations", metavar="N", callback=at_least(1), rich_help_panel=PANEL_METHOD,
                         help="Power iterations per norm with --fast (at least 1)."),
        ] = 100,
        explicit_budget: Annotated[
            float,
            typer.Option(
                "--explicit-budget", metavar="FLOPS", callback=at_least(0), rich_help_panel=PANEL_METHOD,
                show_default="4e10",
                help="Largest cost (≈ flops) of making a map explicit to take its exact norm; "
                "larger is tighter and slower.",
            ),
        ] = 4e10,
        at: Annotated[
            Optional[Path],
            typer.Option("--at", metavar="NPZ", rich_help_panel=PANEL_LOCAL, show_default="none: global constants",
                         help="Local constants at the inputs of this .npz (array 'x', one row per input), valid on "
                              "the ball of radius --eps around each; the global bound is printed beside them."),
        ] = None,
        eps: Annotated[
            Optional[str],
            typer.Option("--eps", metavar="EPS", rich_help_panel=PANEL_LOCAL, show_default="none",
                         help="With --at: radius of the ball around each input (e.g. 0.1 or 36/255)."),
        ] = None,
        input_range: Annotated[
            str,
            typer.Option("--input-range", metavar="LO,HI|none", rich_help_panel=PANEL_LOCAL,
                         help="With --at: the input domain the ball is clipped to (none: no domain)."),
        ] = "none",
        device: DeviceOpt = DeviceChoice.auto,
        json_out: JsonOpt = False,
        *,
        source: ModelSource,
    ) -> None:
        from liplt_cli.lipschitz import EngineOptions, compute_bounds

        if at is not None or eps is not None:
            if at is None or eps is None:
                raise ArgumentError("--at and --eps go together: local constants at the inputs of --at on balls of radius --eps")
            if fast:
                raise ArgumentError("--at computes sound local constants; drop --fast")
            _local(model, at, eps, input_range, norm.value, json_out, resolve_device(device), source.load(model),
                   per_class or pairwise, ignored=_ignored_with_at(method, global_only, iterations, explicit_budget))
            return

        if sum([pairwise, per_class, global_only]) > 1:
            raise typer.BadParameter("choose at most one of --pairwise, --per-class, --global")
        dev = resolve_device(device)
        graph = source.load(model)
        # "designed" appears only for models with Proposition 2 blocks certified from their weights
        methods = ("naive", "liplt", "designed") if method is MethodChoice.all else (method.value,)
        options = EngineOptions(norm=norm.value, fast=fast, iterations=iterations, explicit_budget=explicit_budget)
        with StageProgress(enabled=not json_out) as report:
            result = compute_bounds(graph, options, methods=methods, device=dev, progress=report, model=str(model))
        ignored = []
        if not fast and iterations != 100:
            ignored.append(f"--iterations {iterations} is ignored without --fast (it sets the power iterations)")
        if fast and explicit_budget != 4e10:
            ignored.append("--explicit-budget is ignored with --fast (no map is made explicit)")
        if input_range != "none":
            ignored.append("--input-range is ignored without --at (global constants hold on all of input space)")
        result = add_warnings(result, ignored)
        print_warnings(result.notes)
        if json_out:
            print_json(result.to_dict())
        else:
            show = "pairwise" if pairwise else "per-class" if per_class else "global"
            _render(result, show, str(model))


def _ignored_with_at(method: MethodChoice, global_only: bool, iterations: int, explicit_budget: float) -> list[str]:
    """What ``--at`` does not use, to warn about (the local constants are LipLT's, sound)."""
    ignored = []
    if method is not MethodChoice.all:
        ignored.append(f"--method {method.value} is ignored with --at (local constants use LipLT, beside the global LipLT bound)")
    if global_only:
        ignored.append("--global is ignored with --at (the table shows the local and global constants)")
    if iterations != 100:
        ignored.append(f"--iterations {iterations} is ignored with --at (sound constants, no power iteration)")
    if explicit_budget != 4e10:
        ignored.append("--explicit-budget is ignored with --at")
    return ignored


def read_inputs(path: Path, input_shape) -> "torch.Tensor":  # noqa: F821
    """Array ``x`` of a .npz (or its only array) as float64 rows of the model's input shape."""
    import numpy as np
    import torch

    from liplt_cli.certify.radius import match_inputs
    from liplt_cli.data.npz import check_npz_headers

    if not path.is_file():
        raise DataError(f"--at: no such file '{path}'")
    keys = list(check_npz_headers(path))
    key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise DataError(f"--at: '{path}' must hold an array 'x' (it has {sorted(keys) or 'none'})")
    with np.load(path, allow_pickle=False) as f:
        x = np.asarray(f[key])
    if not np.issubdtype(x.dtype, np.number) or (x.size and not np.isfinite(x).all()):
        raise DataError(f"--at: '{path}' array '{key}' must hold finite numbers")
    x = torch.from_numpy(x.astype(np.float64))
    if x.dim() == len(input_shape):
        x = x[None]
    return match_inputs(x, input_shape, f"--at '{path}'")


def _local(model, at: Path, eps_text: str, input_range: str, norm: str, json_out: bool, device: str, graph,
           detail: bool, ignored: list[str]) -> None:
    from rich.table import Table

    from liplt_cli.local import local_bounds

    values = parse_epsilons(eps_text)
    if len(values) != 1:
        raise ArgumentError("--eps with --at takes one radius")
    radius = values[0]
    x = read_inputs(at, graph.input_shape)
    domain = parse_input_range(input_range, None)
    p = NormChoice(norm).p
    with StageProgress(enabled=not json_out) as report:
        report("local constants", 0, x.shape[0])
        result = local_bounds(graph, x, radius, p, domain=domain, device=device, model_name=str(model),
                              progress=lambda d, t: report("local constants", d, t))
    result = add_warnings(result, ignored)
    print_warnings(result.notes)
    if json_out:
        print_json(result.to_dict())
        return
    console = stdout_console()
    ref = result.global_reference
    g = result.guarantee.value
    where = f", inputs in [{domain[0]:g}, {domain[1]:g}]" if domain else ""
    table = Table(title=f"local Lipschitz constants of {model} on ℓ{result.to_dict()['norm']} balls of radius "
                        f"{radius.text} around {x.shape[0]} inputs of {at}{where}", title_justify="left")
    for col in ("input", "local L", "global L", "local mean L_ij", "global mean L_ij", "ratio", "unstable", "guarantee"):
        table.add_column(col, justify="left" if col == "guarantee" else "right")
    means = result.pairwise_mean()
    for s in range(result.samples):
        ratio = ref.pairwise_mean / float(means[s]) if float(means[s]) > 0 else float("inf")
        table.add_row(str(s), fmt(float(result.global_[s])), fmt(ref.global_), fmt(float(means[s])),
                      fmt(ref.pairwise_mean), f"{ratio:.1f}×", f"{int(result.unstable[s])}/{result.neurons}",
                      f"[{GUARANTEE_STYLE[g]}]{g}[/]")
    console.print(table)
    if detail:
        for s in range(result.samples):
            console.print(f"input {s}: per-class L_i " + ", ".join(fmt(float(v), 4) for v in result.per_class[s]),
                          markup=False, highlight=False)
    console.print(f"time {result.seconds:.2f} s; each local number is min(local recursion, global bound), both sound",
                  markup=False, highlight=False)
