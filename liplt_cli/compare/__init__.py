"""``liplt compare``: Lipschitz methods side by side (result objects, runner, plot)."""

from liplt_cli.compare.plot import plot_comparison
from liplt_cli.compare.result import ComparisonResult, MethodRow, ModelComparison
from liplt_cli.compare.run import COMPARE_METHODS, DEFAULT_METHODS, compare_graph, compare_models, parse_methods

__all__ = [
    "COMPARE_METHODS", "DEFAULT_METHODS", "ComparisonResult", "MethodRow", "ModelComparison",
    "compare_graph", "compare_models", "parse_methods", "plot_comparison",
]
