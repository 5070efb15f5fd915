"""The end of a run: the trained model written as ``model.safetensors`` and ``model.onnx``."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from liplt_cli.train.checkpoint import MODEL_ONNX, MODEL_ST
from liplt_cli.train.config import TrainConfig


def _save_safetensors(module: nn.Module, path: Path, arch: str, extra: dict[str, str]) -> None:
    """Weights + architecture description (the loader's format; its writer is atomic)."""
    from liplt_cli.load import save_safetensors

    shape = tuple(int(v) for v in extra["input_shape"].split(","))
    save_safetensors(module, path, arch=arch, extra_metadata=extra, input_shape=shape)


def export_model(
    model: nn.Module, cfg: TrainConfig, input_shape: tuple[int, ...], out: Path, data_description: str
) -> dict[str, str]:
    """Write ``model.safetensors`` (architecture in its metadata) and ``model.onnx`` (opset 17).

    A model with a ``to_plain()`` method (Proposition 2 architectures) is written in its plain
    form: a residual DAG of standard layers (:mod:`liplt_cli.train.prop2_export`)."""
    model = model.eval()
    cpu_model = model.to("cpu")
    # Proposition 2 models are written in their plain form (T folded into standard layers)
    cpu_model = cpu_model.to_plain() if hasattr(cpu_model, "to_plain") else cpu_model
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
