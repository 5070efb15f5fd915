r"""CRM pairwise constants for Proposition 2 models (eq. 6), from the layer structure.

The training loop builds the layer graph once from the module
(:func:`liplt_cli.load.graph_from_module`); on it, each layer's scales √ρ and t are buffers,
i.e. constants.  Each step, :class:`Prop2TrainingBound` instead

1. substitutes the step's differentiable scales (``Prop2Layer.live_scales``, written by the
   training-mode forward: :math:`s = \sqrt\rho`, :math:`t = -2s/((\alpha+\beta) D(W, q))`) into
   a copy of the graph, and runs the generic recursion on it (LipLT or naive, warm-started power
   iterations as for any model): :math:`L^{\mathrm{gen}}_{ij}(W, q, \rho, \dots)`;
2. runs the same recursion on the collapsed graph (:func:`liplt_cli.lipschitz.designed.collapse`)
   where each layer is a cut of constant :math:`\sqrt{\rho_k}`, its designed per-layer bound:
   :math:`L^{\mathrm{des}}_{ij}(\rho, \text{stem}, \text{downsampling}, \text{head})`;
3. returns :math:`L_{ij} = \min(L^{\mathrm{gen}}_{ij}, L^{\mathrm{des}}_{ij})` -- the training
   analogue of what ``compute_bounds`` certifies on the exported model (LipLT with designed terms).

Both are estimates (power iteration), like every training constant; each is an upper bound once
its iterations converge, so is the minimum.  For T = SN the designed term √ρ also relies on the
layer's own power-iteration estimate of ‖W‖₂ (from below, warm-started across steps): the
training-mode layer is √ρ-Lipschitz only once that estimate has converged.  (The exported model
uses certified scales, and its bounds are re-certified from the weights.)  The gradient of each entry flows through the smaller
term: into W, q and ρ through T and √ρ (generic), or into ρ and the linear maps (designed).
Both runs share one :class:`~liplt_cli.lipschitz.power.PowerState` (the collapsed graph's
nodes are renamed, so their vectors never collide), so checkpoints and ``--resume`` are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.nodes import LinearNode
from liplt_cli.lipschitz.designed import BlockMatch, collapse, find_blocks
from liplt_cli.lipschitz.power import PowerState
from liplt_cli.lipschitz.training import pairwise_bound_tensor
from liplt_cli.train.lipschitz_layers import Prop2Layer

__all__ = ["Prop2TrainingBound"]

_PREFIX = "designed:"


class Prop2TrainingBound:
    """Pairwise constants of a Proposition 2 model for CRM training (module docstring).

    ``graph`` is the graph traced once from ``model`` (its layers in training form:
    ``s·x + Wᵀ·diag(t)·φ(Wx + b)``); ``layer_graph`` gives it back (sound validation uses it).
    """

    def __init__(self, model: nn.Module, graph: LayerGraph):
        self.model = model
        self.layer_graph = graph
        self.pairs: list[tuple[BlockMatch, Prop2Layer]] = []
        layers = [m for m in model.modules() if isinstance(m, Prop2Layer)]
        blocks = find_blocks(graph)
        for block in blocks:
            inner = graph.node(block.inner).op.weight
            layer = next((lay for lay in layers if lay.weight is inner), None)
            if layer is not None and block.diag is not None:
                self.pairs.append((block, layer))
        if len(self.pairs) != len(layers):
            raise ValueError(
                f"found {len(self.pairs)} of the model's {len(layers)} Proposition 2 layers in its layer graph"
            )

    def _live_graph(self) -> tuple[LayerGraph, dict[str, torch.Tensor]]:
        """The graph with this step's differentiable scales, and each block's √ρ (by Add node)."""
        replace_op: dict[str, torch.Tensor] = {}
        constants: dict[str, torch.Tensor] = {}
        for block, layer in self.pairs:
            live = layer.live_scales
            if live is None:  # no training-mode forward yet: the buffers' values, as constants
                s, t = layer.identity_scale, layer.t_scale
            else:
                s, t = live
            replace_op[block.scale] = s
            replace_op[block.diag] = t  # type: ignore[index]
            constants[block.add] = s
        nodes = []
        for node in self.layer_graph.nodes:
            if node.name in replace_op:
                op = node.op
                node = LinearNode(node.name, node.inputs, type(op)(
                    replace_op[node.name].reshape(op.scale.shape), op.shift, op.in_shape, op.label), node.source)
            nodes.append(node)
        return LayerGraph(tuple(nodes), self.layer_graph.output, self.layer_graph.notes), constants

    def pairwise_bound(
        self, method: str, state: PowerState | None, iterations: int, through: bool = False,
    ) -> tuple[torch.Tensor, PowerState]:
        """K×K :math:`L_{ij} = \\min(L^{gen}_{ij}, L^{des}_{ij})` (module docstring), differentiable."""
        live, constants = self._live_graph()
        generic, state = pairwise_bound_tensor(live, method=method, state=state, iterations=iterations,
                                               through_iterations=through)
        designed, state = pairwise_bound_tensor(collapse(live, constants, prefix=_PREFIX), method=method, state=state,
                                                iterations=iterations, through_iterations=through)
        return torch.minimum(generic, designed), state

    def parts(self, method: str, state: PowerState | None, iterations: int) -> tuple[torch.Tensor, torch.Tensor, PowerState]:
        """The two terms separately (generic, designed), for inspection and tests."""
        live, constants = self._live_graph()
        generic, state = pairwise_bound_tensor(live, method=method, state=state, iterations=iterations)
        designed, state = pairwise_bound_tensor(collapse(live, constants, prefix=_PREFIX), method=method, state=state,
                                                iterations=iterations)
        return generic, designed, state
