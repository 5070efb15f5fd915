"""A short CRM run with the real engine, pinned bit for bit (the numbers were recorded before the
training loop was split into named steps and eq. 4 was written once; they must not move)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liplt_cli.train import loop
from liplt_cli.train.config import TrainConfig
from liplt_cli.train.data import split_train_val

PINNED = json.loads((Path(__file__).parent / "fixtures" / "train_records_pinned.json").read_text())
KEYS = ("lam", "lr", "loss", "ce", "robust", "active_fraction", "train_acc", "train_mean_radius",
        "mean_lij_estimate", "val_acc", "val_certified", "mean_lij")
RUNS = {"liplt": dict(method="liplt"),
        "naive_hinge": dict(method="naive", g="hinge", lr_schedule="cosine", val_every=1)}


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 6, 6, generator=g)
    q = torch.stack([x[:, 0, :3, :3].mean((1, 2)), x[:, 0, :3, 3:].mean((1, 2)),
                     x[:, 0, 3:, :3].mean((1, 2)), x[:, 0, 3:, 3:].mean((1, 2))], 1)
    return split_train_val(x, q.argmax(1), val_size=16, seed=0, num_classes=4, description="synthetic quadrants")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_training_records_are_pinned(tmp_path, name, single_thread):
    cfg = TrainConfig(arch="mlp:12", dataset="synthetic", epochs=3, batch_size=32, lr=1e-2, lam=1.0, cutoff=5.0,
                      warmup_epochs=1, power_iterations=2, eps=0.01, val_size=16, device="cpu",
                      out=str(tmp_path / name), **RUNS[name]).validate()
    records = loop.train(cfg, data=_data()).records
    got = [{k: (None if r[k] is None else float(r[k]).hex()) for k in KEYS} for r in records]
    assert got == PINNED[name]
