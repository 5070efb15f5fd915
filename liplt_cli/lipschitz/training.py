"""The training path: pairwise constants differentiable in the weights (CRM, eqs. 5–6)."""

from __future__ import annotations

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.engine import METHODS
from liplt_cli.lipschitz.norms import pairwise_dual_norms
from liplt_cli.lipschitz.options import parse_norm
from liplt_cli.lipschitz.power import PowerState, power_norms
from liplt_cli.lipschitz.recursions import liplt, naive
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import CUT, LT, analyse
from liplt_cli.lipschitz.terms import SpecTerms, Term, Terms, output_rows


def pairwise_bound_tensor(
    graph: LayerGraph,
    method: str = "liplt",
    norm: float | str = 2.0,
    state: PowerState | None = None,
    iterations: int = 5,
    through_iterations: bool = False,
) -> tuple[torch.Tensor, PowerState]:
    """K×K pairwise constants :math:`L_{ij}`, differentiable in the graph's weights (CRM, eq. 5–6).

    Inner norms are warm-started power iterations (estimates, as in the paper's training);
    output rows are exact.  ``state`` carries the vectors between calls.  Only ℓ2 is supported.
    ``through_iterations``: differentiate through this call's iterations too (the reference
    training code's gradient; see :mod:`liplt_cli.lipschitz.power`), not only the last product.
    """
    if parse_norm(norm) != 2:
        raise ValueError("training bounds are implemented for the ℓ2 norm")
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'")
    structure = analyse(graph, 2.0)
    inner = [k for k in structure.targets if k != structure.output]
    mode = LT if method == "liplt" else CUT
    pairs = [(k, s) for k in inner for s in structure.sources_of(mode, k)]
    est, state = power_norms(
        structure, mode, pairs, state=state, iterations=iterations, with_grad=True,
        through_iterations=through_iterations,
    )
    terms = Terms()
    for (k, s), v in est.items():
        terms.table[(mode, k, s)] = Term(v, Guarantee.ESTIMATE)
    zero = torch.zeros((), dtype=graph.dtype, device=graph.device)
    out_terms = {s: SpecTerms(zero, zero, pairwise_dual_norms(r, 2.0)) for s, r in output_rows(structure, mode).items()}
    recursion = liplt if method == "liplt" else naive
    return recursion(structure, terms, out_terms, inner).pairwise, state
