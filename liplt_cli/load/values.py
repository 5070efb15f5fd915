"""The values of the fx walk: what each fx node stands for while the loader converts a module.

Every fx node's value is either a **constant** (a tensor or Python value that does not depend
on the input) or a **symbolic value** (:class:`Sym`): the layer-graph node that produces it,
plus an example value computed by the source op on a random input, so shapes are always known.
A handler that cannot represent a node raises :class:`Unsupported`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Sym", "Unsupported", "flatten", "concrete"]


class Unsupported(Exception):
    """Raised by a handler: this fx node cannot be represented (message says why)."""

    def __init__(self, op: str, why: str = "", node: str | None = None):
        self.op = op
        self.why = why
        self.node = node  # the node to name in the error, when not the one being converted
        super().__init__(f"{op}{': ' + why if why else ''}")


@dataclass
class Sym:
    """An input-dependent value: produced by layer-graph node ``name``.

    ``value`` is the example value (batch first) computed by the source op; ``fx_name`` is the
    fx node whose concrete value equals this one (used by the final equality check);
    ``stripped`` is set when this is the logits under a stripped final Softmax/LogSoftmax.
    """

    name: str
    value: torch.Tensor
    fx_name: str | None = None
    stripped: str | None = None
    pending: Any = None  # an elementwise function of another node (liplt_cli.load.elementwise)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape[1:])

    @property
    def batch(self) -> int:
        return int(self.value.shape[0])


def flatten(obj: Any) -> list[Any]:
    """The leaves of nested lists, tuples, dicts and slices."""
    if isinstance(obj, (list, tuple)):
        return [v for o in obj for v in flatten(o)]
    if isinstance(obj, dict):
        return [v for o in obj.values() for v in flatten(o)]
    if isinstance(obj, slice):
        return flatten([obj.start, obj.stop, obj.step])
    return [obj]


def concrete(obj: Any) -> Any:
    """``obj`` with every :class:`Sym` replaced by its example value."""
    if isinstance(obj, Sym):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return type(obj)(concrete(o) for o in obj) if not hasattr(obj, "_fields") else type(obj)(*(concrete(o) for o in obj))
    if isinstance(obj, dict):
        return {k: concrete(v) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(concrete(obj.start), concrete(obj.stop), concrete(obj.step))
    return obj
