"""What a handler receives: one fx call with its arguments, and the builder to emit nodes with.

Each handler takes a :class:`Call` and returns the :class:`~liplt_cli.load.values.Sym` of its
result, or raises :class:`~liplt_cli.load.values.Unsupported`.  Arguments are
:class:`~liplt_cli.load.values.Sym` for input-dependent values and tensors (or Python values)
for constants; ``out`` is the node's example output, computed by the source op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from liplt_cli.errors import ModelLoadError
from liplt_cli.load.builder import GraphBuilder
from liplt_cli.load.values import Sym, Unsupported

__all__ = ["Call", "int_tuple", "is_one", "is_zero"]


@dataclass
class Call:
    builder: GraphBuilder
    name: str  # base name for emitted nodes
    source: str  # user-facing description of the op, e.g. "Conv2d 'features.0'"
    op: str  # op label for errors
    args: tuple
    kwargs: dict
    out: Any
    mod: nn.Module | None = None

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        if len(self.args) > i:
            return self.args[i]
        return default

    @property
    def src(self) -> Sym:
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, Sym):
                return a
            if isinstance(a, (list, tuple)):
                for b in a:
                    if isinstance(b, Sym):
                        return b
        raise AssertionError("no symbolic argument")

    def unsupported(self, why: str = "") -> Unsupported:
        return Unsupported(self.op, why)

    def const_weight(self, value: Any, what: str = "weight") -> torch.Tensor | None:
        """A constant weight argument; an input-dependent one is a clear error."""
        if value is None:
            return None
        if isinstance(value, Sym):
            raise ModelLoadError(
                f"node '{self.name}' ({self.op}): its {what} depends on the model input; "
                "only constant weights are supported"
            )
        return self.builder.const(value)


def int_tuple(v: Any, n: int) -> tuple[int, ...]:
    """``v`` (an int, a sequence or a tensor) as ``n`` ints (a single value is repeated)."""
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            return tuple(int(v[0]) for _ in range(n))
        return tuple(int(x) for x in v)
    return tuple(int(v) for _ in range(n))


def is_zero(t: Any) -> bool:
    return isinstance(t, (int, float)) and t == 0 or isinstance(t, torch.Tensor) and bool((t == 0).all())


def is_one(t: Any) -> bool:
    return isinstance(t, (int, float)) and t == 1 or isinstance(t, torch.Tensor) and bool((t == 1).all())
