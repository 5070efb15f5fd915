r"""The loop-transformation structure of a layer graph (Theorem 3 generalised to DAGs).

Loop transformation (eq. 12) rewrites every activation node j as
:math:`\varphi_j(y) = c_j\,y + \psi_j(y)` with :math:`c_j = (\alpha_j+\beta_j)/2` and
:math:`\psi_j` :math:`r_j = (\beta_j-\alpha_j)/2`-Lipschitz.  A Lipschitz block (MaxPool) is
treated as :math:`c_j = 0`, :math:`r_j = \mathrm{Lip}_j`.  The network becomes a *linear*
network (``Mode.LT``) into which each :math:`\psi_j(y_j)` is injected at node j's output, so
every *target* (the input of a nonlinear node, i.e. a pre-activation, or the output) satisfies

.. math:: y_k = A_{k,0}\,x_0 + \sum_j A_{k,j}\,\psi_j(y_j)       \qquad \text{(Lemma 1, eq. 15)}

and :math:`m_k = \|A_{k,0}\| + \sum_j r_j \|A_{k,j}\|\, m_j` bounds the Lipschitz constant of
:math:`x_0 \mapsto y_k` (eq. 16).  The naive bound (eq. 11) instead cuts every nonlinear node
(``Mode.CUT``): :math:`B_{k,s}` is the linear map from source s (the input or a nonlinear
node's output) to target k along paths through no other nonlinear node, and
:math:`N_k = \sum_s \|B_{k,s}\|\,\mathrm{Lip}_s\,N_{\mathrm{pre}(s)}`.

:func:`analyse` finds sources, targets and which source reaches which target in both modes, in
one walk per mode whose value at a node is the set of sources whose injection reaches it.  The
slopes come from a :class:`~liplt_cli.lipschitz.transform.LoopTransform`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, BlockNode, InputNode, Node
from liplt_cli.graph.walk import GraphWalk
from liplt_cli.lipschitz.transform import LoopTransform, Mode

LT = Mode.LT
CUT = Mode.CUT

Sources = frozenset[str]


@dataclass(frozen=True)
class Structure:
    """Sources, targets, reachability and slopes (``transform``) of a graph for input norm ``p``."""

    graph: LayerGraph
    p: float
    transform: LoopTransform
    sources: tuple[str, ...]  # input node first, then nonlinear nodes in topological order
    nonlinear: tuple[str, ...]
    activations: tuple[str, ...]  # the nonlinear nodes that are elementwise activations
    pre: dict[str, str]  # nonlinear node -> its input node (a target)
    targets: tuple[str, ...]  # pre-activation nodes and the output, in topological order
    reach: dict[tuple[Mode, str], dict[str, bool]]  # (mode, source) -> target -> reachable

    @property
    def input(self) -> str:
        return self.sources[0]

    @property
    def output(self) -> str:
        return self.graph.output

    def dim(self, name: str) -> int:
        return math.prod(self.graph.node(name).out_shape)

    def pos(self, name: str) -> int:
        return self.graph.position(name)

    def reaches(self, mode: Mode, source: str, target: str) -> bool:
        return self.reach[(mode, source)].get(target, False)

    def sources_of(self, mode: Mode, target: str) -> list[str]:
        """Sources whose injection reaches ``target`` in ``mode`` (in topological order)."""
        return [s for s in self.sources if self.reaches(mode, s, target)]


class _Reach(GraphWalk):
    """The sources reaching each node's output in one mode; records the nonlinear nodes on the way."""

    action = "analysing"

    def __init__(self, graph: LayerGraph, transform: LoopTransform, mode: Mode) -> None:
        super().__init__(graph)
        self.transform = transform
        self.mode = mode
        self.reached: dict[str, Sources] = {}
        self.nonlinear: list[str] = []
        self.activations: list[str] = []

    def input(self, node: InputNode) -> Sources:
        return frozenset((node.name,))

    def linear(self, node: Node, x: Sources | None) -> Sources:
        return x or frozenset()

    def sum(self, node: Node, *xs: Sources | None) -> Sources:
        return frozenset().union(*(x for x in xs if x))

    concat = sum

    def activation(self, node: ActivationNode, x: Sources | None) -> Sources:
        self.nonlinear.append(node.name)
        self.activations.append(node.name)
        passes = self.transform.multiplier(node.name, self.mode) is not None
        return (x or frozenset()) | {node.name} if passes else frozenset((node.name,))

    def block(self, node: BlockNode, x: Sources | None) -> Sources:
        self.nonlinear.append(node.name)
        return frozenset((node.name,))

    def emit(self, pos: int, node: Node, value: Sources) -> Sources:
        self.reached[node.name] = value
        return value


def analyse(graph: LayerGraph, p: float = 2.0, transform: LoopTransform | None = None) -> Structure:
    """Find sources, targets and reachability in both modes; slopes from ``transform``
    (default: one slope range per node, :meth:`LoopTransform.of`)."""
    transform = transform or LoopTransform.of(graph, p)
    walks = {mode: _Reach(graph, transform, mode).run() for mode in (LT, CUT)}
    first = walks[LT]
    pre = {j: graph.node(j).inputs[0] for j in first.nonlinear}
    target_set = set(pre.values()) | {graph.output}
    targets = tuple(n.name for n in graph.nodes if n.name in target_set)
    sources = (graph.nodes[0].name, *first.nonlinear)
    reach = {
        (mode, s): {t: s in walk.reached.get(t, ()) for t in targets}
        for mode, walk in walks.items() for s in sources
    }
    return Structure(
        graph, p, transform, sources, tuple(first.nonlinear), tuple(first.activations), pre, targets, reach
    )
