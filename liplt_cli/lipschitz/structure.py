r"""The loop-transformation structure of a layer graph (Theorem 3 generalised to DAGs).

Loop transformation (eq. 12) rewrites every activation node j as
:math:`\varphi_j(y) = c_j\,y + \psi_j(y)` with :math:`c_j = (\alpha_j+\beta_j)/2` and
:math:`\psi_j` :math:`r_j = (\beta_j-\alpha_j)/2`-Lipschitz.  A Lipschitz block (MaxPool) is
treated as :math:`c_j = 0`, :math:`r_j = \mathrm{Lip}_j`.  The network becomes a *linear*
network (``mode="lt"``) into which each :math:`\psi_j(y_j)` is injected at node j's output, so
every *target* (the input of a nonlinear node, i.e. a pre-activation, or the output) satisfies

.. math:: y_k = A_{k,0}\,x_0 + \sum_j A_{k,j}\,\psi_j(y_j)       \qquad \text{(Lemma 1, eq. 15)}

and :math:`m_k = \|A_{k,0}\| + \sum_j r_j \|A_{k,j}\|\, m_j` bounds the Lipschitz constant of
:math:`x_0 \mapsto y_k` (eq. 16).  The naive bound (eq. 11) instead cuts every nonlinear node
(``mode="cut"``): :math:`B_{k,s}` is the linear map from source s (the input or a nonlinear
node's output) to target k along paths through no other nonlinear node, and
:math:`N_k = \sum_s \|B_{k,s}\|\,\mathrm{Lip}_s\,N_{\mathrm{pre}(s)}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import ActivationNode, BlockNode, InputNode

LT = "lt"
CUT = "cut"


@dataclass(frozen=True)
class Structure:
    """Sources, targets and per-node constants of a graph for input norm ``p``."""

    graph: LayerGraph
    p: float
    sources: tuple[str, ...]  # input node first, then nonlinear nodes in topological order
    nonlinear: tuple[str, ...]
    pre: dict[str, str]  # nonlinear node -> its input node (a target)
    center: dict[str, float]  # c_j (0 for blocks)
    radius: dict[str, float]  # r_j
    lip: dict[str, float]  # Lipschitz constant of the nonlinear node's map, in ℓp
    targets: tuple[str, ...]  # pre-activation nodes and the output, in topological order
    reach: dict[tuple[str, str], dict[str, bool]]  # (mode, source) -> target -> reachable

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

    def reaches(self, mode: str, source: str, target: str) -> bool:
        return self.reach[(mode, source)].get(target, False)

    def sources_of(self, mode: str, target: str) -> list[str]:
        """Sources whose injection reaches ``target`` in ``mode`` (in topological order)."""
        return [s for s in self.sources if self.reaches(mode, s, target)]


def analyse(graph: LayerGraph, p: float = 2.0) -> Structure:
    """Find sources, targets, (c_j, r_j, Lip_j) and reachability in both modes."""
    nonlinear: list[str] = []
    pre: dict[str, str] = {}
    center: dict[str, float] = {}
    radius: dict[str, float] = {}
    lip: dict[str, float] = {}
    for node in graph.nodes:
        if isinstance(node, ActivationNode):
            a = node.activation
            nonlinear.append(node.name)
            pre[node.name] = node.inputs[0]
            center[node.name] = a.center
            radius[node.name] = a.radius
            lip[node.name] = a.lipschitz
        elif isinstance(node, BlockNode):
            nonlinear.append(node.name)
            pre[node.name] = node.inputs[0]
            center[node.name] = 0.0
            lip[node.name] = node.block.lipschitz(p)
            radius[node.name] = lip[node.name]
    target_set = set(pre.values()) | {graph.output}
    targets = tuple(n.name for n in graph.nodes if n.name in target_set)
    input_name = graph.nodes[0].name
    sources = (input_name, *nonlinear)
    reach: dict[tuple[str, str], dict[str, bool]] = {}
    for mode in (LT, CUT):
        for s in sources:
            reached: set[str] = {s}
            for node in graph.nodes[graph.position(s) + 1 :]:
                if not any(i in reached for i in node.inputs):
                    continue
                if isinstance(node, BlockNode):
                    continue
                if isinstance(node, ActivationNode) and (mode == CUT or center[node.name] == 0.0):
                    continue
                if isinstance(node, InputNode):
                    continue
                reached.add(node.name)
            reach[(mode, s)] = {t: t in reached for t in targets}
    return Structure(graph, p, sources, tuple(nonlinear), pre, center, radius, lip, targets, reach)
