"""The layer graph under construction: the one interface through which handlers emit nodes.

A :class:`GraphBuilder` appends nodes in topological order (each new node reads nodes that
already exist), gives each a unique name, and remembers the example value of every node it
emitted (for the elementwise reader and the final comparison with the module).  Handlers call
:meth:`~GraphBuilder.linear`, :meth:`~GraphBuilder.activation`, :meth:`~GraphBuilder.sum`,
:meth:`~GraphBuilder.concat` and :meth:`~GraphBuilder.block`, and turn constants into tensors of
the model's dtype with :meth:`~GraphBuilder.const`; nothing else of the walk is visible to them.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import torch

from liplt_cli.errors import GraphError
from liplt_cli.graph import InputNode, LinearNode
from liplt_cli.graph.nodes import ActivationNode, BlockNode, ConcatNode, Node, SumNode
from liplt_cli.load.values import Sym, Unsupported

__all__ = ["GraphBuilder"]

_NAME_RE = re.compile(r"[^A-Za-z0-9_.]+")


class GraphBuilder:
    """Emits layer-graph nodes for one walk (see module docstring).

    ``shared`` holds the ids of the module's own parameters and buffers when the graph shares
    them with a live module: operations on those tensors are kept even when they are no-ops at
    trace time (a learned scale that is 1.0 now need not stay 1.0).
    """

    def __init__(self, example: torch.Tensor, shared: Iterable[torch.Tensor] = ()):
        self.dtype = example.dtype
        self.device = example.device
        self._shared = frozenset(id(t) for t in shared)
        self._nodes: list[Node] = []
        self._names: set[str] = set()
        self._by_name: dict[str, Node] = {}
        self._values: dict[str, torch.Tensor] = {}  # example value of each emitted node
        self._fx_of: dict[str, str] = {}  # emitted node -> the fx node whose value it equals
        self._notes: list[str] = []

    # ------------------------------------------------------------------ what was built
    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    @property
    def fx_of(self) -> Mapping[str, str]:
        return dict(self._fx_of)

    def node(self, name: str) -> Node | None:
        return self._by_name.get(name)

    def has_value(self, name: str) -> bool:
        return name in self._values

    def value(self, name: str) -> torch.Tensor | None:
        return self._values.get(name)

    # ------------------------------------------------------------------ bookkeeping
    def note(self, text: str) -> None:
        """A note for the user, kept in the graph (e.g. a derived activation)."""
        self._notes.append(text)

    def record(self, sym: Sym) -> None:
        """Remember ``sym``'s example value (and the fx node it equals) for an emitted node."""
        if sym.pending is None and sym.name in self._by_name:
            self._values[sym.name] = sym.value
            if sym.fx_name is not None:
                self._fx_of.setdefault(sym.name, sym.fx_name)

    def is_shared(self, value: Any) -> bool:
        """Whether ``value`` is one of the live module's own parameters or buffers."""
        return isinstance(value, torch.Tensor) and id(value) in self._shared

    def const(self, value: Any) -> torch.Tensor:
        """A constant as a floating tensor of the model's dtype (a same-dtype tensor is kept as is)."""
        if isinstance(value, torch.Tensor):
            if value.dtype == self.dtype and value.device == self.device:
                return value
            return value.to(dtype=self.dtype, device=self.device)
        return torch.as_tensor(value, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ node emission
    def _unique(self, base: str) -> str:
        base = _NAME_RE.sub("_", base).strip("_") or "node"
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def _emit(self, node: Node) -> None:
        self._nodes.append(node)
        self._by_name[node.name] = node

    def input(self, shape: tuple[int, ...], example: torch.Tensor, fx_name: str) -> Sym:
        name = self._unique("input")
        self._emit(InputNode(name, shape))
        self._values[name] = example
        return Sym(name, example, fx_name)

    def linear(self, src: Sym, op: Any, base: str, source: str, value: torch.Tensor | None = None) -> Sym:
        """Append a :class:`LinearNode` reading ``src``; returns its symbolic value."""
        if tuple(op.in_shape) != src.shape:
            raise GraphError(f"internal: {base} expects input {list(op.in_shape)}, got {list(src.shape)}")
        name = self._unique(base)
        self._emit(LinearNode(name, (src.name,), op, source=source))
        if value is None:
            with torch.no_grad():
                value = op.forward(src.value)
        if tuple(value.shape[1:]) != tuple(op.out_shape):
            raise Unsupported(source, f"output shape {list(value.shape[1:])} differs from the layer's {list(op.out_shape)}")
        self._values[name] = value
        return Sym(name, value, None)

    def activation(self, src: Sym, act: Any, base: str, source: str, value: torch.Tensor,
                   fx_name: str | None = None) -> Sym:
        """Append an :class:`ActivationNode` applying ``act`` to ``src``."""
        name = self._unique(base)
        self._emit(ActivationNode(name, (src.name,), src.shape, act, source=source))
        self._values[name] = value
        return Sym(name, value, fx_name)

    def sum(self, terms: list[Sym], base: str, source: str, value: torch.Tensor,
            coefficients: tuple[float, ...] = ()) -> Sym:
        """Append a :class:`SumNode` ``Σ cᵢ termᵢ`` of same-shaped values (``()``: all ones)."""
        name = self._unique(base)
        self._emit(SumNode(name, tuple(t.name for t in terms), terms[0].shape, coefficients, source=source))
        return Sym(name, value, None)

    def concat(self, parts: list[Sym], dim: int, base: str, source: str, value: torch.Tensor) -> Sym:
        """Append a :class:`ConcatNode` along per-sample axis ``dim``."""
        name = self._unique(base)
        self._emit(ConcatNode(name, tuple(p.name for p in parts), tuple(value.shape[1:]), dim, source=source))
        return Sym(name, value, None)

    def block(self, src: Sym, block: Any, base: str, source: str, value: torch.Tensor) -> Sym:
        """Append a :class:`BlockNode` (a non-elementwise Lipschitz block such as MaxPool)."""
        name = self._unique(base)
        self._emit(BlockNode(name, (src.name,), tuple(value.shape[1:]), block, source=source))
        return Sym(name, value, None)
