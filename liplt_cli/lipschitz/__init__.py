"""Lipschitz engines: naive (eq. 11) and LipLT (Theorem 3 on DAGs), global / per class / pairwise."""

from liplt_cli.lipschitz.engine import METHODS, compute_bounds
from liplt_cli.lipschitz.options import EngineOptions, parse_norm
from liplt_cli.lipschitz.power import PowerState
from liplt_cli.lipschitz.result import BoundResult, Guarantee, MethodBound
from liplt_cli.lipschitz.training import pairwise_bound_tensor

__all__ = [
    "METHODS", "BoundResult", "EngineOptions", "Guarantee", "MethodBound", "PowerState",
    "compute_bounds", "pairwise_bound_tensor", "parse_norm",
]
