"""Bar chart of ``liplt compare``: mean pairwise L_ij per method (log scale), lower bound marked."""

from __future__ import annotations

from pathlib import Path

from liplt_cli.compare.result import ComparisonResult
from liplt_cli.errors import ArgumentError

_COLORS = {
    "naive": "#b0b0b0",
    "liplt": "#1f77b4",
    "liplt-sn": "#6baed6",
    "liplt-aol": "#2ca02c",
    "liplt-sll": "#98df8a",
    "lipsdp": "#9467bd",
}


def plot_comparison(result: ComparisonResult, path: str | Path) -> Path:
    """Write a PNG: for each model a group of bars (one per upper-bound method, mean L_ij), on a
    log scale; the empirical lower bound is a dashed red line across the group.  Estimates
    (not guaranteed) are hatched; skipped methods are left out (listed in the legend title)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.exists():
        raise ArgumentError(f"--plot: directory '{path.parent}' does not exist")
    bars = [m for m in result.methods if m != "lower"]
    n_models = len(result.models)
    width = 0.8 / max(len(bars), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + n_models * (0.6 + 0.45 * len(bars))), 4.5))
    drawn: set[str] = set()
    skipped: set[str] = set()
    lower_drawn = False
    for x, mc in enumerate(result.models):
        for b, method in enumerate(bars):
            row = mc.row(method)
            if row.skipped or row.pairwise_mean is None or not row.pairwise_mean > 0:
                skipped.add(method)
                continue
            pos = x - 0.4 + width * (b + 0.5)
            ax.bar(
                pos, row.pairwise_mean, width * 0.9, color=_COLORS.get(method, "#444444"),
                hatch="//" if row.guarantee == "estimate" else None, edgecolor="black", linewidth=0.5,
                label=method if method not in drawn else None,
            )
            ax.annotate(f"{row.pairwise_mean:.3g}", (pos, row.pairwise_mean), ha="center", va="bottom", fontsize=7)
            drawn.add(method)
        if "lower" in result.methods:
            low = mc.row("lower")
            if not low.skipped and low.pairwise_mean and low.pairwise_mean > 0:
                ax.hlines(low.pairwise_mean, x - 0.45, x + 0.45, colors="red", linestyles="dashed",
                          label="lower bound (estimate)" if not lower_drawn else None)
                ax.annotate(f"{low.pairwise_mean:.3g}", (x + 0.46, low.pairwise_mean), color="red", fontsize=7, va="center", ha="left")
                lower_drawn = True
    ax.set_yscale("log")
    ax.set_xlim(-0.6, n_models - 0.4 + 0.25)
    ax.set_xticks(range(n_models))
    ax.set_xticklabels([Path(m.model).name or m.model for m in result.models], fontsize=8)
    norm = result.to_dict()["norm"]
    ax.set_ylabel(f"mean pairwise Lipschitz L_ij (ℓ{norm})")
    ax.set_title("Lipschitz bounds by method\nbars: upper bounds (hatched: estimates); dashed red: empirical lower bound", fontsize=9)
    title = f"not applicable (some models): {', '.join(sorted(skipped))}" if skipped else None
    ax.legend(fontsize=7, title=title, title_fontsize=7, loc="best")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
