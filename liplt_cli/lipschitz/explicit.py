r"""Exact norms of inner maps, made explicit from their narrower side.

A map :math:`A_{k,s}` (or :math:`B_{k,s}`) is only available as a propagation.  When its
narrower side is small enough (:func:`affordable`), basis vectors are pushed through it in
float64 -- forward from the source when the source is narrower (giving the columns), back from
the target otherwise (giving the rows) -- in chunks of ``options.chunk``, and its norm is taken
exactly (:func:`~liplt_cli.lipschitz.norms.matrix_norm_explicit`).  The terms are labelled
*exact*.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from liplt_cli.lipschitz.norms import matrix_norm_explicit
from liplt_cli.lipschitz.options import EngineOptions
from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.terms import Terms
from liplt_cli.lipschitz.transform import Mode

Progress = Callable[[str, int, int], None]


def basis_chunks(
    shape: tuple[int, ...], chunk: int, dtype: torch.dtype, device: torch.device
) -> Iterator[torch.Tensor]:
    """The standard basis of ``shape``, ``chunk`` vectors at a time, as batches ``(b, *shape)``."""
    n = math.prod(shape)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = torch.zeros((stop - start, n), dtype=dtype, device=device)
        block[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        yield block.reshape(stop - start, *shape)


def affordable(structure: Structure, k: str, s: str, options: EngineOptions) -> bool:
    """Is :math:`A_{k,s}` small enough to be made explicit (see :class:`EngineOptions`)?"""
    a, b = sorted((structure.dim(k), structure.dim(s)))
    return a <= options.explicit_max_side and float(a) ** 2 * b <= options.explicit_budget


def explicit_terms(
    structure: Structure, mode: Mode, pairs: list[tuple[str, str]], options: EngineOptions, terms: Terms,
    progress: Progress | None,
) -> None:
    """Exact norms of the maps in ``pairs`` by building them from their narrower side."""
    graph = structure.graph
    dtype, device = graph.dtype, graph.device
    by_source: dict[str, list[str]] = {}
    by_target: dict[str, list[str]] = {}
    for k, s in pairs:
        if structure.dim(s) <= structure.dim(k):
            by_source.setdefault(s, []).append(k)
        else:
            by_target.setdefault(k, []).append(s)
    # From the narrow side: basis vectors pushed forward from a source give Aᵀ (columns),
    # basis rows pulled back from a target give A (rows).  Key order of ``terms`` is (k, s).
    jobs = [(s, ks, forward_pass, True) for s, ks in by_source.items()]
    jobs += [(k, ss, adjoint_pass, False) for k, ss in by_target.items()]
    p = structure.p
    # progress: one step per chunk of basis vectors and one per norm, over all jobs of this mode
    steps = sum(math.ceil(math.prod(graph.node(s).out_shape) / options.chunk) + len(e) for s, e, _, _ in jobs)
    step = 0
    if progress and jobs:
        progress(f"explicit maps ({mode.value}): basis vectors", step, steps)
    for start, ends, propagate, columns in jobs:
        parts: dict[str, list[torch.Tensor]] = {e: [] for e in ends}
        for block in basis_chunks(graph.node(start).out_shape, options.chunk, dtype, device):
            propagate(
                structure, mode, [(start, start, block)], {start: set(ends)},
                lambda t, n, x: parts[n].append(x.reshape(x.shape[0], -1)),
            )
            step += 1
            if progress:
                progress(f"explicit maps ({mode.value}): basis vectors", step, steps)
        if progress:
            progress(f"explicit maps ({mode.value}): exact norms", step, steps)
        for e in ends:
            if parts[e]:
                stacked = torch.cat(parts[e], dim=0)
                value = matrix_norm_explicit(stacked.T if columns else stacked, p)
            else:
                value = torch.zeros((), dtype=dtype, device=device)
            k, s = (e, start) if columns else (start, e)
            terms.offer(mode, k, s, value, Guarantee.EXACT)
            step += 1
            if progress:
                progress(f"explicit maps ({mode.value}): exact norms", step, steps)
