"""Engine settings arrive once, as EngineOptions, and the norm is read from it in every form."""

from __future__ import annotations

import math

import pytest

from liplt_cli.lipschitz import EngineOptions, compute_bounds, pairwise_bound_tensor, parse_norm
from tests.oracle import mlp

GRAPH = mlp([4, 6, 5, 3], "relu", seed=7)


@pytest.mark.parametrize("given, p", [(2, 2.0), ("2", 2.0), (2.0, 2.0), ("inf", math.inf), (math.inf, math.inf),
                                      ("Inf", math.inf), (1, 1.0), ("1", 1.0), (" 1.0 ", 1.0)])
def test_the_norm_is_accepted_as_the_cli_accepts_it(given, p):
    assert parse_norm(given) == p
    assert EngineOptions(norm=given).norm == p


@pytest.mark.parametrize("given", [3, "3", "l2", "two", None, True, -math.inf, math.nan, 0, [2]])
def test_an_unsupported_norm_is_a_clear_value_error(given):
    with pytest.raises(ValueError, match=r"unsupported norm .*must be 2, inf or 1"):
        EngineOptions(norm=given)


@pytest.mark.parametrize("norm", ["inf", "1"])
def test_options_alone_set_the_norm(norm):
    result = compute_bounds(GRAPH, options=EngineOptions(norm=norm))
    assert result.norm == parse_norm(norm)
    assert result.to_dict()["norm"] == norm
    shorthand = compute_bounds(GRAPH, EngineOptions(norm=parse_norm(norm)))
    l2 = compute_bounds(GRAPH, EngineOptions())
    for method in ("naive", "liplt"):
        assert result.methods[method].pairwise == shorthand.methods[method].pairwise
        assert result.methods[method].global_ != l2.methods[method].global_


def test_options_alone_set_fast_and_iterations():
    result = compute_bounds(GRAPH, EngineOptions(fast=True, iterations=7), methods=("liplt",))
    assert result.methods["liplt"].guarantee.value == "estimate"
    assert result.methods["liplt"].iterations == 7 and result.settings["iterations"] == 7


def test_keyword_settings_are_refused_naming_engine_options():
    """Settings arrive once, as EngineOptions: a keyword is a clear error showing the call to write."""
    for kwargs, shown in (({"norm": "inf"}, "EngineOptions(norm='inf')"), ({"fast": True, "iterations": 3},
                                                                           "EngineOptions(fast=True, iterations=3)")):
        with pytest.raises(ValueError, match="takes its settings as one EngineOptions") as info:
            compute_bounds(GRAPH, **kwargs)
        assert shown in str(info.value)
    assert compute_bounds(GRAPH, EngineOptions(norm="inf")).norm == math.inf


def test_options_and_keyword_settings_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        compute_bounds(GRAPH, EngineOptions(norm="inf"), norm=2)
    with pytest.raises(ValueError, match="EngineOptions"):
        compute_bounds(GRAPH, {"norm": 2})


def test_training_path_reads_the_norm_the_same_way():
    L, _ = pairwise_bound_tensor(GRAPH, norm="2", iterations=3)
    assert L.shape == (3, 3)
    with pytest.raises(ValueError, match="ℓ2"):
        pairwise_bound_tensor(GRAPH, norm="inf")
    with pytest.raises(ValueError, match="unsupported norm"):
        pairwise_bound_tensor(GRAPH, norm="euclid")


def test_other_library_entry_points_read_the_norm_the_same_way():
    from liplt_cli.compare.run import compare_graph
    from liplt_cli.lipschitz.lipsdp import lipsdp_bounds
    from liplt_cli.lipschitz.refine import refined_bounds

    assert refined_bounds(GRAPH, "sn", norm="2").method == "liplt-sn"
    assert refined_bounds(GRAPH, "sn", norm="inf").reason.startswith("the Theorem 2 refinement is for the ℓ2")
    assert "ℓ2 norm only" in lipsdp_bounds(GRAPH, norm="1").reason
    comparison = compare_graph(GRAPH, norm="inf", methods=("naive", "liplt"))
    direct = compute_bounds(GRAPH, EngineOptions(norm=math.inf))
    assert comparison.rows[1].global_ == direct.methods["liplt"].global_
    with pytest.raises(ValueError, match="unsupported norm"):
        compare_graph(GRAPH, norm="l2", methods=("naive",))
