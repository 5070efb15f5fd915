"""The ``--plot`` figure (like the paper's Fig. 2): accuracy vs ε, and the distribution of radii.

Left: certified accuracy P(R(x) > ε) as a continuous curve over ε (from the per-sample radii),
certified and PGD accuracy at the listed ε (markers, certified values labelled below their
marker: PGD accuracy is never below it), clean accuracy (dashed).  Right: histogram of the
certified radii of correctly classified samples, one labelled line per listed ε.  Legends sit
below the axes, so they never hide a curve; the title names the model and the data (split and
sample count).  ε is labelled as it was given (``36/255``).  Drawn on matplotlib's Agg canvas
without pyplot (no display, no global state).
"""

from __future__ import annotations

import math
from pathlib import Path

from liplt_cli.certify.result import CertifyResult

_EPS_STYLES = ((0, (1, 1)), "--", "-.", (0, (5, 1, 1, 1, 1, 1)), ":")
_EPS_COLORS = ("black", "tab:purple", "tab:green", "tab:brown", "tab:olive")


def data_label(result: CertifyResult) -> str:
    """The data as the title names it: ``MNIST test split, 300 of 10000 images`` (no paths)."""
    text = str(result.data.get("description") or result.data.get("name") or "data")
    for cut in (" from ", " ("):
        text = text.split(cut, 1)[0]
    return text


def plot_certify(result: CertifyResult, path: str | Path) -> None:
    """Write the figure for ``result`` to ``path`` (PNG, PDF or SVG by extension)."""
    certify_figure(result).savefig(path, dpi=110)


def certify_figure(result: CertifyResult):
    """The matplotlib ``Figure`` of ``result`` (on an Agg canvas): accuracy vs ε, radii histogram."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    radius = result.radius.double()
    correct = (result.prediction == result.label) & (radius > 0)
    finite = radius[correct & torch.isfinite(radius)]
    top = max([max(result.eps)] + ([float(torch.quantile(finite, 0.99))] if finite.numel() else []))
    top = top * 1.15 if top > 0 else 1.0
    grid = torch.linspace(0, top, 400, dtype=torch.float64)
    curve = [(radius > g).double().mean().item() for g in grid]
    norm = {2.0: "ℓ2", 1.0: "ℓ1"}.get(result.norm, "ℓ∞" if math.isinf(result.norm) else f"ℓ{result.norm:g}")
    label = "certified" if result.sound else "estimated radius (not certified)"

    fig = Figure(figsize=(11, 5.2))
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(1, 2)
    ax.plot(grid.numpy(), curve, color="tab:blue", label=f"{label}: P(R > ε)")
    ax.axhline(result.clean_accuracy, color="gray", linestyle="--", label=f"clean {result.clean_accuracy:.2%}")
    ax.scatter(result.eps, result.certified_accuracy, color="tab:blue", zorder=3,
               label=f"{label} at the listed ε")
    if result.pgd_accuracy is not None:
        pairs = sorted(zip(result.eps, result.pgd_accuracy))
        ax.plot([e for e, _ in pairs], [a for _, a in pairs], "o-", color="tab:red", label="PGD accuracy (empirical)")
    labelled: list[float] = []
    for e, a in sorted(zip(result.eps, result.certified_accuracy)):
        if labelled and e - labelled[-1] < 0.08 * top:
            continue  # too close to the last label to read; the histogram's legend has every value
        labelled.append(e)
        # below-left of the marker: PGD accuracy is at or above it and the curve falls to the right,
        # so the label stays off both lines (straight below near ε = 0, where there is no room on the left)
        # (above-left when the marker sits on the ε axis, where below would hit the tick labels)
        left, low = e > 0.1 * top, a < 0.06
        ax.annotate(f"{a:.1%}", (e, a), textcoords="offset points",
                    xytext=(-6, 5 if low else -7) if left else (2, 12 if low else -15),
                    ha="right" if left else "center", va="bottom" if low else "top", fontsize=8, color="tab:blue")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"ε ({norm})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy vs ε (constants: {result.constants_method}, {result.guarantee.value})", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)

    if finite.numel():
        hx.hist(finite.numpy(), bins=40, range=(0, top), color="tab:blue", alpha=0.8, label="radii (correctly classified)")
    order = sorted(range(len(result.eps)), key=lambda i: result.eps[i])
    for k, i in enumerate(order):
        hx.axvline(result.eps[i], color=_EPS_COLORS[k % len(_EPS_COLORS)], linestyle=_EPS_STYLES[k % len(_EPS_STYLES)],
                   linewidth=1.3, label=f"ε = {result.eps_text[i]}: {result.certified_accuracy[i]:.1%} certified")
    hx.yaxis.set_major_locator(MaxNLocator(integer=True))
    hx.set_xlim(0, top)
    hx.set_xlabel(f"certified radius R(x) ({norm})")
    hx.set_ylabel("correctly classified samples")
    hx.set_title(f"radii: mean {result.mean_radius:.3g}, median {result.median_radius:.3g} "
                 "(misclassified count as 0)", fontsize=10)
    hx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    hx.grid(alpha=0.3)
    model = str(result.model) or "model"
    if len(model) > 70:
        model = "…" + model[-69:]
    fig.suptitle(f"{model} on {data_label(result)}, ε in {norm}", fontsize=11)
    fig.tight_layout()
    return fig
