"""Architectures of the paper (Huang et al. 2021's mCnF ReLU conv nets) and plain MLPs.

Conv layers are (out channels, kernel, stride, padding):

* 4C3F (MNIST):  32,3,1,1 · 32,4,2,1 · 64,3,1,1 · 64,4,2,1 · flatten · fc 512 · fc 512 · fc K
* 6C2F (CIFAR-10): 32,3,1,1 · 32,4,2,1 · 64,3,1,1 · 64,4,2,1 · 64,3,1,1 · 64,4,2,1 · flatten ·
  fc 512 · fc K
* 8C2F (Tiny-ImageNet): 6C2F's convs · 64,3,1,1 · 64,4,2,1 · flatten · fc 256 · fc K
* 2C2F (small CIFAR-10 net, the local-certification benchmark): 16,4,2,1 · 32,4,2,1 · flatten ·
  fc 100 · fc K
* ``mlp:W1,W2,...`` -- flatten then dense layers of the given widths, then fc K.
* ``prop2-mlp:KxN[,sn|aol|sll][,rho=learn|VALUE][,nostem]`` -- flatten · linear stem to N · K dense
  Proposition 2 layers of width N · fc K.
* ``prop2-conv:KxC1-C2-...[,sn|aol|sll][,rho=learn|VALUE]`` -- 3×3 conv stem to C1 · per stage i:
  K conv Proposition 2 layers with C_i channels, then a 4×4 stride-2 conv to C_{i+1} · flatten · fc K.

The ``prop2-*`` families (Proposition 2 residual layers, T chosen by SN/AOL/SLL, default SLL with
a learned ρ per layer) are described in :mod:`liplt_cli.train.prop2_archs`.

All are ``nn.Sequential`` modules (the ``prop2-*`` ones a subclass with a plain export,
``to_plain()``), so the fx loader turns them into the same layer graph that ONNX files become.
With ``mean``/``std`` the first module is :class:`Normalise` (``x ↦ (x − mean)/std`` per
channel), so the graph, its Lipschitz constants and the certified radii are in the units of the
raw pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from liplt_cli.errors import ArgumentError
from liplt_cli.train.prop2_archs import build_prop2_arch, is_prop2_arch, parse_prop2_spec

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
    "2C2F": ([(16, 4, 2, 1), (32, 4, 2, 1)], [100]),
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

DEFAULT_INPUT_SHAPES = {"4C3F": (1, 28, 28), "6C2F": (3, 32, 32), "8C2F": (3, 64, 64), "2C2F": (3, 32, 32)}
DEFAULT_CLASSES = {"4C3F": 10, "6C2F": 10, "8C2F": 200, "2C2F": 10}


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


def mlp_widths(name: str) -> list[int]:
    """The hidden widths of ``mlp:W1,W2,...`` (positive integers; ``mlp`` alone has none)."""
    spec = name.split(":", 1)[1] if ":" in name else ""
    try:
        widths = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ArgumentError(f"architecture '{name}': an mlp needs integer widths, e.g. mlp:512,512") from None
    if any(w <= 0 for w in widths):
        raise ArgumentError(f"architecture '{name}': every width must be a positive integer, e.g. mlp:512,512")
    return widths


_UNKNOWN = (
    "unknown architecture '{name}'; choose 4C3F, 6C2F, 8C2F, 2C2F, mlp:W1,W2,..., prop2-mlp:KxN or prop2-conv:KxC1-C2-..."
)


def _check_prop2(name: str, input_shape: tuple[int, ...] | None, num_classes: int | None) -> int:
    """Validate a ``prop2-*`` name; return an upper bound on its parameter count (budget check).

    The count assumes no downsampling (so it only over-estimates): stems, ``depth`` square maps
    per stage (dense N×N, or 3×3 convolutions C_i×C_i) and a head reading every feature.
    """
    from liplt_cli.limits import FLOAT32_BYTES, over_budget, scientific

    spec = parse_prop2_spec(name)
    shape = tuple(input_shape or (1, 28, 28))
    if not shape or any(int(d) <= 0 for d in shape):
        raise ArgumentError(f"architecture '{name}': the input shape {list(shape)} must have positive dimensions")
    k_out = int(num_classes or 10)
    if k_out <= 0:
        raise ArgumentError(f"architecture '{name}' needs at least one class, got {k_out}")
    if spec.family == "mlp":
        n = spec.widths[0]
        count = math.prod(shape) * n + spec.depth * (n * n + 2 * n) + n * k_out
    else:
        channels, pixels = [int(shape[0]), *spec.widths], math.prod(shape[1:])
        count = sum(9 * a * b for a, b in zip(channels, channels[1:]))
        count += sum(spec.depth * (9 * c * c + 2 * c) for c in spec.widths) + spec.widths[-1] * pixels * k_out
    reason = over_budget(count * FLOAT32_BYTES, f"architecture '{name}' ({scientific(count)} weights)")
    if reason:
        raise ArgumentError(reason)
    return count


def check_arch(name: str, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> int:
    """Validate architecture ``name`` for ``input_shape`` / ``num_classes``; return its parameter count.

    Raises :class:`ArgumentError` for an unknown name, a width that is not a positive integer,
    an input too small for the convolutions, or weights larger than the memory budget (checked
    before any allocation).
    """
    from liplt_cli.limits import FLOAT32_BYTES, over_budget, scientific

    key = name.upper()
    k_out = num_classes
    if is_prop2_arch(name):
        return _check_prop2(name, input_shape, num_classes)
    if key in CONV_SPECS:
        convs, fcs = CONV_SPECS[key]
        shape = tuple(input_shape or DEFAULT_INPUT_SHAPES[key])
        if len(shape) != 3 or any(int(d) <= 0 for d in shape):
            raise ArgumentError(f"architecture {key} takes images of shape (C, H, W), got {list(shape)}")
        c, h, w = (int(d) for d in shape)
        count = 0
        for out_c, k, st, p in convs:
            count += out_c * c * k * k + out_c
            c, h, w = out_c, _conv_out(h, k, st, p), _conv_out(w, k, st, p)
            if h <= 0 or w <= 0:
                raise ArgumentError(f"architecture {key}: images of shape {list(shape)} are too small for its convolutions")
        width = c * h * w
        widths = fcs
        k_out = k_out or DEFAULT_CLASSES[key]
    elif name.lower().startswith("mlp"):
        widths = mlp_widths(name)
        shape = tuple(input_shape or (1, 28, 28))
        if not shape or any(int(d) <= 0 for d in shape):
            raise ArgumentError(f"architecture '{name}': the input shape {list(shape)} must have positive dimensions")
        width, count = math.prod(int(d) for d in shape), 0
        k_out = k_out or 10
    else:
        raise ArgumentError(_UNKNOWN.format(name=name))
    if int(k_out) <= 0:
        raise ArgumentError(f"architecture '{name}' needs at least one class, got {k_out}")
    for f in [*widths, int(k_out)]:
        count += width * f + f
        width = f
    reason = over_budget(count * FLOAT32_BYTES, f"architecture '{name}' ({scientific(count)} weights)")
    if reason:
        raise ArgumentError(reason)
    return count


def build_arch(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    activation: str = "relu",
    mean: tuple[float, ...] | list[float] | None = None,
    std: tuple[float, ...] | list[float] | None = None,
) -> nn.Sequential:
    """Build architecture ``name`` (4C3F, 6C2F, 8C2F, 2C2F, ``mlp:W1,W2,...``, ``prop2-mlp:...`` or
    ``prop2-conv:...``) as ``nn.Sequential``.

    ``input_shape`` is per sample (C, H, W); defaults follow the paper's datasets.  ``mean`` and
    ``std`` (together) put a :class:`Normalise` first.
    """
    if (mean is None) != (std is None):
        raise ArgumentError("the input mean and std go together: give both or neither")
    check_arch(name, input_shape, num_classes)
    if is_prop2_arch(name):
        model = build_prop2_arch(name, input_shape, num_classes, activation)
    else:
        model = _build(name, input_shape, num_classes, activation)
    if mean is None or std is None:
        return model
    channels = (input_shape or DEFAULT_INPUT_SHAPES.get(name.upper(), (1, 28, 28)))[0]
    model.insert(0, Normalise(mean, std, channels))
    return model


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
        widths = mlp_widths(name)
        shape = input_shape or (1, 28, 28)
        width = math.prod(shape)
        layers = [nn.Flatten()]
        for f in widths:
            layers += [nn.Linear(width, f), act()]
            width = f
        layers.append(nn.Linear(width, num_classes or 10))
        return nn.Sequential(*layers)
    raise ArgumentError(_UNKNOWN.format(name=name))
