"""Lipschitz engines: naive (eq. 11) and LipLT (Theorem 3 on DAGs), global / per class / pairwise."""

from liplt_cli.lipschitz.engine import METHODS, EngineOptions, compute_bounds, pairwise_bound_tensor
from liplt_cli.lipschitz.power import PowerState
from liplt_cli.lipschitz.result import BoundResult, Guarantee, MethodBound

__all__ = [
    "METHODS", "BoundResult", "EngineOptions", "Guarantee", "MethodBound", "PowerState",
    "compute_bounds", "pairwise_bound_tensor",
]
