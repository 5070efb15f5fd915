"""Checks of the values a caller gives the loader, and of the model it read.

Errors name the value and the rule, and the parameter the value came from as ``{input_shape}``,
``{mean}`` or ``{std}`` (see :class:`~liplt_cli.errors.LipltError`), so the command line can
show its own flag there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from liplt_cli.errors import ArgumentError, InputShapeError, ModelLoadError
from liplt_cli.graph import LayerGraph
from liplt_cli.graph.graph import per_channel_values
from liplt_cli.limits import format_shape, shape_over_budget

__all__ = ["check_classifier_output", "check_input_shape", "check_normalization", "check_normalization_channels"]


def check_input_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints whose float32 sample fits the memory budget."""
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError, OverflowError):
        raise InputShapeError(f"the input shape must be a list of integers, got {shape!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputShapeError(f"the input shape {format_shape(dims)} must have positive dimensions")
    reason = shape_over_budget(dims, "one input sample")
    if reason:
        raise InputShapeError(reason)
    return dims


def check_normalization(mean: Sequence[float] | None, std: Sequence[float] | None
                        ) -> tuple[list[float], list[float]] | None:
    """Both or neither; finite means and strictly positive, finite standard deviations."""
    if (mean is None) != (std is None):
        raise ArgumentError("{mean} and {std} go together: give both or neither", parameters=("mean", "std"))
    if mean is None or std is None:
        return None
    means, stds = [float(m) for m in mean], [float(s) for s in std]
    if not means or not stds:
        raise ArgumentError("{mean} and {std} need at least one value each", parameters=("mean", "std"))
    if not all(math.isfinite(m) for m in means):
        raise ArgumentError(f"{{mean}} must be finite, got {means}", parameters=("mean",))
    bad = [(c, s) for c, s in enumerate(stds) if not (math.isfinite(s) and s > 0)]
    if bad:
        channel, value = bad[0]
        raise ArgumentError(
            f"{{std}} must be positive and finite (a standard deviation), got {value:g} for channel {channel}",
            parameters=("std",),
        )
    return means, stds


def check_normalization_channels(means: list[float], stds: list[float], input_shape: Sequence[int]) -> None:
    """One value, or one per channel (the first axis of an input with more than one axis)."""
    shape = tuple(input_shape)
    channels = shape[0] if len(shape) > 1 else 1
    for parameter, values in (("mean", means), ("std", stds)):
        if len(values) not in (1, channels):
            raise ArgumentError(
                f"{{{parameter}}} needs {per_channel_values(channels, shape)}, got {len(values)}",
                parameters=(parameter,),
            )


def check_classifier_output(graph: LayerGraph, path: Path) -> None:
    """The output must be a non-empty vector of K logits per sample: shape [K], [1, K] or [K, 1, 1].

    Any other shape (e.g. a segmentation map [2, 8, 8]) is refused instead of being read as
    2·8·8 = 128 classes.
    """
    shape = tuple(graph.output_shape)
    k = graph.num_classes
    if sum(1 for s in shape if s != 1) > 1:
        raise ModelLoadError(
            f"'{path}' outputs a tensor of shape {format_shape(shape)} per sample; liplt bounds classifiers whose "
            f"output is a vector of K class scores (shape [K], [1, K] or [K, 1, 1]). If these {k} values are "
            "the class scores, add a Flatten at the end of the model"
        )
    if k < 1:
        raise ModelLoadError(f"'{path}' outputs an empty tensor (shape {format_shape(shape)}) per sample")
