"""Time per optimisation step: CRM (LipLT pairwise constants in the loss) vs plain cross-entropy.

    .venv/bin/python benchmarks/train_step.py                      # 4C3F and 6C2F, batch 512
    .venv/bin/python benchmarks/train_step.py --steps 3 --archs 4C3F --device cuda --json

For each architecture the two kinds of step are interleaved (CE, CRM, CE, CRM, …) after one
warm-up step each, so that load from other processes affects both alike. A CRM step is
``pairwise_bound_tensor`` (LipLT, warm-started power iteration) + forward + CRM loss + backward
through both + Adam; a CE step is forward + cross-entropy + backward + Adam. Reported: median
seconds per step, the ratio CRM/CE, and the share of a CRM step spent on the Lipschitz
computation, measured two ways: the forward pass of ``pairwise_bound_tensor`` alone (timed),
and (CRM − CE)/CRM (its forward *and* backward). Inputs are random pixels: only timing matters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from liplt_cli.lipschitz import pairwise_bound_tensor
from liplt_cli.load import graph_from_module
from liplt_cli.train.archs import DEFAULT_INPUT_SHAPES, build_arch
from liplt_cli.train.loss import crm_loss


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_arch(arch: str, batch: int, steps: int, iterations: int, device: str) -> dict:
    shape = DEFAULT_INPUT_SHAPES[arch]
    torch.manual_seed(0)
    ce_model = build_arch(arch, shape, 10).to(device)
    crm_model = build_arch(arch, shape, 10).to(device)
    crm_model.load_state_dict(ce_model.state_dict())
    graph = graph_from_module(crm_model, shape)
    ce_opt = torch.optim.Adam(ce_model.parameters(), lr=1e-3)
    crm_opt = torch.optim.Adam(crm_model.parameters(), lr=1e-3)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    state = None
    ce_times, crm_times, lip_times = [], [], []
    for i in range(steps + 1):
        _sync(device)
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(ce_model(x), y)
        ce_opt.zero_grad(set_to_none=True)
        loss.backward()
        ce_opt.step()
        _sync(device)
        t1 = time.perf_counter()
        lip, state = pairwise_bound_tensor(graph, method="liplt", state=state, iterations=iterations)
        _sync(device)
        t2 = time.perf_counter()
        terms = crm_loss(crm_model(x), y, lip, lam=30.0, t=5.0, cutoff=1e9, g="lse")  # every correct point active
        crm_opt.zero_grad(set_to_none=True)
        terms.total.backward()
        crm_opt.step()
        _sync(device)
        t3 = time.perf_counter()
        if i > 0:  # the first step of each kind is a warm-up
            ce_times.append(t1 - t0)
            crm_times.append(t3 - t1)
            lip_times.append(t2 - t1)
    ce, crm, lip_fwd = (statistics.median(v) for v in (ce_times, crm_times, lip_times))
    return {
        "arch": arch,
        "batch": batch,
        "steps": steps,
        "power_iterations": iterations,
        "device": device,
        "ce_seconds": ce,
        "crm_seconds": crm,
        "ratio": crm / ce,
        "lip_forward_share": lip_fwd / crm,
        "lip_total_share": max(0.0, crm - ce) / crm,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="4C3F,6C2F")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps of each kind (after one warm-up)")
    p.add_argument("--iterations", type=int, default=5, help="power iterations per step")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench_arch(a.strip(), args.batch, args.steps, args.iterations, args.device)
            for a in args.archs.split(",") if a.strip()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return rows
    print(f"device {args.device}, batch {args.batch}, {args.steps} timed steps each, "
          f"{args.iterations} power iterations/step, torch threads {torch.get_num_threads()}")
    head = f"{'arch':<6} {'CE s/step':>10} {'CRM s/step':>11} {'CRM/CE':>7} {'L fwd share':>12} {'L fwd+bwd share':>16}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['arch']:<6} {r['ce_seconds']:>10.3f} {r['crm_seconds']:>11.3f} {r['ratio']:>7.2f} "
              f"{100 * r['lip_forward_share']:>11.1f}% {100 * r['lip_total_share']:>15.1f}%")
    return rows


if __name__ == "__main__":
    main()
