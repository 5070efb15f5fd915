r"""CRM training loop (section 2 of the paper) as a library function.

Each optimisation step computes the logits of a batch and the K×K matrix of pairwise Lipschitz
constants :math:`L_{yi}` of the *current* weights with
``pairwise_bound_tensor(graph, method, state=state, iterations=n)`` (LipLT or naive), on a layer
graph built once with ``graph_from_module`` that shares the model's parameter tensors, so the
matrix is differentiable in the weights and the optimiser's in-place updates are seen by the
graph. The power-iteration vectors are warm-started from the previous step (``state``); the
gradient flows through that step's iterations (``power_gradient="iterations"``, as the reference
code does) or only through the last product (``"final"``). The loss is
:func:`liplt_cli.train.loss.crm_loss` (eq. 6).

At the end of the first epoch, of every ``val_every``-th after it and of the last (the
reference validates every 5 epochs): clean accuracy and certified accuracy at the training ε on
the held-out validation split — certified means correctly classified with
:math:`\min_{i\ne y}(z_y - z_i)/L_{yi} > ε` (eq. 4) using the *sound* pairwise LipLT constants of
``compute_bounds`` (``sound_validation=True``) or the training estimate, labelled as such; other
epochs leave these fields ``None``. Every epoch a record goes to the callback and to
``metrics.jsonl``; a checkpoint (model, optimiser, scheduler,
RNG states, epoch, power-iteration state) is written atomically (temporary file + ``os.replace``).
At the end the model is written as ``model.safetensors`` (architecture in the metadata) and
``model.onnx``.

Multi-process (``torchrun``): when ``WORLD_SIZE > 1`` the process group is initialised from the
environment (gloo on CPU, nccl on CUDA), the model is wrapped in ``DistributedDataParallel``,
each rank reads its shard through ``DistributedSampler``, the global batch is split across
ranks, and only rank 0 writes files or calls the callback.

The run is a sequence of named steps: :func:`_seed`, :func:`_build` (model, layer graph,
optimiser, schedule), :func:`_resume` (from the checkpoint), then per epoch :func:`_train_epoch`
(its optimisation steps, :func:`_step`), :func:`_validate` and :func:`_checkpoint`, and at the end
:func:`export_model`.  Each epoch yields a frozen :class:`~liplt_cli.train.records.EpochRecord`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from liplt_cli.device import resolve_device
from liplt_cli.errors import ArgumentError
from liplt_cli.radius import certified_accuracy, certified_radius
from liplt_cli.train.archs import build_arch
from liplt_cli.train.checkpoint import (
    CHECKPOINT, CONFIG, METRICS, MODEL_ONNX, MODEL_ST, ResumeError, atomic_torch_save, check_run_folder, clear_run_files,
    load_checkpoint, power_state_dict, restore_power_state, rng_state, set_rng_state, write_text_atomically,
)
from liplt_cli.train.config import TrainConfig
from liplt_cli.train.data import TrainData, augment, prepare_data, validation_count
from liplt_cli.train.export import export_model
from liplt_cli.train.loss import crm_loss
from liplt_cli.train.records import EpochRecord, StepTotals, TrainResult, Validation

__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "MODEL_ONNX", "MODEL_ST", "EpochRecord", "TrainResult", "export_model",
           "prepare_data", "train", "validation_count"]

EpochCallback = Callable[[EpochRecord], None]
StepCallback = Callable[[int, int, int], None]  # (epoch, step done, steps in epoch)


# --- engine / loader entry points (module-level so tests can substitute a stand-in) ---------

def _graph_from_module(module: nn.Module, input_shape: tuple[int, ...]) -> Any:
    from liplt_cli.load import graph_from_module

    graph = graph_from_module(module, input_shape)
    # Proposition 2 models: constants from the layer structure (train/prop2_training.py)
    return module.training_bound(graph) if hasattr(module, "training_bound") else graph


def _pairwise(graph: Any, method: str, state: Any, iterations: int, through: bool = False) -> tuple[torch.Tensor, Any]:
    from liplt_cli.lipschitz import pairwise_bound_tensor

    if hasattr(graph, "pairwise_bound"):
        return graph.pairwise_bound(method, state, iterations, through)
    return pairwise_bound_tensor(graph, method=method, state=state, iterations=iterations, through_iterations=through)


def _sound_pairwise(graph: Any) -> torch.Tensor:
    """Sound pairwise LipLT constants of the current weights (every entry exact or an upper bound)."""
    from liplt_cli.lipschitz import EngineOptions, compute_bounds

    graph = getattr(graph, "layer_graph", graph)
    result = compute_bounds(graph, EngineOptions(norm=2.0, fast=False), methods=("liplt",))
    return torch.tensor(result.methods["liplt"].pairwise, dtype=torch.float64)


# --- distributed ----------------------------------------------------------------------------

def _dist_setup(device: str) -> tuple[int, int, bool]:
    """(rank, world, we_initialised) from torchrun's environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), True


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: ``constant``, ``cosine`` (to 0 at the last epoch) or
    ``exponential`` (the reference's exponential decay with stopping, :meth:`TrainConfig.lr_factor_at`)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cfg.lr_factor_at(e))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


# --- the run --------------------------------------------------------------------------------

@dataclass
class _Run:
    """The state of one run between its steps (model, optimiser, power-iteration state, records)."""

    cfg: TrainConfig
    device: str
    rank: int
    world: int
    t_start: float
    model: nn.Module
    graph: Any
    opt: torch.optim.Optimizer
    sched: Any
    state: Any = None
    start_epoch: int = 0
    records: list[EpochRecord] = field(default_factory=list)
    resumed_from: int | None = None
    net: nn.Module | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def main_rank(self) -> bool:
        return self.rank == 0


def train(
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    resume: bool = False,
    data: TrainData | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg.arch`` with the CRM loss; returns a :class:`TrainResult` (never prints).

    ``data`` overrides :func:`prepare_data` (tests). ``resume`` continues from
    ``<out>/checkpoint.pt`` with the exact model, optimiser, scheduler, RNG and
    power-iteration state, so 2 epochs equal 1 epoch + resume + 1 epoch.  A new run refuses a
    folder that already holds files unless ``overwrite`` (:func:`~.checkpoint.check_run_folder`).
    """
    cfg.validate()
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    rank, world, we_init = _dist_setup(device)
    try:
        return _train(cfg, device, rank, world, on_epoch, on_step, resume, overwrite, data, t_start)
    finally:
        if we_init:
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig, device: str, rank: int, world: int, on_epoch: EpochCallback | None,
    on_step: StepCallback | None, resume: bool, overwrite: bool, data: TrainData | None, t_start: float,
) -> TrainResult:
    """The named steps in order: folder, seeding, data, build, resume, files, epochs, export."""
    out = Path(cfg.out)
    if rank == 0:
        check_run_folder(out, resume, overwrite)
        out.mkdir(parents=True, exist_ok=True)
        if overwrite and not resume:
            clear_run_files(out)
    elif resume and not (out / CHECKPOINT).is_file():
        raise ResumeError(f"no checkpoint at {out / CHECKPOINT}")
    _seed(cfg.seed)
    data = data if data is not None else prepare_data(cfg)
    run = _build(cfg, data, device, rank, world, t_start)
    if resume:
        _resume(run, out / CHECKPOINT)
    run.net = _distributed(run.model, device, world)
    sampler = _sampler(data, cfg.seed, rank, world)
    if run.main_rank:
        _start_files(run)
    for epoch in range(run.start_epoch, cfg.epochs):
        record, lip = _train_epoch(run, data, sampler, epoch, on_step)
        if run.main_rank:
            validation = _validate(cfg, run.model, run.graph, data, device, lip) if cfg.validates_at(epoch) else Validation()
            record = record.with_validation(validation, time.perf_counter() - t_start)
            run.records.append(record)
            _checkpoint(run, epoch, record)
            if on_epoch is not None:
                on_epoch(record)
        if world > 1:
            dist.barrier()
    files: dict[str, str] = {}
    if run.main_rank:
        files = export_model(run.model, cfg, data.input_shape, out, data.description)
        files.update(checkpoint=str(out / CHECKPOINT), metrics=str(out / METRICS), config=str(out / CONFIG))
    return TrainResult(cfg, run.records, out, data.description, data.embedded, time.perf_counter() - t_start,
                       run.resumed_from, files, run.model)


def _seed(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` (weights, sampling and augmentation follow)."""
    import random

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _build(cfg: TrainConfig, data: TrainData, device: str, rank: int, world: int, t_start: float) -> _Run:
    """The model of ``cfg.arch``, its layer graph (sharing the parameters), Adam and the lr schedule."""
    shape = data.input_shape
    model = build_arch(cfg.arch, shape, data.num_classes, cfg.activation, cfg.input_mean, cfg.input_std).to(device)
    graph = _graph_from_module(model, shape) if cfg.method != "none" or cfg.sound_validation else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    return _Run(cfg, device, rank, world, t_start, model, graph, opt, _make_scheduler(opt, cfg))


def _resume(run: _Run, path: Path) -> None:
    """Load model, optimiser, schedule, power-iteration state, RNG states and records from ``path``."""
    cfg = run.cfg
    ckpt = load_checkpoint(path, run.device)
    try:
        run.model.load_state_dict(ckpt["model"])
    except RuntimeError:
        saved = ckpt.get("config", {}).get("arch", "?")
        raise ResumeError(
            f"the checkpoint in {path.parent} holds a different model (arch {saved}) than arch {cfg.arch}"
        ) from None
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    if ckpt.get("power_state") is not None and run.graph is not None and cfg.method != "none":
        fresh = None
        if ckpt["power_state"]["kind"] == "state_dict":
            _, fresh = _pairwise(run.graph, cfg.method, None, 1)  # a state of the right layout
        run.state = restore_power_state(ckpt["power_state"], fresh)
    set_rng_state(ckpt["rng"])
    run.start_epoch = int(ckpt["epoch"]) + 1
    run.records = [EpochRecord.from_dict(r) for r in ckpt.get("records", [])]
    run.resumed_from = int(ckpt["epoch"])


def _distributed(model: nn.Module, device: str, world: int) -> nn.Module:
    """``model`` itself, or wrapped in ``DistributedDataParallel`` under torchrun."""
    if world <= 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[torch.device(device)] if device.startswith("cuda") else None)


def _sampler(data: TrainData, seed: int, rank: int, world: int) -> Any:
    """This rank's shuffled shard of the training indices (``set_epoch`` reshuffles)."""
    from torch.utils.data import DistributedSampler, TensorDataset

    n_train = int(data.y_train.shape[0])
    return DistributedSampler(TensorDataset(torch.arange(n_train)), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def _start_files(run: _Run) -> None:
    """Write ``config.json`` and ``metrics.jsonl`` (on resume rewritten from the checkpoint's
    records, so an epoch that ran after the last checkpoint is not listed twice)."""
    write_text_atomically(run.out / CONFIG, json.dumps(run.cfg.to_dict(), indent=2) + "\n")
    write_text_atomically(run.out / METRICS, "".join(json.dumps(r.to_dict()) + "\n" for r in run.records))


def _train_epoch(
    run: _Run, data: TrainData, sampler: Any, epoch: int, on_step: StepCallback | None
) -> tuple[EpochRecord, torch.Tensor | None]:
    """One pass over this rank's shard; returns the record's training half and the last L_ij."""
    cfg = run.cfg
    lam, cutoff = cfg.lam_at(epoch), cfg.cutoff_at(epoch)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    local_batch = max(1, cfg.batch_size // run.world)
    steps = math.ceil(len(order) / local_batch)
    run.model.train()
    totals = StepTotals(lr=run.opt.param_groups[0]["lr"])
    t_epoch = time.perf_counter()
    lip = None
    for step in range(steps):
        idx = order[step * local_batch : (step + 1) * local_batch]
        lip = _step(run, data.x_train[idx], data.y_train[idx], lam, cutoff, totals, (epoch, step))
        if on_step is not None and run.main_rank:
            on_step(epoch, step + 1, steps)
    run.sched.step()
    record = EpochRecord.from_totals(epoch, cfg.epochs, lam, cutoff, totals, time.perf_counter() - t_epoch,
                                     run.world, cfg.method != "none")
    return record, lip


def _step(
    run: _Run, x: torch.Tensor, y: torch.Tensor, lam: float, cutoff: float, totals: StepTotals, where: tuple[int, int]
) -> torch.Tensor | None:
    """One optimisation step of eq. 6 on a batch; adds its terms to ``totals``; returns its L_ij."""
    cfg, device = run.cfg, run.device
    xb = x.to(device, non_blocking=True)
    yb = y.to(device, non_blocking=True)
    xb = augment(xb, cfg.augment_flip, cfg.augment_rotate, cfg.augment_translate, cfg.augment_fill)
    logits = run.net(xb)
    lip = None
    if cfg.method != "none":
        t_l = time.perf_counter()
        if lam > 0:
            through = cfg.power_gradient == "iterations"
            lip, run.state = _pairwise(run.graph, cfg.method, run.state, cfg.power_iterations, through)
        else:  # warm-up: keep the power vectors warm and log L_ij, no gradient needed
            with torch.no_grad():
                lip, run.state = _pairwise(run.graph, cfg.method, run.state, cfg.power_iterations)
        totals.lip_seconds += time.perf_counter() - t_l
    terms = crm_loss(logits, yb, lip if lam > 0 else None, lam, cfg.temperature, cutoff, cfg.g, cfg.robust_normalisation)
    if not torch.isfinite(terms.total):
        raise ArgumentError(
            f"training diverged: the loss is {float(terms.total)} at epoch {where[0] + 1}, step {where[1] + 1}; "
            "lower the learning rate or λ, or raise the temperature"
        )
    run.opt.zero_grad(set_to_none=True)
    terms.total.backward()
    run.opt.step()
    nb = int(yb.shape[0])
    totals.loss += float(terms.total.detach()) * nb
    totals.ce += float(terms.ce.detach()) * nb
    totals.robust += float(terms.robust.detach()) * nb
    totals.active += terms.active
    totals.correct += terms.correct
    totals.seen += nb
    if lip is not None:
        totals.lip_mean += _mean_offdiag(lip) * nb
        with torch.no_grad():
            r = certified_radius(logits.detach(), yb, lip.detach())
            ok = logits.detach().argmax(1) == yb
            totals.radius += float(r[ok].sum())
            totals.radius_n += int(ok.sum())
    return lip


def _checkpoint(run: _Run, epoch: int, record: EpochRecord) -> None:
    """Append ``record`` to ``metrics.jsonl`` and replace the checkpoint (atomically)."""
    with open(run.out / METRICS, "a") as fh:
        fh.write(json.dumps(record.to_dict()) + "\n")
    atomic_torch_save(
        {
            "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "power_state": power_state_dict(run.state),
            "config": run.cfg.to_dict(),
            "records": [r.to_dict() for r in run.records],
        },
        run.out / CHECKPOINT,
    )


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, device: str, batch: int = 1024) -> torch.Tensor:
    out = [model(x[i : i + batch].to(device)).float().cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0)


def _mean_offdiag(lip: torch.Tensor) -> float:
    k = lip.shape[0]
    mask = ~torch.eye(k, dtype=torch.bool)
    return float(lip.detach().cpu()[mask].mean())


def _validate(
    cfg: TrainConfig, model: nn.Module, graph: Any, data: TrainData, device: str, lip_train: torch.Tensor | None
) -> Validation:
    """Validation clean accuracy, certified accuracy at cfg.eps (eq. 4) and the mean L_ij used for it."""
    model.eval()
    t0 = time.perf_counter()
    logits = _logits(model, data.x_val, device).double()
    y = data.y_val
    acc = float((logits.argmax(1) == y).float().mean()) if y.numel() else math.nan
    lip, source = None, None
    if cfg.sound_validation and graph is not None:
        with torch.no_grad():
            lip = _sound_pairwise(graph)
        source = "sound liplt (compute_bounds)"
    elif lip_train is not None:
        lip = lip_train.detach().double().cpu()
        source = f"estimate ({cfg.method}, training power iteration)"
    certified = mean_lij = None
    if lip is not None:
        certified = certified_accuracy(certified_radius(logits, y, lip), [cfg.eps])[0]
        mean_lij = _mean_offdiag(lip)
    model.train()
    return Validation(int(y.numel()), acc, certified, mean_lij, source, time.perf_counter() - t0)
