"""`liplt compare` command line: table, pinned JSON keys, plot, exit codes of user errors."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from liplt_cli.cli.app import run
from liplt_cli.load import save_safetensors
from tests.compare_nets import random_mlp, random_residual

ROW_KEYS = {
    "method", "guarantee", "skipped", "reason", "global", "pairwise_mean", "sum_per_class_mean",
    "sqrt2_global", "gap_to_lower", "seconds", "notes",
}
FAST = ["--samples", "32", "--ascent-steps", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    a, b = d / "mlp.safetensors", d / "res.safetensors"
    save_safetensors(random_mlp([4, 8, 3], seed=0).to(dtype=torch.float32), a)
    save_safetensors(random_residual(seed=1).to(dtype=torch.float32), b)
    return a, b


def test_json_contract_two_models(models, capsys):
    a, b = models
    code = run(["compare", str(a), str(b), "--methods", "naive,liplt,liplt-sn,liplt-aol,lipsdp,lower", "--json", *FAST])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"norm", "device", "methods", "settings", "models", "notes", "warnings"}
    assert data["methods"] == ["naive", "liplt", "liplt-sn", "liplt-aol", "lipsdp", "lower"]
    assert [m["model"] for m in data["models"]] == [str(a), str(b)]
    for m in data["models"]:
        assert set(m) == {"model", "num_classes", "rows", "notes", "warnings"}
        rows = {r["method"]: r for r in m["rows"]}
        for r in rows.values():
            assert set(r) == ROW_KEYS
        low = rows["lower"]["pairwise_mean"]
        assert low > 0 and rows["lower"]["guarantee"] == "estimate (lower bound)"
        for name in ("naive", "liplt", "liplt-sn", "liplt-aol"):
            assert rows[name]["pairwise_mean"] >= low
        assert rows["liplt"]["pairwise_mean"] <= rows["naive"]["pairwise_mean"] * (1 + 1e-9)
        assert rows["liplt-sn"]["pairwise_mean"] == pytest.approx(rows["liplt"]["pairwise_mean"], rel=1e-5)
    mlp_rows = {r["method"]: r for r in data["models"][0]["rows"]}
    if importlib.util.find_spec("cvxpy") is not None:
        assert not mlp_rows["lipsdp"]["skipped"] and mlp_rows["lipsdp"]["guarantee"] == "upper bound"
        assert mlp_rows["lower"]["pairwise_mean"] <= mlp_rows["lipsdp"]["pairwise_mean"]
        assert mlp_rows["lipsdp"]["global"] <= mlp_rows["liplt"]["global"] * (1 + 1e-6)
    res_rows = {r["method"]: r for r in data["models"][1]["rows"]}
    assert res_rows["lipsdp"]["skipped"] and res_rows["lipsdp"]["reason"]


def test_table_and_plot(models, tmp_path, capsys):
    a, _ = models
    png = tmp_path / "compare.png"
    code = run(["compare", str(a), "--methods", "naive,liplt,lower", "--plot", str(png), *FAST])
    captured = capsys.readouterr()
    assert code == 0
    assert "mean L_ij" in captured.out and "estimate (lower bound)" in captured.out and "liplt" in captured.out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_linf_norm(models, capsys):
    a, _ = models
    assert run(["compare", str(a), "--norm", "inf", "--methods", "naive,liplt,liplt-sll,lower", "--json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in data["models"][0]["rows"]}
    assert data["norm"] == "inf" and rows["liplt-sll"]["skipped"] and rows["liplt"]["sqrt2_global"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "does-not-exist.onnx"], "does not exist"),
        (["compare", "{a}", "--methods", "naive,crown"], "unknown method"),
        (["compare", "{a}", "--plot", "out.jpg"], ".png"),
        (["compare", "{a}", "--plot", "/no/such/dir/c.png"], "does not exist"),
        (["compare", "{a}", "--mean", "0.1,x"], "--mean"),
    ],
)
def test_user_errors_exit_2(models, args, message, capsys):
    a, _ = models
    code = run([x.format(a=a) for x in args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error:") and message in err
