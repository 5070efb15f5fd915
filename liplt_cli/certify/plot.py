"""The ``--plot`` figure (like the paper's Fig. 2): accuracy vs ε, and the distribution of radii.

Left: certified accuracy P(R(x) > ε) as a continuous curve over ε (from the per-sample radii),
PGD accuracy at the listed ε (markers), clean accuracy (dashed).  Right: histogram of the
certified radii of correctly classified samples, with the listed ε marked.
Drawn on matplotlib's Agg canvas without pyplot (no display, no global state).
"""

from __future__ import annotations

import math
from pathlib import Path

from liplt_cli.certify.result import CertifyResult


def plot_certify(result: CertifyResult, path: str | Path) -> None:
    """Write the figure for ``result`` to ``path`` (PNG, PDF or SVG by extension)."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    radius = result.radius.double()
    correct = (result.prediction == result.label) & (radius > 0)
    finite = radius[correct & torch.isfinite(radius)]
    top = max([max(result.eps)] + ([float(torch.quantile(finite, 0.99))] if finite.numel() else []))
    top = top * 1.15 if top > 0 else 1.0
    grid = torch.linspace(0, top, 400, dtype=torch.float64)
    curve = [(radius > g).double().mean().item() for g in grid]
    norm = {2.0: "ℓ2", 1.0: "ℓ1"}.get(result.norm, "ℓ∞" if math.isinf(result.norm) else f"ℓ{result.norm:g}")
    label = "certified" if result.sound else "estimated radius (not certified)"

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(1, 2)
    ax.plot(grid.numpy(), curve, color="tab:blue", label=f"{label}: P(R > ε)")
    ax.axhline(result.clean_accuracy, color="gray", linestyle="--", label=f"clean {result.clean_accuracy:.2%}")
    ax.scatter(result.eps, result.certified_accuracy, color="tab:blue", zorder=3)
    if result.pgd_accuracy is not None:
        pairs = sorted(zip(result.eps, result.pgd_accuracy))
        ax.plot([e for e, _ in pairs], [a for _, a in pairs], "o-", color="tab:red", label="PGD accuracy")
    for e, a in zip(result.eps, result.certified_accuracy):
        ax.annotate(f"{a:.1%}", (e, a), textcoords="offset points", xytext=(4, 6), fontsize=8, color="tab:blue")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"ε ({norm})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy vs ε — constants: {result.constants_method}, {result.guarantee.value}")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)

    if finite.numel():
        hx.hist(finite.numpy(), bins=40, range=(0, top), color="tab:blue", alpha=0.8)
    for e in result.eps:
        hx.axvline(e, color="black", linestyle=":", linewidth=1)
    hx.set_xlim(0, top)
    hx.set_xlabel(f"certified radius R(x) ({norm})")
    hx.set_ylabel("correctly classified samples")
    hx.set_title(f"radii: mean {result.mean_radius:.3g}, median {result.median_radius:.3g} (n={result.samples})")
    hx.grid(alpha=0.3)
    fig.suptitle(f"{Path(result.model).name or 'model'} on {result.data.get('name', 'data')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
