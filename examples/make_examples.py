"""Build the small example models in this folder and export them to ONNX.

Run from the repository root (rewrites the .onnx files next to this script)::

    python examples/make_examples.py

Every model has random weights from a fixed seed (they are for ``liplt inspect`` / ``bound`` and
the loader tests, not for accuracy), and is exported with torch's TorchScript-based exporter
(``dynamo=False``, opset 17) on a batch-1 input:

* ``mlp_relu.onnx``         784 → 128 → 64 → 10, ReLU (Flatten + Gemm);
* ``mlp_tanh_sigmoid.onnx`` 784 → 64 (Tanh) → 32 (Sigmoid) → 10;
* ``conv_stride_pad.onnx``  convolutions with stride 1/2 and padding 0/1, ReLU, Flatten, Gemm;
* ``norm_batchnorm.onnx``   (x − 0.1307)/0.3081 inside the model (Sub/Div), Conv + BatchNorm,
  Linear + BatchNorm1d (exported with constant folding off so BatchNormalization stays a node);
* ``residual.onnx``         a stem conv and two residual blocks ``relu(x + bn(conv(relu(bn(conv(x))))))``
  with BatchNorm and Add, then GlobalAveragePool and a dense layer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
OPSET = 17


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial statistics so that they are not identities."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


def build_models() -> dict[str, tuple[nn.Module, tuple[int, ...], bool]]:
    """name → (model, per-sample input shape, constant folding on export)."""
    models: dict[str, tuple[nn.Module, tuple[int, ...], bool]] = {}
    torch.manual_seed(1)
    models["mlp_relu"] = (
        nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)),
        (1, 28, 28), True,
    )
    torch.manual_seed(2)
    models["mlp_tanh_sigmoid"] = (
        nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(), nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10)),
        (1, 28, 28), True,
    )
    torch.manual_seed(3)
    models["conv_stride_pad"] = (
        nn.Sequential(
            nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, 2, 0), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
        ),
        (1, 28, 28), True,
    )
    torch.manual_seed(4)
    models["norm_batchnorm"] = (
        nn.Sequential(
            Normalize(0.1307, 0.3081),
            nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10),
        ),
        (1, 28, 28), False,
    )
    torch.manual_seed(5)
    models["residual"] = (
        nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            Block(16), Block(16),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        ),
        (3, 32, 32), False,
    )
    gen = torch.Generator().manual_seed(6)
    for model, _, _ in models.values():
        _randomise_batchnorm(model, gen)
        model.eval()
    return models


def export(model: nn.Module, shape: tuple[int, ...], path: Path, constant_folding: bool = True) -> None:
    """Export with the TorchScript-based exporter at opset 17 (batch axis 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, *shape),), str(path), dynamo=False, opset_version=OPSET,
            do_constant_folding=constant_folding, input_names=["input"], output_names=["logits"],
        )


def main() -> None:
    for name, (model, shape, folding) in build_models().items():
        path = HERE / f"{name}.onnx"
        export(model, shape, path, folding)
        print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1024:.0f} KiB, input {list(shape)})")


if __name__ == "__main__":
    main()
