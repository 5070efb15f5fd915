"""The one walk over a layer graph (the torch.fx ``Interpreter`` pattern).

:class:`GraphWalk` visits the nodes of a :class:`~liplt_cli.graph.graph.LayerGraph` in
topological order -- or in reverse topological order when ``reverse`` is set, for walks that
carry cotangents -- and dispatches each node on its kind (``node.kind``) to the method of that
name.  Subclasses override only the kinds they meet:

================  ==========================  =========================================
kind              forward call → value        reverse call → one contribution per input
================  ==========================  =========================================
``input``         ``input(node)``             ``input(node, v)``
``linear``        ``linear(node, x)``         ``linear(node, v)``
``sum``           ``sum(node, *xs)``          ``sum(node, v)``
``concat``        ``concat(node, *xs)``       ``concat(node, v)``
``activation``    ``activation(node, x)``     ``activation(node, v)``
``block``         ``block(node, x)``          ``block(node, v)``
================  ==========================  =========================================

Values live in ``self.env``, keyed by node name.

* **Forward**: the arguments are ``self.read(name)`` of the node's inputs, and the handler's
  result, passed through ``self.emit(pos, node, value)``, becomes the node's value (``None``:
  no value).  A value is freed after the last node that reads it; the output's is kept.
* **Reverse**: a node's value is complete when the walk reaches it (every node that reads it
  comes later in topological order), so it is taken out of ``env``, passed through ``emit``
  and, unless ``None``, handed to the handler; each returned contribution (``None``: nothing)
  is added to its input's value by ``self.accumulate``.

``finished(pos)`` stops the walk early.  Any failure inside a step is re-raised as
``self.error`` with a message naming the node and its kind (``failure_message``); errors of
the user's input (:class:`~liplt_cli.errors.LipltError`) and the subclass's ``passthrough``
exceptions pass through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from liplt_cli.errors import LipltError

if TYPE_CHECKING:  # pragma: no cover
    from liplt_cli.graph.graph import LayerGraph
    from liplt_cli.graph.nodes import Node


class WalkError(RuntimeError):
    """An internal failure while walking a graph, naming the node (not an error of the user)."""


class GraphWalk:
    """Walk ``graph`` once, dispatching on node kinds (see the module docstring)."""

    reverse: ClassVar[bool] = False
    action: ClassVar[str] = "walking"
    error: ClassVar[type[Exception]] = WalkError
    passthrough: ClassVar[tuple[type[Exception], ...]] = (LipltError,)

    def __init__(self, graph: "LayerGraph") -> None:
        self.graph = graph
        self.env: dict[str, Any] = {}

    # ------------------------------------------------------------------ hooks
    def read(self, name: str) -> Any:
        """The value of node ``name`` as an argument of a forward handler (``None`` if absent)."""
        return self.env.get(name)

    def emit(self, pos: int, node: "Node", value: Any) -> Any:
        """Forward: the handler's result; reverse: the node's accumulated value.  Returns what to keep."""
        return value

    def accumulate(self, old: Any, new: Any) -> Any:
        """Reverse: add a contribution to an input's value (``old`` is ``None`` at first)."""
        return new if old is None else old + new

    def finished(self, pos: int) -> bool:
        """Stop after the node at ``pos``?"""
        return False

    def failure_message(self, node: "Node", exc: Exception) -> str:
        return f"while {self.action} node '{node.name}' ({node.kind}): {exc}"

    # ------------------------------------------------------------------ the walk
    def run(self, start: int | None = None, stop: int | None = None) -> "GraphWalk":
        """Visit positions ``start`` .. ``stop`` (exclusive) in walk order; defaults: all nodes."""
        nodes = self.graph.nodes
        if self.reverse:
            positions = range(len(nodes) - 1 if start is None else start, -1 if stop is None else stop, -1)
        else:
            positions = range(0 if start is None else start, len(nodes) if stop is None else stop)
        last_use = None if self.reverse else self.graph.last_use()
        for pos in positions:
            node = nodes[pos]
            try:
                if last_use is None:
                    self._reverse_step(pos, node)
                else:
                    self._forward_step(pos, node, last_use)
            except self.passthrough:
                raise
            except Exception as exc:  # re-raised with the node's name, like fx's Interpreter
                raise self.error(self.failure_message(node, exc)) from exc
            if self.finished(pos):
                break
        return self

    def _forward_step(self, pos: int, node: "Node", last_use: dict[str, int]) -> None:
        value = getattr(self, node.kind)(node, *[self.read(i) for i in node.inputs])
        value = self.emit(pos, node, value)
        if value is not None:
            self.env[node.name] = value
        for name in set(node.inputs):
            if last_use[name] == pos:
                self.env.pop(name, None)

    def _reverse_step(self, pos: int, node: "Node") -> None:
        value = self.emit(pos, node, self.env.pop(node.name, None))
        if value is None:
            return
        contributions: Sequence[Any] = getattr(self, node.kind)(node, value)
        for name, part in zip(node.inputs, contributions):
            if part is not None:
                self.env[name] = self.accumulate(self.env.get(name), part)


class NodeRecords(GraphWalk):
    """A walk that makes one record per node (no values flow): ``records`` in topological order.

    Handlers take the node (and ignore their value arguments) and return the node's record.
    """

    def __init__(self, graph: "LayerGraph") -> None:
        super().__init__(graph)
        self.records: list[Any] = []

    def emit(self, pos: int, node: "Node", value: Any) -> None:
        self.records.append(value)
        return None
