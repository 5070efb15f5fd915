"""Benchmark of the naive and LipLT bounds on the paper's architectures.

Prints one table row per (architecture, weights, mode, device): naive and LipLT values (global
and mean pairwise), the tightness ratio naive / LipLT, the time of each, and the time ratio
LipLT / naive.  ``fast`` mode runs both methods with the same number of power iterations (the
paper's "comparable time" claim); ``sound`` mode is the default of ``liplt bound`` (exact terms
and guaranteed upper bounds).  Sound rows also give LipLT's ratio to the **exact LipLT value**:
the recursion of eq. 16 with every inner norm exact in float64 (``compute_bounds`` with an
unlimited Gram budget, on the CPU).  That value is computed once per model and weights and kept
in ``--exact-cache`` (a JSON file keyed by the weights' SHA-256), so later runs read it.  Fast rows
also give the **flop ratio**: floating-point operations of one power iteration of LipLT over one
of naive (counted by ``torch.utils.flop_counter`` as the difference between 2 and 1 iterations),
the time ratio a device would reach if both were compute-bound.

    python benchmarks/bound.py                         # 4C3F, 6C2F on CPU, both modes
    python benchmarks/bound.py --archs 4C3F,6C2F,8C2F --modes fast --device cuda
    python benchmarks/bound.py --model liplt_cli/models/mnist_default.safetensors

Random weights use PyTorch's default initialisation with a fixed seed.  The load average of the
machine is printed before and after (timings are noisy on a shared machine; compare ratios).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.load import graph_from_module, load_model
from liplt_cli.train.archs import DEFAULT_INPUT_SHAPES, build_arch

EXACT_CACHE = Path(__file__).with_name("exact_liplt.json")
EXACT_OPTIONS = dict(gram_budget=math.inf, gram_max_side=16384)


def _graphs(args):
    for arch in [a for a in args.archs.split(",") if a]:
        torch.manual_seed(0)
        model = build_arch(arch).eval()
        yield arch, "random", graph_from_module(model, DEFAULT_INPUT_SHAPES[arch])
    for path in args.model or []:
        yield Path(path).name, "trained", load_model(path)


def weights_digest(graph) -> str:
    """SHA-256 of the graph's weight tensors (names, shapes, float64 bytes) and input shape."""
    h = hashlib.sha256(str(graph.input_shape).encode())
    for name, t in graph.tensors():
        t = t.detach().to(device="cpu", dtype=torch.float64).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).numpy().tobytes())
    return h.hexdigest()


def exact_liplt(name: str, graph, cache_path: Path, refresh: bool) -> dict:
    """The exact LipLT numbers of ``graph`` (every inner term exact), from the cache or computed
    once on the CPU and stored."""
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    key = f"{name}:{weights_digest(graph)}"
    if key in cache and not refresh:
        return cache[key]
    t0 = time.perf_counter()
    result = compute_bounds(graph.to(device="cpu"), EngineOptions(**EXACT_OPTIONS), methods=("liplt",))
    liplt = result.methods["liplt"]
    entry = {
        "model": name,
        "global": liplt.global_,
        "pairwise_mean": liplt.pairwise_mean,
        "guarantee": liplt.guarantee.value,
        "term_counts": liplt.term_counts,
        "seconds": round(time.perf_counter() - t0, 1),
        "how": "compute_bounds(graph, EngineOptions(gram_budget=inf, gram_max_side=16384)) on the CPU in "
               "float64: every inner term an exact spectral norm (Gram matrix + certified eigenvalue)",
    }
    cache[key] = entry
    cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return entry


def iteration_flops(graph, method: str) -> int:
    """Floating-point operations of one power iteration of ``method`` (fast mode): the count at 2
    iterations minus the count at 1 (what is done once, such as the output rows, cancels)."""
    counts = []
    for iterations in (1, 2):
        with FlopCounterMode(display=False) as counter:
            compute_bounds(graph, EngineOptions(fast=True, iterations=iterations), methods=(method,))
        counts.append(counter.get_total_flops())
    return counts[1] - counts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="4C3F,6C2F", help="comma-separated: 4C3F, 6C2F, 8C2F")
    parser.add_argument("--model", action="append", help="also benchmark this model file (repeatable)")
    parser.add_argument("--modes", default="fast,sound", help="fast (equal power iterations) and/or sound")
    parser.add_argument("--iterations", type=int, default=10, help="power iterations in fast mode")
    parser.add_argument("--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions (the fastest is kept)")
    parser.add_argument("--exact-cache", type=Path, default=EXACT_CACHE, help="cache of exact LipLT values")
    parser.add_argument("--refresh-exact", action="store_true", help="recompute the cached exact values")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact LipLT column")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    header = (
        f"{'model':<24} {'weights':<8} {'mode':<6} {'device':<6} {'naive L':>10} {'LipLT L':>10} {'exact L':>10} "
        f"{'/exact':>7} {'naive Lij':>10} {'LipLT Lij':>10} {'tight':>6} {'t naive':>8} {'t LipLT':>8} "
        f"{'cpu LipLT':>9} {'t ratio':>7} {'flops':>6} guarantee"
    )
    print(header)
    print("-" * len(header))
    for name, weights, graph in _graphs(args):
        exact = None if args.no_exact else exact_liplt(name, graph, args.exact_cache, args.refresh_exact)
        for device in args.device.split(","):
            g = graph.to(device=device)
            compute_bounds(g, EngineOptions(fast=True, iterations=1))  # warm-up (lazy initialisation, caches)
            for mode in args.modes.split(","):
                fast = mode == "fast"
                best = None
                for _ in range(args.repeats):
                    opts = EngineOptions(norm=2.0, fast=fast, iterations=args.iterations)
                    times = {}
                    cpu = {}
                    results = {}
                    for method in ("naive", "liplt"):
                        if device == "cuda":
                            torch.cuda.synchronize()
                        t0, c0 = time.perf_counter(), time.process_time()
                        results[method] = compute_bounds(g, opts, methods=(method,)).methods[method]
                        if device == "cuda":
                            torch.cuda.synchronize()
                        times[method] = time.perf_counter() - t0
                        cpu[method] = time.process_time() - c0
                    if best is None or sum(times.values()) < sum(best[0].values()):
                        best = (times, cpu, results)
                times, cpu, results = best
                n, l = results["naive"], results["liplt"]
                exact_l = f"{exact['global']:>10.6g}" if exact else f"{'-':>10}"
                ratio = f"{l.global_ / exact['global']:>7.4f}" if exact and not fast else f"{'-':>7}"
                flops = "-"
                if fast:
                    flops = f"{iteration_flops(g, 'liplt') / iteration_flops(g, 'naive'):.1f}"
                counts = ",".join(f"{v} {k}" for k, v in l.term_counts.items() if v)
                print(
                    f"{name:<24} {weights:<8} {mode:<6} {device:<6} {n.global_:>10.6g} {l.global_:>10.6g} {exact_l} "
                    f"{ratio} {n.pairwise_mean:>10.4g} {l.pairwise_mean:>10.4g} {n.pairwise_mean / l.pairwise_mean:>6.2f} "
                    f"{times['naive']:>7.2f}s {times['liplt']:>7.2f}s {cpu['liplt']:>8.1f}s {times['liplt'] / times['naive']:>7.2f} {flops:>6} "
                    f"{l.guarantee.value} ({counts})",
                    flush=True,
                )
    print(
        "\ncpu LipLT = CPU seconds of the LipLT process (all threads; on a loaded machine closer to its idle time than the wall clock); "
        "exact L = LipLT with every inner term exact (cached, see --exact-cache); /exact = sound LipLT / exact L; "
        "tight = naive / LipLT mean pairwise constant; t ratio = LipLT time / naive time (LipLT alone: in sound "
        "mode it also computes the naive segment norms it needs); flops = LipLT / naive floating-point "
        "operations per power iteration (fast rows)."
    )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
