"""Options shared by several commands, declared once (Annotated Typer options), and their parsers.

Every option names its help panel (``PANEL_*``), a plain ``metavar`` and the default ``--help``
shows.  The options that say how to read a model file (``--input-shape``, ``--mean``, ``--std``,
``--arch``) are one group, :func:`model_source_options`, that a command takes as a single
:class:`ModelSource`.  Nothing here imports torch: ``liplt --help`` reads these declarations.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from typer.models import ArgumentInfo

from liplt_cli.eps import parse_epsilons
from liplt_cli.errors import ArgumentError, LipltError

PANEL_MODEL = "Model"
PANEL_DATA = "Data"
PANEL_METHOD = "Method"
PANEL_ATTACK = "Attack"
PANEL_OUTPUT = "Output"
PANEL_COMPUTE = "Compute"
PANEL_LOCAL = "Local"


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


def at_least(low: int) -> Callable[[Any], Any]:
    """A Typer callback refusing numbers below ``low`` (``--samples 0``) with a usage error."""

    def check(value: Any) -> Any:
        if value is not None and value < low:
            raise typer.BadParameter(f"must be at least {low}, got {value}")
        return value

    return check


ModelArg = Annotated[
    Path,
    typer.Argument(
        metavar="MODEL", help="Model file: ONNX (.onnx) or liplt safetensors (.safetensors).", show_default=False
    ),
]
NormOpt = Annotated[
    NormChoice,
    typer.Option("--norm", metavar="2|inf|1", help="Input norm p of the perturbation.", rich_help_panel=PANEL_METHOD),
]
DeviceOpt = Annotated[
    DeviceChoice,
    typer.Option(
        "--device", metavar="auto|cpu|cuda", rich_help_panel=PANEL_COMPUTE,
        help="Where to compute: cuda when available (auto), or force cpu / cuda.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout instead of tables.", rich_help_panel=PANEL_OUTPUT),
]
InputShapeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--input-shape", metavar="SHAPE", rich_help_panel=PANEL_MODEL, show_default="the model's",
        help="Per-sample input shape, e.g. 1,28,28 (needed when the model's input is dynamic).",
    ),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mean", metavar="M[,M...]", rich_help_panel=PANEL_MODEL, show_default="none",
        help="Per-channel mean, e.g. 0.4914,0.4822,0.4465: prepends (x-mean)/std to the model.",
    ),
]
StdOpt = Annotated[
    Optional[str],
    typer.Option(
        "--std", metavar="S[,S...]", rich_help_panel=PANEL_MODEL, show_default="none",
        help="Per-channel std used with --mean (the normalisation counts in every bound).",
    ),
]
ArchOpt = Annotated[
    Optional[str],
    typer.Option(
        "--arch", metavar="ARCH", rich_help_panel=PANEL_MODEL, show_default="from the file",
        help="Architecture of a plain safetensors file without liplt metadata (e.g. 4C3F, mlp:512,512).",
    ),
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
    The values only; :func:`liplt_cli.eps.parse_epsilons` keeps the text as written too.
    """
    return [e.value for e in parse_epsilons(text)]


def resolve_device(choice: DeviceChoice | str) -> str:
    """``--device``: :func:`liplt_cli.device.resolve_device` (the one resolver), errors naming the flag."""
    from liplt_cli.device import resolve_device as resolve

    try:
        return resolve(choice.value if isinstance(choice, DeviceChoice) else str(choice))
    except LipltError as exc:
        raise exc.renamed({"device": "--device"}) from None


#: The flag of each :func:`~liplt_cli.load.load_model` parameter (errors name the flag).
MODEL_FLAGS = {"input_shape": "--input-shape", "mean": "--mean", "std": "--std", "arch": "--arch"}


@dataclass(frozen=True)
class ModelSource:
    """How to read a model file: the values of ``--input-shape``, ``--mean``, ``--std`` and ``--arch``."""

    input_shape: str | None = None
    mean: str | None = None
    std: str | None = None
    arch: str | None = None

    def load(self, model: Path | str):  # noqa: ANN201 - a LayerGraph (torch is imported lazily)
        """Load ``model`` as a layer graph; errors name these flags."""
        from liplt_cli.load import load_model
        from liplt_cli.train.architecture import architecture

        try:
            return load_model(
                model,
                input_shape=parse_shape(self.input_shape),
                mean=parse_float_list(self.mean, "--mean"),
                std=parse_float_list(self.std, "--std"),
                arch=architecture(self.arch) if self.arch is not None else None,
            )
        except LipltError as exc:
            if not exc.parameters:
                raise
            raise exc.renamed(MODEL_FLAGS) from None


_SOURCE_OPTIONS = (
    ("input_shape", InputShapeOpt),
    ("mean", MeanOpt),
    ("std", StdOpt),
    ("arch", ArchOpt),
)

Command = TypeVar("Command", bound=Callable[..., Any])


def model_source_options(command: Command) -> Command:
    """Give ``command`` the model-source options (panel "Model"), passed to it as ``source: ModelSource``.

    The options are inserted after the command's arguments, so the "Model" panel comes first in
    ``--help``; the command declares a keyword parameter ``source`` instead of four options.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "source"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in _SOURCE_OPTIONS
    ]
    first_option = next(
        (i for i, p in enumerate(own) if not any(isinstance(m, ArgumentInfo) for m in _metadata(p))),
        len(own),
    )
    parameters = own[:first_option] + added + own[first_option:]
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]

    @functools.wraps(command)
    def with_source(**kwargs: Any) -> Any:
        source = ModelSource(**{name: kwargs.pop(name) for name, _ in _SOURCE_OPTIONS})
        return command(source=source, **kwargs)

    with_source.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_source.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_source  # type: ignore[return-value]


def _metadata(parameter: inspect.Parameter) -> tuple[Any, ...]:
    return getattr(parameter.annotation, "__metadata__", ())


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
