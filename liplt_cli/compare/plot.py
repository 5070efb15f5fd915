"""Bar chart of ``liplt compare``: mean pairwise L_ij per method, one panel per model.

Each panel has its own *linear* axis starting at 0, so bar heights are in the ratio of the
values (8.82 vs 8.02 looks like a 10 % difference, as it is) and models of very different
scales stay readable.  The empirical lower bound is a dashed red line across the panel, and
each bar is labelled with its value and its ratio to the lower bound (``4.20×LB``).  Estimates (not
guaranteed) are hatched; a method that did not run on a model keeps its slot, marked
"skipped" with the reason, in that model's panel only.
"""

from __future__ import annotations

from pathlib import Path

from liplt_cli.compare.result import ComparisonResult, ModelComparison
from liplt_cli.display import significant
from liplt_cli.errors import ArgumentError

_COLORS = {
    "naive": "#b0b0b0",
    "liplt": "#1f77b4",
    "liplt-sn": "#6baed6",
    "liplt-aol": "#2ca02c",
    "liplt-sll": "#98df8a",
    "lipsdp": "#9467bd",
}


def _short_reason(reason: str | None) -> str:
    """The first clause of a skip reason (``too large``, ``cvxpy is not installed``)."""
    text = (reason or "").split(":", 1)[0].split(" (", 1)[0].strip()
    return text[:28] + "…" if len(text) > 29 else text


def _model_label(model: str) -> str:
    """The model as a panel names it: its file with the folder it is in (the run), ``runs/a/model.onnx`` → ``a/model.onnx``."""
    parts = Path(model).parts
    text = "/".join(parts[-2:]) if len(parts) >= 2 else model
    return text if len(text) <= 40 else "…" + text[-39:]


def _panel(ax, mc: ModelComparison, bars: list[str], norm: str) -> None:
    lower = mc.row("lower") if "lower" in mc.methods else None
    low = lower.pairwise_mean if lower is not None and not lower.skipped and lower.pairwise_mean else None
    values = [mc.row(m).pairwise_mean for m in bars]
    drawn = [v for v in values if v is not None and v > 0]
    top = max(drawn + ([low] if low else []) + [1e-12]) * 1.18
    for x, (method, value) in enumerate(zip(bars, values)):
        row = mc.row(method)
        if row.skipped or value is None or not value > 0:
            ax.text(x, top * 0.02, f"skipped\n{_short_reason(row.reason)}", rotation=90, ha="center", va="bottom",
                    fontsize=7, color="dimgray")
            continue
        ax.bar(x, value, 0.75, color=_COLORS.get(method, "#444444"), edgecolor="black", linewidth=0.5,
               hatch="//" if row.guarantee == "estimate" else None)
        text = significant(value, 3) + (f"\n{significant(value / low, 3)}×LB" if low else "")
        ax.annotate(text, (x, value), textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", fontsize=7)
    if low:
        ax.axhline(low, color="red", linestyle="--", linewidth=1.2, label=f"LB: empirical lower bound {significant(low, 3)}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, frameon=False)
    ax.set_ylim(0, top)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels(bars, fontsize=8, rotation=30, ha="right")
    ax.set_title(_model_label(mc.model), fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_comparison(result: ComparisonResult, path: str | Path) -> Path:
    """Write a PNG: one panel per model, one bar per upper-bound method (mean L_ij), linear axes
    from 0, the empirical lower bound dashed; estimates hatched, skipped methods marked."""
    path = Path(path)
    if not path.parent.exists():
        raise ArgumentError(f"plot path: directory '{path.parent}' does not exist")
    comparison_figure(result).savefig(path, dpi=120)
    return path


def comparison_figure(result: ComparisonResult):
    """The matplotlib ``Figure`` of ``result`` (on an Agg canvas), as :func:`plot_comparison` writes it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = [m for m in result.methods if m != "lower"]
    n = len(result.models)
    fig = Figure(figsize=(max(5.0, 1.0 + n * (0.9 + 0.55 * len(bars))), 4.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    norm = result.to_dict()["norm"]
    for ax, mc in zip(axes, result.models):
        _panel(ax, mc, bars, norm)
    axes[0].set_ylabel(f"mean pairwise Lipschitz L_ij (ℓ{norm})")
    estimates = any(not r.skipped and r.guarantee == "estimate" and r.method != "lower"
                    for mc in result.models for r in mc.rows)
    fig.suptitle(f"Lipschitz upper bounds by method (ℓ{norm}); linear axes from 0"
                 + ("; hatched: estimates, not bounds" if estimates else ""), fontsize=10)
    fig.tight_layout()
    return fig
