r"""Structural supports of Gram matrices and the probing (colouring) that builds them cheaply.

A Gram matrix :math:`G = AA^\top` (on a target) or :math:`A^\top A` (on a source) of a map
between convolutional feature maps is *local*: column :math:`e_i` of :math:`G` is zero outside the
positions reachable from :math:`i`'s position by going through :math:`A^\top` and back through
:math:`A`.  If the column supports of coordinates :math:`i_1, i_2, \dots` are pairwise disjoint,
one product :math:`G(e_{i_1} + e_{i_2} + \dots)` gives all of these columns at once: each entry of
the result belongs to exactly one of them (Curtis, Powell and Reid's estimation of sparse
Jacobians, 1974).  Coordinates are grouped by channel and by classes of positions whose
supports are disjoint, so a Gram matrix costs ``channels × classes`` products instead of ``n``.

The supports are *structural* and computed, not assumed: every linear operator is replaced by
its pattern (1 where a weight is nonzero, 0 elsewhere) and every scaled activation by
:math:`|c_j|`, and a probe of ones on each position is pushed through the pattern network
(:func:`position_supports`).  An entry of the pattern product is a positive sum over the paths
that reach it, so it is zero exactly where no path exists; and where no path exists, the true
product is an exact zero in floating point too (every term of its sums is a product with an exact
zero), so the probed columns are the columns the plain basis would give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.transform import Mode


@dataclass(frozen=True)
class GramSide:
    """Where a Gram matrix lives: on node ``side``, of the map between ``side`` and ``far``.

    ``on_target``: ``side`` is the map's target and the Gram matrix is :math:`AA^\\top`;
    otherwise ``side`` is its source and the Gram matrix is :math:`A^\\top A`.
    """

    mode: Mode
    side: str
    far: str
    on_target: bool

    @property
    def source(self) -> str:
        return self.far if self.on_target else self.side

    @property
    def target(self) -> str:
        return self.side if self.on_target else self.far


def apply_gram(structure: Structure, spec: GramSide, block: torch.Tensor, mode: Mode | None = None) -> torch.Tensor:
    """:math:`G V` for a batch ``block`` of shape ``(b, *side_shape)`` (one pass each way)."""
    mode = mode or spec.mode
    held: dict[str, torch.Tensor] = {}
    first, second = (adjoint_pass, forward_pass) if spec.on_target else (forward_pass, adjoint_pass)
    first(structure, mode, [("g", spec.side, block)], {"g": {spec.far}}, lambda t, n, x: held.__setitem__("mid", x))
    if "mid" not in held:
        return torch.zeros_like(block)
    second(structure, mode, [("g", spec.far, held["mid"])], {"g": {spec.side}}, lambda t, n, x: held.__setitem__("out", x))
    return held.get("out", torch.zeros_like(block))


def pattern_structure(structure: Structure) -> Structure:
    """The same structure on the *pattern* graph: every weight replaced by 1 where it is nonzero.

    It is held in float32: its entries are sums of products of ones and centres :math:`|c_j|`,
    positive wherever a path exists, and a positive sum of positive terms never rounds to zero
    (nor overflows for any realistic depth), so the supports are exact in any precision."""
    graph = structure.graph.map_tensors(lambda t: (t != 0).to(torch.float32))
    return replace(structure, graph=graph)


def node_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, positions) of a node: the first axis is the channel axis; a node without spatial
    axes is one position with ``n`` channels."""
    if len(shape) < 2:
        return math.prod(shape), 1
    return shape[0], math.prod(shape[1:])


def position_supports(pattern: Structure, spec: GramSide, chunk: int = 256) -> torch.Tensor:
    """Boolean ``(P, P)``: entry ``[p, q]`` says the Gram column of some coordinate at position
    ``p`` may be nonzero at position ``q`` (computed on the pattern network, see the module)."""
    shape = pattern.graph.node(spec.side).out_shape
    channels, positions = node_grid(shape)
    dtype, device = pattern.graph.dtype, pattern.graph.device
    out = torch.zeros((positions, positions), dtype=torch.bool, device=device)
    absolute = spec.mode.to_absolute()
    for start in range(0, positions, chunk):
        stop = min(positions, start + chunk)
        probe = torch.zeros((stop - start, channels, positions), dtype=dtype, device=device)
        probe[torch.arange(stop - start, device=device), :, torch.arange(start, stop, device=device)] = 1.0
        result = apply_gram(pattern, spec, probe.reshape(stop - start, *shape), absolute)
        out[start:stop] = result.reshape(stop - start, channels, positions).ne(0).any(dim=1)
    return out


def colour_positions(supports: torch.Tensor) -> list[torch.Tensor]:
    """Classes of positions whose supports are pairwise disjoint (greedy, in raster order).

    The result is checked, not trusted: every class is verified to cover each position at most
    once before it is returned.
    """
    positions = supports.shape[0]
    unions = torch.zeros((positions, positions), dtype=torch.bool, device=supports.device)
    members: list[list[int]] = []
    for p in range(positions):
        row = supports[p]
        free = ~(unions[: len(members)] & row).any(dim=1)
        c = int(torch.nonzero(free)[0]) if bool(free.any()) else len(members)
        if c == len(members):
            members.append([])
        unions[c] |= row
        members[c].append(p)
    classes = [torch.tensor(m, dtype=torch.long, device=supports.device) for m in members]
    for cls in classes:
        if int(supports[cls].sum(dim=0).max()) > 1:  # pragma: no cover - greedy guarantees it
            raise AssertionError("probing classes overlap")
    return classes


def owners(supports: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """For each position q, the member of ``cls`` whose support holds q, or -1."""
    hits = supports[cls]  # (|cls|, P)
    owner = torch.full((supports.shape[0],), -1, dtype=torch.long, device=supports.device)
    member, position = torch.nonzero(hits, as_tuple=True)
    owner[position] = cls[member]
    return owner
