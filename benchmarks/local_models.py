"""The models of the local-certification benchmark (``benchmarks/local.py``), trained when absent.

Both are trained with plain cross-entropy (``liplt train --method none``'s library entry point),
seeded, on real data from ``../shared/data`` (or ``$LIPLT_SHARED_DATA``), and cached under
``runs/benchmark-local/`` (git-ignored), so a second run reuses them:

* ``mnist-mlp``: ``mlp:256,256`` (784-256-256-10, ReLU) on MNIST training images, 10 epochs.
* ``cifar-2c2f``: ``2C2F`` (conv 16,4,2,1 · conv 32,4,2,1 · fc 100 · fc 10, ReLU) on CIFAR-10,
  20 epochs, with the usual CIFAR-10 normalisation (x − mean)/std. Training reads normalised
  pixels; the benchmark puts the same normalisation first in the layer graph
  (``prepend_normalization``), so the certified graph reads raw pixels in [0, 1] and every
  radius is in pixel units.

    python benchmarks/local_models.py            # train what is missing, print the paths
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "benchmark-local"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: str
    arch: str
    epochs: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


SPECS = {
    "mnist-mlp": ModelSpec("mnist-mlp", "mnist", "mlp:256,256", 10),
    "cifar-2c2f": ModelSpec("cifar-2c2f", "cifar10", "2C2F", 20, CIFAR_MEAN, CIFAR_STD),
}


def data_root() -> Path | None:
    from liplt_cli.data.loader import default_data_root

    return default_data_root()


def model_path(spec: ModelSpec) -> Path:
    return RUNS / spec.name / "model.safetensors"


def train_model(spec: ModelSpec, log=print) -> Path:  # noqa: ANN001
    """Train ``spec`` (seed 0, Adam 1e-3, batch 512, plain cross-entropy) unless it is cached."""
    import torch

    from liplt_cli.data import load_dataset
    from liplt_cli.train import loop
    from liplt_cli.train.config import TrainConfig
    from liplt_cli.train.data import split_train_val

    path = model_path(spec)
    if path.is_file():
        return path
    root = data_root()
    if root is None or not (root / spec.dataset).is_dir():
        raise FileNotFoundError(f"no {spec.dataset} data under ../shared/data (or $LIPLT_SHARED_DATA)")
    out = path.parent
    cfg = TrainConfig(
        arch=spec.arch, dataset=spec.dataset, data_dir=str(root / spec.dataset), epochs=spec.epochs,
        method="none", seed=0, out=str(out), sound_validation=False, device="cpu",
    ).validate()
    ds = load_dataset(spec.dataset, split="train", data_dir=cfg.data_dir)
    x = ds.x
    if spec.mean is not None:
        mean = torch.tensor(spec.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - mean) / std
    data = split_train_val(x, ds.y, cfg.val_size, cfg.seed, ds.num_classes, ds.description)
    t0 = time.perf_counter()
    torch.manual_seed(0)

    def on_epoch(rec: dict) -> None:
        log(f"  {spec.name} epoch {rec['epoch']}/{rec['epochs']}: train acc {rec['train_acc']:.4f}, "
            f"val acc {rec['val_acc']:.4f} ({time.perf_counter() - t0:.0f} s)")

    loop.train(cfg, on_epoch=on_epoch, data=data)
    return path


def load_graph(spec: ModelSpec):  # noqa: ANN201
    """The certified layer graph of a trained benchmark model (normalisation first when it has one)."""
    from liplt_cli.graph import prepend_normalization
    from liplt_cli.load import load_model

    graph = load_model(str(model_path(spec)))
    if spec.mean is not None:
        graph = prepend_normalization(graph, list(spec.mean), list(spec.std))
    return graph


if __name__ == "__main__":
    names = sys.argv[1:] or list(SPECS)
    for n in names:
        print(n, train_model(SPECS[n]))
