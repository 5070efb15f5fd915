"""The shipped default model (liplt_cli/models/mnist_default.safetensors), trained by `liplt train`.

It was trained on MNIST training images 5848–59999 only, so the embedded sample (training
indices 0–5847) is held-out data for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import liplt_cli

MODEL = Path(liplt_cli.__file__).parent / "models" / "mnist_default.safetensors"


@pytest.mark.skipif(not MODEL.exists(), reason="the shipped model is not built in this checkout")
def test_shipped_model_loads_records_its_training_and_classifies_held_out_data():
    from safetensors import safe_open

    from liplt_cli.data import load_dataset
    from liplt_cli.load import load_model

    with safe_open(str(MODEL), "pt") as fh:
        meta = fh.metadata()
    assert "5848" in meta["training_data"] and "liplt train" in meta["trained_with"]
    graph = load_model(MODEL)
    data = load_dataset("embedded", limit=500)
    with torch.no_grad():
        acc = (graph.evaluate(data.x).argmax(1) == data.y).float().mean().item()
    assert acc > 0.85
