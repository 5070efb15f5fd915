"""`liplt compare` library side: the interval lower ≤ every method, LipLT ≤ naive, SN = LipLT."""

from __future__ import annotations

import importlib.util
import math

import pytest

from liplt_cli.compare import COMPARE_METHODS, compare_graph, compare_models, parse_methods, plot_comparison
from liplt_cli.errors import ArgumentError
from tests.compare_nets import random_mlp, random_residual

HAVE_CVXPY = importlib.util.find_spec("cvxpy") is not None
NETS = {
    "mlp": lambda: random_mlp([4, 8, 3], seed=0),
    "deep": lambda: random_mlp([5, 8, 8, 8, 4], seed=6),
    "tanh": lambda: random_mlp([4, 9, 6, 3], "tanh", seed=1),
    "residual": lambda: random_residual(seed=2),
}
FAST = dict(lower_samples=48, lower_steps=6)


@pytest.mark.parametrize("net", sorted(NETS))
def test_lower_bound_below_every_method_and_liplt_below_naive(net):
    graph = NETS[net]()
    # LipSDP (one SDP per spec) only on the smallest net, to keep the default run short
    methods = [m for m in COMPARE_METHODS if m != "lipsdp" or (HAVE_CVXPY and net == "mlp")]
    mc = compare_graph(graph, net, methods=methods, **FAST)
    lower = mc.row("lower")
    assert lower.guarantee == "estimate (lower bound)"
    for row in mc.rows:
        if row.method == "lower" or row.skipped:
            continue
        assert row.guarantee in ("exact", "upper bound"), (row.method, row.notes)
        assert lower.pairwise_mean <= row.pairwise_mean
        assert lower.sum_per_class_mean <= row.sum_per_class_mean
        assert lower.global_ <= row.global_
        assert row.gap >= 1.0
    naive, liplt, sn = mc.row("naive"), mc.row("liplt"), mc.row("liplt-sn")
    assert liplt.pairwise_mean <= naive.pairwise_mean * (1 + 1e-9)
    assert liplt.global_ <= naive.global_ * (1 + 1e-9)
    assert sn.pairwise_mean == pytest.approx(liplt.pairwise_mean, rel=1e-5)
    assert sn.sum_per_class_mean == pytest.approx(liplt.sum_per_class_mean, rel=1e-5)
    assert sn.global_ == pytest.approx(liplt.global_, rel=1e-5)
    assert sn.sqrt2_global == pytest.approx(math.sqrt(2) * sn.global_)


def test_residual_skips_lipsdp_with_reason():
    mc = compare_graph(random_residual(), "res", methods=["lipsdp", "naive"])
    row = mc.row("lipsdp")
    assert row.skipped and row.reason and row.gap is None
    assert mc.methods == ["lipsdp", "naive"]


def test_linf_norm_skips_l2_only_methods_and_drops_sqrt2():
    mc = compare_graph(random_mlp([3, 6, 3]), "m", norm=math.inf, methods=["naive", "liplt", "liplt-aol", "lower"], **FAST)
    assert mc.row("liplt-aol").skipped and "ℓ2" in mc.row("liplt-aol").reason
    assert mc.row("liplt").sqrt2_global is None
    assert mc.row("lower").pairwise_mean <= mc.row("liplt").pairwise_mean <= mc.row("naive").pairwise_mean * (1 + 1e-9)


def test_several_models_and_plot(tmp_path):
    result = compare_models(
        [("a", random_mlp([4, 8, 3], seed=0)), ("b", random_residual(seed=1))],
        methods=["naive", "liplt", "liplt-aol", "lower"],
        **FAST,
    )
    assert [m.model for m in result.models] == ["a", "b"]
    d = result.to_dict()
    assert d["norm"] == "2" and d["methods"] == ["naive", "liplt", "liplt-aol", "lower"]
    out = plot_comparison(result, tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ArgumentError):
        plot_comparison(result, tmp_path / "missing" / "c.png")


def test_parse_methods():
    assert parse_methods("naive, liplt,naive") == ("naive", "liplt")
    assert parse_methods("all") == COMPARE_METHODS
    with pytest.raises(ArgumentError, match="unknown method"):
        parse_methods("naive,crown")
    with pytest.raises(ArgumentError):
        parse_methods(" , ")
