"""The run folder of a training run: its files, the checkpoint, and the rules that protect it.

A run folder holds ``config.json`` (the full :class:`~liplt_cli.train.config.TrainConfig`),
``metrics.jsonl`` (one :class:`~liplt_cli.train.records.EpochRecord` per line),
``checkpoint.pt`` (model, optimiser, scheduler, RNG states, epoch, power-iteration state and the
records so far; tensors and plain values only, so it is read with ``weights_only=True``) and, at
the end, ``model.safetensors`` and ``model.onnx``.  Every file is replaced atomically (temporary
file + ``os.replace``) and follows the process umask.

Rules (:func:`check_run_folder`): a folder that already holds files is never written into unless
the run is resumed or overwriting was asked for; resuming needs a checkpoint.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liplt_cli.errors import ArgumentError

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL_ST = "model.safetensors"
MODEL_ONNX = "model.onnx"
CONFIG = "config.json"


class ResumeError(ArgumentError):
    """A run cannot be resumed as asked (no or unreadable checkpoint, another model or data)."""


class RunFolderNotEmptyError(ArgumentError):
    """A new run would write into a folder that already holds files (``folder``, the names ``held``)."""

    def __init__(self, folder: Path, held: list[str]) -> None:
        self.folder, self.held = Path(folder), list(held)
        super().__init__(f"the run folder {folder} is not empty ({self.shown()}); resume that run, allow "
                         "overwriting it, or choose another folder")

    def shown(self) -> str:
        """The first few names the folder holds."""
        return ", ".join(self.held[:4]) + (", …" if len(self.held) > 4 else "")


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write into ``out`` when it holds files, unless ``resume`` or ``overwrite``.

    Resuming needs ``out/checkpoint.pt``.  Raises :class:`ArgumentError` naming the folder and
    the rule, before anything is written.
    """
    out = Path(out)
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ResumeError(f"no checkpoint at {out / CHECKPOINT}")
        return
    if overwrite or not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir())
    if held:
        raise RunFolderNotEmptyError(out, held)


def clear_run_files(out: Path) -> None:
    """Remove the files a run writes from ``out`` (an overwritten run leaves no stale checkpoint or
    model behind if the new one stops early); other files in the folder are left alone."""
    for name in (CHECKPOINT, CHECKPOINT + ".tmp", METRICS, CONFIG, MODEL_ST, MODEL_ONNX):
        path = Path(out) / name
        if path.is_file():
            path.unlink()


def read_saved_config(out: Path) -> dict[str, Any]:
    """The configuration a run was started with: ``config.json``, else the checkpoint's copy."""
    path = Path(out) / CONFIG
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"cannot read the run's configuration {path}: {exc}".splitlines()[0]) from None
        if not isinstance(data, dict):
            raise ResumeError(f"the run's configuration {path} is not a JSON object")
        return data
    return dict(load_checkpoint(Path(out) / CHECKPOINT, "cpu").get("config", {}))


def load_checkpoint(path: Path, device: str) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain values only: no pickled code is run)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ResumeError(f"cannot read checkpoint {path}: {exc}".splitlines()[0]) from None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def power_state_dict(state: Any) -> Any:
    """The power-iteration state in a form a checkpoint holds."""
    if state is None:
        return None
    if hasattr(state, "state_dict"):
        return {"kind": "state_dict", "value": state.state_dict()}
    return {"kind": "raw", "value": state}


def restore_power_state(saved: Any, fresh: Any) -> Any:
    """Rebuild the power-iteration state from a checkpoint (``fresh``: a state of the same graph)."""
    if saved is None:
        return None
    if saved["kind"] == "state_dict" and fresh is not None and hasattr(fresh, "load_state_dict"):
        fresh.load_state_dict(saved["value"])
        return fresh
    return saved["value"]


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values, so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_py],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_py = s["python"]
    random.setstate((version, tuple(internal), gauss_py))
