"""Options shared by several commands, declared once (Annotated Typer options) and parsers."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from liplt_cli.errors import ArgumentError, LipltError


class NormChoice(str, Enum):
    l2 = "2"
    linf = "inf"
    l1 = "1"

    @property
    def p(self) -> float:
        return {"2": 2.0, "inf": math.inf, "1": 1.0}[self.value]


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


ModelArg = Annotated[
    Path,
    typer.Argument(help="Model file: ONNX (.onnx) or liplt safetensors (.safetensors).", show_default=False),
]
NormOpt = Annotated[NormChoice, typer.Option("--norm", help="Input norm p of the perturbation: 2, inf or 1.")]
DeviceOpt = Annotated[
    DeviceChoice,
    typer.Option("--device", help="Where to compute: cuda when available (auto), or force cpu / cuda."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
InputShapeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--input-shape",
        help="Per-sample input shape, e.g. 1,28,28 (needed when the model's input is dynamic).",
    ),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option("--mean", help="Per-channel mean, e.g. 0.4914,0.4822,0.4465: prepends (x-mean)/std to the model."),
]
StdOpt = Annotated[
    Optional[str],
    typer.Option("--std", help="Per-channel std used with --mean (the normalisation counts in every bound)."),
]
ArchOpt = Annotated[
    Optional[str],
    typer.Option("--arch", help="Architecture for a plain safetensors file without liplt metadata (e.g. 4C3F, mlp:512,512)."),
]


def parse_float_list(text: str | None, what: str) -> list[float] | None:
    """Parse ``"0.1,0.2"`` into floats; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ArgumentError(f"{what} must be comma-separated numbers, got '{text}'") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ArgumentError(f"{what} must be finite numbers, got '{text}'")
    return values


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """Parse ``"1,28,28"`` (also ``1x28x28``) into a per-sample shape."""
    if text is None:
        return None
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise ArgumentError(f"--input-shape must look like 1,28,28, got '{text}'") from None
    if not shape or any(s <= 0 for s in shape):
        raise ArgumentError(f"--input-shape must be positive integers, got '{text}'")
    return shape


def parse_eps(text: str) -> list[float]:
    """Parse ε values: ``36/255``, ``1.58``, ``0.1412`` or a comma list ``0.5,1.0,36/255``.

    Raises :class:`ArgumentError` (exit 2) on ``36/0``, ``abc``, negative or non-finite values.
    """
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "/" in item:
                num, den = item.split("/", 1)
                d = float(den)
                if d == 0:
                    raise ArgumentError(f"ε '{item}' divides by zero")
                v = float(num) / d
            else:
                v = float(item)
        except ValueError:
            raise ArgumentError(f"ε '{item}' is not a number or a fraction like 36/255") from None
        if not math.isfinite(v) or v < 0:
            raise ArgumentError(f"ε '{item}' must be a finite non-negative number")
        values.append(v)
    if not values:
        raise ArgumentError("no ε value given")
    return values


def resolve_device(choice: DeviceChoice | str) -> str:
    """``auto`` → cuda when available else cpu; ``cuda`` without a GPU is a clear error."""
    import torch

    value = choice.value if isinstance(choice, DeviceChoice) else str(choice)
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("--device cuda was asked for but no CUDA device is available")
    return value


#: The flag of each :func:`~liplt_cli.load.load_model` parameter (errors name the flag).
MODEL_FLAGS = {"input_shape": "--input-shape", "mean": "--mean", "std": "--std", "arch": "--arch"}


def load_cli_model(model, input_shape: str | None, mean: str | None, std: str | None, arch: str | None):
    """Load MODEL as a layer graph from the shared options (--input-shape, --mean, --std, --arch)."""
    from liplt_cli.load import load_model
    from liplt_cli.train.architecture import architecture

    try:
        return load_model(
            model,
            input_shape=parse_shape(input_shape),
            mean=parse_float_list(mean, "--mean"),
            std=parse_float_list(std, "--std"),
            arch=architecture(arch) if arch is not None else None,
        )
    except LipltError as exc:
        if not exc.parameters:
            raise
        raise exc.renamed(MODEL_FLAGS) from None


def parse_input_range(text: str | None, auto: tuple[float, float] | None) -> tuple[float, float] | None:
    """``--input-range``: ``LO,HI``, ``none`` (no domain), or ``auto`` (``auto``'s value)."""
    if text is None or text.strip().lower() == "auto":
        return auto
    if text.strip().lower() == "none":
        return None
    values = parse_float_list(text, "--input-range")
    if values is None or len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] >= values[1]:
        raise ArgumentError(f"--input-range takes LO,HI with LO < HI (e.g. 0,1), 'auto' or 'none'; got '{text}'")
    return values[0], values[1]
