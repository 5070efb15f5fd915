"""Benchmark of local certificates (``liplt certify --local``) against global ones and PGD.

Prints one row per (model, ε): clean accuracy, PGD accuracy (an upper bound on what any verifier
can certify), global certified accuracy (eq. 4), local certified accuracy (sound default:
intervals on the ball clipped to [0, 1], linear relaxations and the local LipLT recursion), the
ratio local / PGD, and the time per sample of the local certificates (the listed ε checked
exactly, no radius search; ``--refine`` adds the bisection of the radius and reports its time).

Cases (issue 12):

* ``mlp``: 784-256-256-10 ReLU MLP trained with plain cross-entropy on MNIST (``local_models.py``),
  ε = 0.05, 0.1, 0.3, 0.5;
* ``conv``: 2C2F CIFAR-10 conv net trained the same way, normalisation inside the graph,
  ε = 0.02, 0.05, 36/255;
* ``crm``: the shipped CRM model (``liplt_cli/models/mnist_default.safetensors``), ε = 1.58.

    python benchmarks/local.py                          # all cases, first 200 test images each
    python benchmarks/local.py --cases mlp --samples 500
    python benchmarks/local.py --cases crm --samples 100 --device cuda
    python benchmarks/local.py --cases conv --samples 10 --eps 0.05 --batch 5

Models missing under ``runs/benchmark-local`` are trained first (``local_models.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_models import SPECS, load_graph, train_model  # noqa: E402

from liplt_cli.certify import AttackSettings, engine_constants, radii_from_logits, robust_under_attack  # noqa: E402
from liplt_cli.data import load_dataset  # noqa: E402
from liplt_cli.load import load_model  # noqa: E402
from liplt_cli.local import LocalOptions, local_radii  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "mlp": ("mnist-mlp", "mnist", [0.05, 0.1, 0.3, 0.5]),
    "conv": ("cifar-2c2f", "cifar10", [0.02, 0.05, 36 / 255]),
    "crm": ("shipped CRM mlp:1024,1024", "mnist", [1.58]),
}


def _graph(case: str):
    if case == "crm":
        return load_model(str(ROOT / "liplt_cli" / "models" / "mnist_default.safetensors"))
    spec = SPECS[CASES[case][0]]
    train_model(spec)
    return load_graph(spec)


def run_case(case: str, samples: int, device: str, batch: int, attack: AttackSettings, refine: bool,
             only_eps: list[float] | None = None) -> None:
    name, data, eps = CASES[case]
    eps = only_eps or eps
    graph = _graph(case).to(device=device)
    ds = load_dataset(data, split="test", limit=samples)
    x, y = ds.x, ds.y
    constants = engine_constants(graph)
    with torch.no_grad():
        z = torch.cat([graph.to(dtype=torch.float64).evaluate(x[i:i + 256].to(device, torch.float64)).reshape(-1, graph.num_classes).cpu()
                       for i in range(0, len(x), 256)])
    r_global = radii_from_logits(z, y, constants.matrix)
    clean = float((z.argmax(1) == y).float().mean())
    robust, _ = robust_under_attack(graph, x, y, eps, 2.0, attack, batch_size=256, device=device)
    t0 = time.perf_counter()
    local = local_radii(graph, x, y, 2.0, constants.matrix, eps, domain=(0.0, 1.0), options=LocalOptions(),
                        batch_size=batch, device=device, refine=False)
    per_sample = (time.perf_counter() - t0) / len(x)
    refined = None
    if refine:
        t0 = time.perf_counter()
        refined = local_radii(graph, x, y, 2.0, constants.matrix, eps, domain=(0.0, 1.0), batch_size=batch,
                              device=device, refine=True)
        refined_time = (time.perf_counter() - t0) / len(x)
    for i, e in enumerate(eps):
        pgd = float(robust[i].float().mean())
        glob = float((r_global > e).float().mean())
        loc = float(local.certified(e).float().mean())
        broken = int((local.certified(e) & ~robust[i]).sum())
        ratio = loc / pgd if pgd > 0 else float("nan")
        extra = ""
        if refined is not None:
            extra = f" refined {float(refined.certified(e).float().mean()):7.2%} ({refined_time * 1e3:.0f} ms/sample, median radius {float(refined.radius.median()):.4g})"
        print(f"{name:<26} {len(x):>5} {e:>8.4g} {clean:>7.2%} {pgd:>7.2%} {glob:>8.2%} {loc:>8.2%} {ratio:>7.1%} "
              f"{per_sample * 1e3:>9.1f} {broken:>6} {local.guarantee.value}{extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="mlp,conv,crm")
    parser.add_argument("--samples", type=int, default=200, help="first N test images per case")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=50, help="samples per batch of the local analysis")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--attack-steps", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--refine", action="store_true", help="also time the radius bisection")
    parser.add_argument("--eps", default=None, help="comma-separated ε replacing each case's list (e.g. 0.05)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    attack = AttackSettings(steps=args.attack_steps, restarts=args.restarts)
    print(f"PGD: {attack.describe()}; local: sound default, input domain [0, 1], ℓ2")
    head = (f"{'model':<26} {'N':>5} {'eps':>8} {'clean':>7} {'PGD':>7} {'global':>8} {'local':>8} "
            f"{'loc/PGD':>7} {'ms/sample':>9} {'broken':>6} guarantee")
    print(head)
    print("-" * len(head))
    for case in args.cases.split(","):
        only = [float(v) for v in args.eps.split(",")] if args.eps else None
        run_case(case, args.samples, args.device, args.batch, attack, args.refine, only)


if __name__ == "__main__":
    main()
