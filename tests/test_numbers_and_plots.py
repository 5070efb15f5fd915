"""Numbers and plots as a reader expects them (issue: "numbers and plots").

* ε is printed as it was typed (``36/255``), in the table, the gate line, the JSON ``eps_text``
  and the plot; the library's ``certify`` takes the same forms.
* Table cells carry the same number of significant digits (``523.0`` beside ``1.517``).
* Messages say what is meant: ``--mean`` on a one-channel input, LipSDP's input dimension.
* The library: a guarantee prints as its label, ``compute_bounds`` names bad settings.
* Plots: legends off the curves, certified labels off the PGD line, ε lines in a legend, a
  title naming model and split; the comparison on linear axes from 0, no "some models" legend.

CLI cases go through the real entry point (``liplt_cli.cli.app.run``) and check the exit code
and the message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from liplt_cli.certify import certify
from liplt_cli.certify.plot import certify_figure
from liplt_cli.certify.result import CertifyResult
from liplt_cli.compare.plot import comparison_figure
from liplt_cli.compare.result import ComparisonResult, MethodRow, ModelComparison
from liplt_cli.data import load_dataset
from liplt_cli.display import significant
from liplt_cli.lipschitz import EngineOptions, Guarantee, compute_bounds
from liplt_cli.load import load_model
from tests.conftest import export_onnx
from tests.hostile import run_cli

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 784-16-10 ReLU net (constants in well under a second)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    return export_onnx(model, (1, 28, 28), tmp_path_factory.mktemp("small") / "small.onnx")


# ============================================================================ ε as typed
def test_certify_prints_eps_as_typed(small_model, capsys) -> None:
    code, out, err = run_cli(capsys, ["certify", small_model, "--limit", "20", "--no-attack",
                                      "--eps", "36/255,0.5,8/255", "--min-certified", "0"])
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if "%" in ln and "│" in ln]
    assert [r.split("│")[1].strip() for r in rows] == ["36/255", "0.5", "8/255"], out
    assert "0.1412" not in out and "0.03137" not in out
    assert "at ε=0.5 vs --min-certified" in out  # the gate names the largest ε as typed


def test_certify_json_keeps_values_and_texts(small_model, capsys) -> None:
    code, out, err = run_cli(capsys, ["certify", small_model, "--limit", "20", "--no-attack",
                                      "--eps", "36/255, 1.58", "--min-certified", "0", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["eps"] == [36 / 255, 1.58] and doc["eps_text"] == ["36/255", "1.58"]
    assert doc["gate"]["eps_text"] == "1.58"


def test_library_certify_takes_what_eps_takes(small_model) -> None:
    graph = load_model(small_model)
    data = load_dataset(None, limit=20)
    result = certify(graph, data, "36/255,72/255", attack=False)
    assert result.eps == (36 / 255, 72 / 255) and result.eps_text == ("36/255", "72/255")
    assert certify(graph, data, [36 / 255], attack=False).eps_text == ("0.1412",)  # a float: 4 digits
    assert certify(graph, data, 1.58, attack=False).eps_text == ("1.58",)


# ============================================================================ digits
@pytest.mark.parametrize("value, text", [(523.04, "523.0"), (1.517, "1.517"), (0.5, "0.5000"), (13.7, "13.70"),
                                         (12345.6, "12346"), (9999.95, "10000"), (0.0, "0"), (1.234e-5, "1.234e-05"),
                                         (float("inf"), "inf")])
def test_significant_digits(value, text) -> None:
    assert significant(value) == text


def _significant_digits(cell: str) -> int | None:
    if not re.fullmatch(r"\d+(\.\d+)?", cell):
        return None
    digits = cell.replace(".", "").lstrip("0")
    return len(digits) if "." in cell else max(len(digits), 4)


@pytest.fixture(scope="module")
def round_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """z = 2.5·x[:10]: global L = 2.5 exactly, L_ij = 2.5·√2 (a value "2.5" used to lose its digits)."""
    linear = torch.nn.Linear(784, 10, bias=False)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[:, :10] = 2.5 * torch.eye(10)
    model = torch.nn.Sequential(torch.nn.Flatten(), linear)
    return export_onnx(model, (1, 28, 28), tmp_path_factory.mktemp("round") / "round.onnx")


def test_bound_table_cells_have_four_significant_digits(round_model, capsys) -> None:
    code, out, err = run_cli(capsys, ["bound", round_model])
    assert code == 0, err
    assert "2.500" in out and "3.536" in out, out
    rows = [ln for ln in out.splitlines() if ln.startswith("│") and ("naive" in ln or "liplt" in ln)]
    cells = [c.strip() for r in rows for c in r.split("│")[2:7]]
    counted = [(c, _significant_digits(c)) for c in cells if _significant_digits(c) is not None]
    assert len(counted) >= 8, out
    assert all(n == 4 for _, n in counted), counted


# ============================================================================ messages
def test_mean_on_a_one_channel_input_says_one_value(small_model, capsys) -> None:
    code, _, err = run_cli(capsys, ["bound", small_model, "--mean", "0.1,0.2,0.3", "--std", "0.3"])
    assert code == 2
    assert err.startswith("error: --mean needs 1 value (the input [1, 28, 28] has 1 channel), got 3"), err
    assert "1 or 1" not in err


def test_lipsdp_too_large_names_the_models_input_size(small_model, capsys) -> None:
    pytest.importorskip("cvxpy")
    code, out, err = run_cli(capsys, ["compare", small_model, "--methods", "lipsdp", "--lipsdp-max-neurons", "20",
                                      "--json"])
    assert code == 0, err
    (row,) = json.loads(out)["models"][0]["rows"]
    assert row["skipped"] and "16 hidden neurons + 16 input directions" in row["reason"]
    assert "reads 784 inputs" in row["reason"], row["reason"]


# ============================================================================ the library
def test_guarantee_prints_as_its_label() -> None:
    assert str(Guarantee.EXACT) == "exact" and f"{Guarantee.UPPER_BOUND}" == "upper bound"
    assert f"[{Guarantee.ESTIMATE:>9}]" == "[ estimate]"


def test_readme_library_snippet_prints_labels(small_model, capsys) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"Library use:\s*```python\n(.*?)```", readme, re.S).group(1)
    exec(snippet.replace('"model.onnx"', repr(str(small_model))), {})  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out.split()
    assert printed[1] == "exact" and float(printed[0]) > 0, printed


def test_compute_bounds_takes_the_clis_norms_and_names_bad_settings(small_model) -> None:
    graph = load_model(small_model)
    assert compute_bounds(graph, EngineOptions(norm="inf")).norm == float("inf")
    assert compute_bounds(graph, EngineOptions(norm="1")).norm == 1.0
    with pytest.raises(ValueError, match=r"write compute_bounds\(graph, EngineOptions\(norm='inf'\)\)"):
        compute_bounds(graph, norm="inf")
    with pytest.raises(ValueError, match=r"write EngineOptions\(norm='inf'\)"):
        compute_bounds(graph, "inf")
    with pytest.raises(ValueError, match="the input norm must be 2, inf or 1"):
        compute_bounds(graph, EngineOptions(norm="3"))


# ============================================================================ certify plot
def _result(eps_text=("36/255", "1", "1.58", "2.5"), n=400, accuracy=0.9) -> CertifyResult:
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 10, (n,), generator=gen)
    prediction = torch.where(torch.rand(n, generator=gen) < accuracy, label, (label + 1) % 10)
    radius = torch.where(prediction == label, torch.rand(n, generator=gen, dtype=torch.float64) * 3, torch.zeros(n, dtype=torch.float64))
    eps = tuple(float(eval(t)) for t in eps_text)  # noqa: S307 - fixed test literals
    pgd = torch.stack([(radius > e * 0.6) & (prediction == label) for e in eps])
    return CertifyResult(model="runs/mnist_a/model.safetensors",
                         data={"name": "mnist", "description": f"MNIST test split, {n} of 10000 images from /x/t10k.gz"},
                         norm=2.0, eps=eps, eps_text=eps_text, index=torch.arange(n), label=label,
                         prediction=prediction, radius=radius, pgd_robust=pgd, constants_method="liplt",
                         guarantee=Guarantee.EXACT, pairwise_mean=1.0)


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_certify_plot_reads_right() -> None:
    fig = certify_figure(_result())
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    ax, hx = fig.axes
    for axis in (ax, hx):  # the legends never cover a curve: they lie outside the axes
        legend = axis.get_legend()
        assert legend is not None
        assert not _boxes_overlap(legend.get_window_extent(renderer), axis.get_window_extent(renderer))
    # the certified-% labels stay off the PGD line
    (pgd,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("PGD")]
    xy = pgd.get_xydata()
    dense = np.concatenate([np.linspace(xy[i], xy[i + 1], 200) for i in range(len(xy) - 1)])
    points = ax.transData.transform(dense)
    labels = [t for t in ax.texts if t.get_text().endswith("%")]
    assert len(labels) == 4
    for text in labels:
        box = text.get_window_extent(renderer)
        inside = (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
        assert not inside.any(), text.get_text()
    # the histogram's ε lines are in its legend, as typed
    names = [t.get_text() for t in hx.get_legend().get_texts()]
    assert any(n.startswith("ε = 36/255") for n in names) and any(n.startswith("ε = 2.5") for n in names), names
    # the title names the run and the split
    title = fig._suptitle.get_text()
    assert "runs/mnist_a/model.safetensors" in title and "MNIST test split" in title and "/x/" not in title


def test_certify_plot_written_by_the_cli(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "curve"
    code, stdout, err = run_cli(capsys, ["certify", small_model, "--limit", "20", "--no-attack", "--eps", "8/255",
                                         "--plot", out])
    assert code == 0, err
    assert f"plot written to {out}.png" in stdout
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ============================================================================ compare plot
def _comparison(models: int) -> ComparisonResult:
    def rows(values, low, lipsdp):
        out = [MethodRow(m, "exact" if m in ("naive", "liplt") else "upper bound", 1.0, pairwise_mean=v)
               for m, v in values.items()]
        out.append(MethodRow("lipsdp", "skipped", 0.1, reason="too large: 192 hidden neurons") if lipsdp is None
                   else MethodRow("lipsdp", "upper bound", 0.1, pairwise_mean=lipsdp))
        return (*out, MethodRow("lower", "estimate (lower bound)", 1.0, pairwise_mean=low))

    a = ModelComparison("runs/a/model.onnx", 10, rows({"naive": 8.82, "liplt": 8.02}, 2.1, None))
    b = ModelComparison("runs/b/model.onnx", 10, rows({"naive": 523.04, "liplt": 13.7}, 3.3, 13.2))
    return ComparisonResult(2.0, "cpu", ("naive", "liplt", "lipsdp", "lower"), (a, b)[:models])


@pytest.mark.parametrize("models", [1, 2])
def test_comparison_plot_bars_start_at_zero_on_a_linear_axis(models) -> None:
    fig = comparison_figure(_comparison(models))
    fig.canvas.draw()
    assert len(fig.axes) == models
    for ax in fig.axes:
        assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
        assert all(p.get_y() == 0 for p in ax.patches)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([8.82, 8.02])  # 8.82 looks 10 % taller than 8.02, as it is
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert not any("some models" in t or "not applicable" in t for t in texts), texts
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("skipped")] == ["skipped\ntoo large"]
    if models == 2:
        assert not any(t.get_text().startswith("skipped") for t in fig.axes[1].texts)
