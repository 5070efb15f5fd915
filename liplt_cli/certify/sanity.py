"""Checks of a certification run whose numbers would be meaningless: warnings, never errors."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from liplt_cli.eps import Epsilon
from liplt_cli.notes import warning

#: clean accuracy at most this multiple of 1/K is "at chance level" (warned about)
CHANCE_FACTOR = 1.5


def chance_level_warnings(prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> list[str]:
    """A warning when clean accuracy is at most ``CHANCE_FACTOR``/K on at least 2K samples.

    A trained classifier that scores like guessing usually sees its inputs in other units than
    it was trained on (normalisation missing or applied twice), or the wrong data.
    """
    n = int(label.numel())
    if num_classes < 2 or n < 2 * num_classes:
        return []
    accuracy = float((prediction == label).sum()) / n
    limit = CHANCE_FACTOR / num_classes
    if accuracy > limit:
        return []
    return [warning(
        f"clean accuracy {accuracy:.2%} is at chance level for {num_classes} classes (at most {limit:.1%}): check "
        "that the data is what the model was trained on, and its input normalisation (mean/std)"
    )]


def input_range_warnings(eps: Sequence[float | Epsilon], norm: float, box: tuple[float, float] | None, size: int) -> list[str]:
    """A warning for each ε larger than the ℓp diameter of the input box ``[lo, hi]^size``.

    No two inputs are further apart than (hi − lo)·size^(1/p), so a ball of a larger radius holds
    every input: such an ε is usually in other units (8 for 8/255).
    """
    if box is None:
        return []
    lo, hi = box
    diameter = (hi - lo) * (1.0 if math.isinf(norm) else size ** (1.0 / norm))
    name = "ℓ∞" if math.isinf(norm) else f"ℓ{norm:g}"
    return [warning(
        f"ε = {e} is larger than the input range allows: inputs lie in [{lo:g}, {hi:g}]^{size}, whose {name} "
        f"diameter is {diameter:.4g}, so the ball holds every input (is ε in other units, e.g. {e}/255?)"
    ) for e in eps if float(e) > diameter]
