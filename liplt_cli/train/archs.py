"""Architectures of the paper (Huang et al. 2021's mCnF ReLU conv nets) and plain MLPs.

Conv layers are (out channels, kernel, stride, padding):

* 4C3F (MNIST):  32,3,1,1 · 32,4,2,1 · 64,3,1,1 · 64,4,2,1 · flatten · fc 512 · fc 512 · fc K
* 6C2F (CIFAR-10): 32,3,1,1 · 32,4,2,1 · 64,3,1,1 · 64,4,2,1 · 64,3,1,1 · 64,4,2,1 · flatten ·
  fc 512 · fc K
* 8C2F (Tiny-ImageNet): 6C2F's convs · 64,3,1,1 · 64,4,2,1 · flatten · fc 256 · fc K
* ``mlp:W1,W2,...`` -- flatten then dense layers of the given widths, then fc K.

All are plain ``nn.Sequential`` modules, so the fx loader turns them into the same layer graph
that ONNX files become.  With ``mean``/``std`` the first module is :class:`Normalise`
(``x ↦ (x − mean)/std`` per channel), so the graph, its Lipschitz constants and the certified
radii are in the units of the raw pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from liplt_cli.errors import ArgumentError

CONV_SPECS: dict[str, tuple[list[tuple[int, int, int, int]], list[int]]] = {
    "4C3F": ([(32, 3, 1, 1), (32, 4, 2, 1), (64, 3, 1, 1), (64, 4, 2, 1)], [512, 512]),
    "6C2F": (
        [(32, 3, 1, 1), (32, 4, 2, 1), (64, 3, 1, 1), (64, 4, 2, 1), (64, 3, 1, 1), (64, 4, 2, 1)],
        [512],
    ),
    "8C2F": (
        [
            (32, 3, 1, 1), (32, 4, 2, 1), (64, 3, 1, 1), (64, 4, 2, 1),
            (64, 3, 1, 1), (64, 4, 2, 1), (64, 3, 1, 1), (64, 4, 2, 1),
        ],
        [256],
    ),
}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}

DEFAULT_INPUT_SHAPES = {"4C3F": (1, 28, 28), "6C2F": (3, 32, 32), "8C2F": (3, 64, 64)}
DEFAULT_CLASSES = {"4C3F": 10, "6C2F": 10, "8C2F": 200}


class Normalise(nn.Module):
    """``x ↦ (x − mean)/std`` per channel (constant buffers, not trained): a Lipschitz-``max 1/std``
    affine map that the layer graph keeps as its first node."""

    def __init__(self, mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float], channels: int) -> None:
        super().__init__()
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ArgumentError(f"input mean/std need 1 or {channels} values, got {len(mean)} and {len(std)}")
        if any(not v > 0 for v in std):
            raise ArgumentError(f"input std must be positive, got {list(std)}")
        shape = (-1, 1, 1) if len(mean) > 1 or len(std) > 1 else (1, 1, 1)
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).reshape(shape))
        self.register_buffer("std", torch.tensor([float(v) for v in std]).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def build_arch(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    activation: str = "relu",
    mean: tuple[float, ...] | list[float] | None = None,
    std: tuple[float, ...] | list[float] | None = None,
) -> nn.Sequential:
    """Build architecture ``name`` (4C3F, 6C2F, 8C2F or ``mlp:W1,W2,...``) as ``nn.Sequential``.

    ``input_shape`` is per sample (C, H, W); defaults follow the paper's datasets.  ``mean`` and
    ``std`` (together) put a :class:`Normalise` first.
    """
    if (mean is None) != (std is None):
        raise ArgumentError("the input mean and std go together: give both or neither")
    model = _build(name, input_shape, num_classes, activation)
    if mean is None or std is None:
        return model
    channels = (input_shape or DEFAULT_INPUT_SHAPES.get(name.upper(), (1, 28, 28)))[0]
    return nn.Sequential(Normalise(mean, std, channels), *model)


def _build(
    name: str, input_shape: tuple[int, ...] | None, num_classes: int | None, activation: str
) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ArgumentError(f"unknown activation '{activation}'; choose from {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[activation]
    key = name.upper()
    if key in CONV_SPECS:
        convs, fcs = CONV_SPECS[key]
        c, h, w = input_shape or DEFAULT_INPUT_SHAPES[key]
        k_out = num_classes or DEFAULT_CLASSES[key]
        layers: list[nn.Module] = []
        for out_c, k, s, p in convs:
            layers += [nn.Conv2d(c, out_c, k, s, p), act()]
            c, h, w = out_c, _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        layers.append(nn.Flatten())
        width = c * h * w
        for f in fcs:
            layers += [nn.Linear(width, f), act()]
            width = f
        layers.append(nn.Linear(width, k_out))
        return nn.Sequential(*layers)
    if name.lower().startswith("mlp"):
        spec = name.split(":", 1)[1] if ":" in name else ""
        try:
            widths = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ArgumentError(f"--arch mlp needs integer widths, e.g. mlp:512,512; got '{name}'") from None
        shape = input_shape or (1, 28, 28)
        width = math.prod(shape)
        layers = [nn.Flatten()]
        for f in widths:
            layers += [nn.Linear(width, f), act()]
            width = f
        layers.append(nn.Linear(width, num_classes or 10))
        return nn.Sequential(*layers)
    raise ArgumentError(f"unknown architecture '{name}'; choose 4C3F, 6C2F, 8C2F or mlp:W1,W2,...")
