"""Benchmark of the naive and LipLT bounds on the paper's architectures.

Prints one table row per (architecture, weights, mode, device): naive and LipLT values (global
and mean pairwise), the tightness ratio naive / LipLT, the time of each, and the time ratio
LipLT / naive.  ``fast`` mode runs both methods with the same number of power iterations (the
paper's "comparable time" claim); ``sound`` mode is the default of ``liplt bound`` (exact terms
and guaranteed upper bounds).

    python benchmarks/bound.py                         # 4C3F, 6C2F on CPU, both modes
    python benchmarks/bound.py --archs 4C3F,6C2F,8C2F --modes fast --device cuda
    python benchmarks/bound.py --model liplt_cli/models/mnist_default.safetensors

Random weights use PyTorch's default initialisation with a fixed seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.load import graph_from_module, load_model
from liplt_cli.train.archs import DEFAULT_INPUT_SHAPES, build_arch


def _graphs(args):
    for arch in [a for a in args.archs.split(",") if a]:
        torch.manual_seed(0)
        model = build_arch(arch).eval()
        yield arch, "random", graph_from_module(model, DEFAULT_INPUT_SHAPES[arch])
    for path in args.model or []:
        yield Path(path).name, "trained", load_model(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="4C3F,6C2F", help="comma-separated: 4C3F, 6C2F, 8C2F")
    parser.add_argument("--model", action="append", help="also benchmark this model file (repeatable)")
    parser.add_argument("--modes", default="fast,sound", help="fast (equal power iterations) and/or sound")
    parser.add_argument("--iterations", type=int, default=10, help="power iterations in fast mode")
    parser.add_argument("--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions (the fastest is kept)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    header = (
        f"{'model':<24} {'weights':<8} {'mode':<6} {'device':<6} {'naive L':>10} {'LipLT L':>10} "
        f"{'naive Lij':>10} {'LipLT Lij':>10} {'tight':>6} {'t naive':>8} {'t LipLT':>8} {'t ratio':>7} guarantee"
    )
    print(header)
    print("-" * len(header))
    for name, weights, graph in _graphs(args):
        for device in args.device.split(","):
            g = graph.to(device=device)
            compute_bounds(g, EngineOptions(fast=True, iterations=1))  # warm-up (lazy initialisation, caches)
            for mode in args.modes.split(","):
                fast = mode == "fast"
                best = None
                for _ in range(args.repeats):
                    opts = EngineOptions(norm=2.0, fast=fast, iterations=args.iterations)
                    times = {}
                    results = {}
                    for method in ("naive", "liplt"):
                        if device == "cuda":
                            torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        results[method] = compute_bounds(g, opts, methods=(method,)).methods[method]
                        if device == "cuda":
                            torch.cuda.synchronize()
                        times[method] = time.perf_counter() - t0
                    if best is None or sum(times.values()) < sum(best[0].values()):
                        best = (times, results)
                times, results = best
                n, l = results["naive"], results["liplt"]
                print(
                    f"{name:<24} {weights:<8} {mode:<6} {device:<6} {n.global_:>10.4g} {l.global_:>10.4g} "
                    f"{n.pairwise_mean:>10.4g} {l.pairwise_mean:>10.4g} {n.pairwise_mean / l.pairwise_mean:>6.2f} "
                    f"{times['naive']:>7.2f}s {times['liplt']:>7.2f}s {times['liplt'] / times['naive']:>7.2f} "
                    f"{l.guarantee.value}",
                    flush=True,
                )
    print(
        "\ntight = naive / LipLT mean pairwise constant; t ratio = LipLT time / naive time "
        "(LipLT alone: in sound mode it also computes the naive segment norms it needs)."
    )


if __name__ == "__main__":
    main()
