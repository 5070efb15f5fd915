"""Local certificates on the shipped CRM model's near misses at ℓ2 ε = 1.58.

The global certified accuracy of the shipped model on the MNIST test set is 48.39%. Every point
certified globally is also certified locally (the local radius is never below the global one).
So each near miss that the local certificate proves at ε = 1.58 raises the local certified
accuracy above 48.39%. A near miss is a correctly classified test image whose global radius
lies in (LO, 1.58]. This script tries the first N of them; running every test image locally
would take hours on 2 cores.

    python benchmarks/local_near_misses.py 1.4 8        # LO = 1.4, first 8 near misses
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from liplt_cli.certify.radius import engine_constants, radii_from_logits
from liplt_cli.data import load_dataset
from liplt_cli.load import load_model
from liplt_cli.local import Ball, margin_bounds

ROOT = Path(__file__).resolve().parents[1]


def main(lo: float, n: int) -> None:
    graph = load_model(str(ROOT / "liplt_cli" / "models" / "mnist_default.safetensors"))
    g64 = graph.to(dtype=torch.float64)
    ds = load_dataset("mnist", split="test")
    x, y = ds.x.double(), ds.y
    constants = engine_constants(graph)
    with torch.no_grad():
        z = torch.cat([g64.evaluate(x[i:i + 1000]).reshape(-1, graph.num_classes) for i in range(0, len(x), 1000)])
    r = radii_from_logits(z, y, constants.matrix)
    print(f"global certified at 1.58 on the test set: {float((r > 1.58).float().mean()):.2%}", flush=True)
    near = ((r > lo) & (r <= 1.58) & (z.argmax(1) == y)).nonzero().flatten()
    print(f"near misses with global radius in ({lo:g}, 1.58]: {near.numel()}", flush=True)
    idx = near[:n]
    t0 = time.perf_counter()
    ball = Ball(x[idx], torch.full((idx.numel(),), 1.58, dtype=torch.float64), 2.0, (0.0, 1.0))
    bounds = margin_bounds(g64, ball, y[idx], constants.matrix)
    print(f"test indices {idx.tolist()}, global radii {[round(float(v), 3) for v in r[idx]]}")
    print(f"locally certified at 1.58: {int(bounds.verified.sum())} of {idx.numel()} ({bounds.guarantee.value}), "
          f"{time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.4, int(sys.argv[2]) if len(sys.argv) > 2 else 8)
