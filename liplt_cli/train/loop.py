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
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from liplt_cli.errors import ArgumentError, DataError
from liplt_cli.train.archs import build_arch
from liplt_cli.train.config import TrainConfig
from liplt_cli.train.data import TrainData, augment, split_train_val
from liplt_cli.train.loss import crm_loss, hard_radius

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL_ST = "model.safetensors"
MODEL_ONNX = "model.onnx"
CONFIG = "config.json"

EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[int, int, int], None]  # (epoch, step done, steps in epoch)


@dataclass
class TrainResult:
    """What a run produced: per-epoch records, files written, timings."""

    config: TrainConfig
    records: list[dict[str, Any]]
    out_dir: Path
    data_description: str
    embedded_data: bool
    seconds: float
    resumed_from_epoch: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    model: nn.Module | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "records": self.records,
            "out_dir": str(self.out_dir),
            "data": self.data_description,
            "embedded_data": self.embedded_data,
            "seconds": self.seconds,
            "resumed_from_epoch": self.resumed_from_epoch,
            "files": dict(self.files),
            "final": self.records[-1] if self.records else None,
        }


# --- engine / loader entry points (module-level so tests can substitute a stand-in) ---------

def _graph_from_module(module: nn.Module, input_shape: tuple[int, ...]) -> Any:
    from liplt_cli.load import graph_from_module

    return graph_from_module(module, input_shape)


def _pairwise(graph: Any, method: str, state: Any, iterations: int, through: bool = False) -> tuple[torch.Tensor, Any]:
    from liplt_cli.lipschitz import pairwise_bound_tensor

    return pairwise_bound_tensor(graph, method=method, state=state, iterations=iterations, through_iterations=through)


def _sound_pairwise(graph: Any) -> torch.Tensor:
    """Sound pairwise LipLT constants of the current weights (every entry exact or an upper bound)."""
    from liplt_cli.lipschitz import compute_bounds

    result = compute_bounds(graph, norm=2.0, methods=("liplt",), fast=False)
    return torch.tensor(result.methods["liplt"].pairwise, dtype=torch.float64)


def _save_safetensors(module: nn.Module, path: Path, arch: str, extra: dict[str, str]) -> None:
    """Weights + architecture description (the loader's format; its writer is atomic)."""
    from liplt_cli.load import save_safetensors

    shape = tuple(int(v) for v in extra["input_shape"].split(","))
    save_safetensors(module, path, arch=arch, extra_metadata=extra, input_shape=shape)


# --- data -----------------------------------------------------------------------------------

def prepare_data(cfg: TrainConfig) -> TrainData:
    """Load the training split named by ``cfg`` and hold out the validation samples."""
    from liplt_cli.data import load_dataset

    name = cfg.dataset
    embedded = False
    if cfg.data_dir is None and name.lower() in ("mnist", "embedded"):
        name, embedded = "embedded", True
    indices = None
    if cfg.train_indices is not None:
        start, stop = cfg.train_indices
        indices = range(start, stop)
    ds = load_dataset(name, split="train", data_dir=cfg.data_dir, limit=cfg.limit, indices=indices)
    if len(ds) == 0:
        raise DataError(f"no training samples in {ds.description}")
    desc = ds.description
    if indices is not None:
        desc += f" (training indices {indices.start}–{indices.stop - 1})"
    return split_train_val(ds.x, ds.y, validation_count(cfg, len(ds)), cfg.seed, ds.num_classes, desc, embedded)


def validation_count(cfg: TrainConfig, n: int) -> int:
    """Held-out samples out of ``n``: ``val_size`` when set, else what a ``1 − val_fraction``
    training share leaves (the reference's split: ``n − int(n · 0.9)``, 6,000 of MNIST's 60,000)."""
    if cfg.val_size is not None:
        return int(cfg.val_size)
    return n - int(n * (1.0 - cfg.val_fraction))


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


def resolve_train_device(device: str) -> str:
    """``auto`` → cuda (this rank's GPU under torchrun) when present, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ArgumentError("--device cuda was asked for but no CUDA device is available")
        if device == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    elif device != "cpu":
        raise ArgumentError(f"unknown device '{device}'; use auto, cpu or cuda")
    return device


# --- checkpoints ----------------------------------------------------------------------------

def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _state_dict_of(state: Any) -> Any:
    if state is None:
        return None
    if hasattr(state, "state_dict"):
        return {"kind": "state_dict", "value": state.state_dict()}
    return {"kind": "raw", "value": state}


def _restore_state(saved: Any, fresh: Any) -> Any:
    """Rebuild the power-iteration state from a checkpoint (``fresh``: a state of the same graph)."""
    if saved is None:
        return None
    if saved["kind"] == "state_dict" and fresh is not None and hasattr(fresh, "load_state_dict"):
        fresh.load_state_dict(saved["value"])
        return fresh
    return saved["value"]


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values, so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_py],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_py = s["python"]
    random.setstate((version, tuple(internal), gauss_py))


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: ``constant``, ``cosine`` (to 0 at the last epoch) or
    ``exponential`` (the reference's exponential decay with stopping, :meth:`TrainConfig.lr_factor_at`)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cfg.lr_factor_at(e))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


# --- evaluation -----------------------------------------------------------------------------

@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, device: str, batch: int = 1024) -> torch.Tensor:
    out = [model(x[i : i + batch].to(device)).float().cpu() for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0)


def certified_accuracy(logits: torch.Tensor, labels: torch.Tensor, lip: torch.Tensor, eps: float) -> float:
    r"""Share of samples correctly classified with :math:`\min_{i\ne y}(z_y-z_i)/L_{yi} > ε` (eq. 4)."""
    if labels.numel() == 0:
        return math.nan
    lip = lip.to(logits.dtype).clone()
    lip.fill_diagonal_(1.0)
    r = hard_radius(logits, labels, lip)
    ok = (logits.argmax(1) == labels) & (r > eps)
    return float(ok.float().mean())


def _mean_offdiag(lip: torch.Tensor) -> float:
    k = lip.shape[0]
    mask = ~torch.eye(k, dtype=torch.bool)
    return float(lip.detach().cpu()[mask].mean())


# --- the loop -------------------------------------------------------------------------------

def train(
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    resume: bool = False,
    data: TrainData | None = None,
) -> TrainResult:
    """Train ``cfg.arch`` with the CRM loss; returns a :class:`TrainResult` (never prints).

    ``data`` overrides :func:`prepare_data` (tests). ``resume`` continues from
    ``<out>/checkpoint.pt`` with the exact model, optimiser, scheduler, RNG and
    power-iteration state, so 2 epochs equal 1 epoch + resume + 1 epoch.
    """
    cfg.validate()
    t_start = time.perf_counter()
    device = resolve_train_device(cfg.device)
    rank, world, we_init = _dist_setup(device)
    try:
        return _train(cfg, device, rank, world, on_epoch, on_step, resume, data, t_start)
    finally:
        if we_init:
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig,
    device: str,
    rank: int,
    world: int,
    on_epoch: EpochCallback | None,
    on_step: StepCallback | None,
    resume: bool,
    data: TrainData | None,
    t_start: float,
) -> TrainResult:
    out = Path(cfg.out)
    main_rank = rank == 0
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():
        raise ArgumentError(f"--resume: no checkpoint at {ckpt_path}")
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    data = data if data is not None else prepare_data(cfg)
    input_shape = data.input_shape
    model = build_arch(cfg.arch, input_shape, data.num_classes, cfg.activation, cfg.input_mean, cfg.input_std).to(device)
    graph = _graph_from_module(model, input_shape) if cfg.method != "none" or cfg.sound_validation else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg)
    state: Any = None
    start_epoch = 0
    records: list[dict[str, Any]] = []
    resumed_from: int | None = None

    if resume:
        try:  # tensors and plain values only: no pickled code is run
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise ArgumentError(f"--resume: cannot read checkpoint {ckpt_path}: {exc}".splitlines()[0]) from None
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError:
            saved = ckpt.get("config", {}).get("arch", "?")
            raise ArgumentError(
                f"--resume: the checkpoint in {out} holds a different model (arch {saved}) than --arch {cfg.arch}"
            ) from None
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("power_state") is not None and graph is not None and cfg.method != "none":
            fresh = None
            if ckpt["power_state"]["kind"] == "state_dict":
                _, fresh = _pairwise(graph, cfg.method, None, 1)  # a state of the right layout
            state = _restore_state(ckpt["power_state"], fresh)
        _set_rng_state(ckpt["rng"])
        start_epoch = int(ckpt["epoch"]) + 1
        records = list(ckpt.get("records", []))
        resumed_from = int(ckpt["epoch"])

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[torch.device(device)] if device.startswith("cuda") else None)

    from torch.utils.data import DistributedSampler, TensorDataset

    n_train = int(data.y_train.shape[0])
    sampler = DistributedSampler(
        TensorDataset(torch.arange(n_train)), num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed
    )
    local_batch = max(1, cfg.batch_size // world)
    if main_rank:
        (out / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        # on resume the file is rewritten from the checkpoint's records, so an epoch that ran
        # after the last checkpoint (a crash between the two writes) is not listed twice
        with open(out / METRICS, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)

    for epoch in range(start_epoch, cfg.epochs):
        lam, cutoff = cfg.lam_at(epoch), cfg.cutoff_at(epoch)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        steps = math.ceil(len(order) / local_batch)
        model.train()
        sums = {"lr": opt.param_groups[0]["lr"], "loss": 0.0, "ce": 0.0, "robust": 0.0, "active": 0, "correct": 0, "seen": 0,
                "lip_seconds": 0.0, "lip_mean": 0.0, "radius": 0.0, "radius_n": 0}
        t_epoch = time.perf_counter()
        lip = None
        for step in range(steps):
            idx = order[step * local_batch : (step + 1) * local_batch]
            xb = data.x_train[idx].to(device, non_blocking=True)
            yb = data.y_train[idx].to(device, non_blocking=True)
            xb = augment(xb, cfg.augment_flip, cfg.augment_rotate, cfg.augment_translate, cfg.augment_fill)
            logits = net(xb)
            lip = None
            if cfg.method != "none":
                t_l = time.perf_counter()
                if lam > 0:
                    through = cfg.power_gradient == "iterations"
                    lip, state = _pairwise(graph, cfg.method, state, cfg.power_iterations, through)
                else:  # warm-up: keep the power vectors warm and log L_ij, no gradient needed
                    with torch.no_grad():
                        lip, state = _pairwise(graph, cfg.method, state, cfg.power_iterations)
                sums["lip_seconds"] += time.perf_counter() - t_l
            terms = crm_loss(
                logits, yb, lip if lam > 0 else None, lam, cfg.temperature, cutoff, cfg.g, cfg.robust_normalisation
            )
            if not torch.isfinite(terms.total):
                raise ArgumentError(
                    f"training diverged: the loss is {float(terms.total)} at epoch {epoch + 1}, step {step + 1}; "
                    "lower --lr or --lam, or raise --temperature"
                )
            opt.zero_grad(set_to_none=True)
            terms.total.backward()
            opt.step()
            nb = int(yb.shape[0])
            sums["loss"] += float(terms.total.detach()) * nb
            sums["ce"] += float(terms.ce.detach()) * nb
            sums["robust"] += float(terms.robust.detach()) * nb
            sums["active"] += terms.active
            sums["correct"] += terms.correct
            sums["seen"] += nb
            if lip is not None:
                sums["lip_mean"] += _mean_offdiag(lip) * nb
                with torch.no_grad():
                    r = hard_radius(logits.detach(), yb, lip.detach().clone().fill_diagonal_(1.0))
                    ok = logits.detach().argmax(1) == yb
                    sums["radius"] += float(r[ok].sum())
                    sums["radius_n"] += int(ok.sum())
            if on_step is not None and main_rank:
                on_step(epoch, step + 1, steps)
        sched.step()
        train_seconds = time.perf_counter() - t_epoch

        record = _epoch_record(cfg, epoch, lam, cutoff, sums, train_seconds, world)
        if main_rank:
            record.update(_validate(cfg, model, graph, data, device, lip) if cfg.validates_at(epoch) else _NO_VALIDATION)
            record["seconds_total"] = time.perf_counter() - t_start
            records.append(record)
            with open(out / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(),
                    "epoch": epoch,
                    "power_state": _state_dict_of(state),
                    "config": cfg.to_dict(),
                    "records": records,
                },
                ckpt_path,
            )
            if on_epoch is not None:
                on_epoch(record)
        if world > 1:
            dist.barrier()

    files: dict[str, str] = {}
    if main_rank:
        files = export_model(model, cfg, input_shape, out, data.description)
        files["checkpoint"] = str(ckpt_path)
        files["metrics"] = str(out / METRICS)
        files["config"] = str(out / CONFIG)
    return TrainResult(
        cfg, records, out, data.description, data.embedded, time.perf_counter() - t_start, resumed_from, files, model
    )


def _epoch_record(
    cfg: TrainConfig, epoch: int, lam: float, cutoff: float, s: dict[str, Any], seconds: float, world: int
) -> dict[str, Any]:
    seen = max(1, s["seen"])
    rec: dict[str, Any] = {
        "epoch": epoch + 1,
        "epochs": cfg.epochs,
        "lam": lam,
        "cutoff": cutoff,
        "lr": s["lr"],
        "loss": s["loss"] / seen,
        "ce": s["ce"] / seen,
        "robust": s["robust"] / seen,
        "active_fraction": s["active"] / seen,
        "train_acc": s["correct"] / seen,
        "train_mean_radius": s["radius"] / s["radius_n"] if s["radius_n"] else None,
        "mean_lij_estimate": s["lip_mean"] / seen if cfg.method != "none" else None,
        "train_seconds": seconds,
        "lip_seconds": s["lip_seconds"],
        "samples_rank0": s["seen"],
        "world_size": world,
    }
    return rec


_NO_VALIDATION: dict[str, Any] = {
    "val_samples": None, "val_acc": None, "val_certified": None, "mean_lij": None, "certified_source": None,
    "val_seconds": 0.0,
}


def _validate(
    cfg: TrainConfig, model: nn.Module, graph: Any, data: TrainData, device: str, lip_train: torch.Tensor | None
) -> dict[str, Any]:
    """Validation clean accuracy, certified accuracy at cfg.eps and the mean L_ij used for it."""
    model.eval()
    t0 = time.perf_counter()
    logits = _logits(model, data.x_val, device).double()
    y = data.y_val
    rec: dict[str, Any] = {"val_samples": int(y.numel())}
    rec["val_acc"] = float((logits.argmax(1) == y).float().mean()) if y.numel() else math.nan
    lip = None
    source = None
    if cfg.sound_validation and graph is not None:
        with torch.no_grad():
            lip = _sound_pairwise(graph)
        source = "sound liplt (compute_bounds)"
    elif lip_train is not None:
        lip = lip_train.detach().double().cpu()
        source = f"estimate ({cfg.method}, training power iteration)"
    if lip is not None:
        rec["val_certified"] = certified_accuracy(logits, y, lip, cfg.eps)
        rec["mean_lij"] = _mean_offdiag(lip)
    else:
        rec["val_certified"] = None
        rec["mean_lij"] = None
    rec["certified_source"] = source
    rec["val_seconds"] = time.perf_counter() - t0
    model.train()
    return rec


def export_model(
    model: nn.Module, cfg: TrainConfig, input_shape: tuple[int, ...], out: Path, data_description: str
) -> dict[str, str]:
    """Write ``model.safetensors`` (architecture in its metadata) and ``model.onnx`` (opset 17)."""
    model = model.eval()
    cpu_model = model.to("cpu")
    st_path, onnx_path = out / MODEL_ST, out / MODEL_ONNX
    extra = {
        "activation": cfg.activation,
        "input_shape": ",".join(str(v) for v in input_shape),
        "trained_with": f"liplt train (CRM, method={cfg.method}, lam={cfg.lam}, t={cfg.temperature}, "
        f"cutoff={cfg.cutoff}, g={cfg.g}, epochs={cfg.epochs}, eps={cfg.eps})",
        "training_data": data_description,
    }
    _save_safetensors(cpu_model, st_path, _arch_spec(cfg), extra)
    dummy = torch.zeros(1, *input_shape)
    tmp = onnx_path.with_name(onnx_path.name + ".tmp")
    torch.onnx.export(
        cpu_model, (dummy,), str(tmp), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    os.replace(tmp, onnx_path)
    return {"safetensors": str(st_path), "onnx": str(onnx_path)}


def _arch_spec(cfg: TrainConfig) -> str:
    return cfg.arch
