"""A Proposition 2 model against 4C3F at an equal (small) CPU training-time budget on real MNIST.

    PYTHONPATH=. .venv/bin/python benchmarks/prop2_vs_4c3f.py --budget 120 --train 2000 --test 500
    PYTHONPATH=. .venv/bin/python benchmarks/prop2_vs_4c3f.py --archs "prop2-mlp:3x128,sll;4C3F" --json

Each architecture is CRM-trained (LipLT pairwise constants in the loss, eq. 6) on the first
``--train`` MNIST training images, one epoch at a time (``liplt train``'s resume), until its summed
training time (``train_seconds`` of the records: the optimisation steps, not validation or
export) reaches ``--budget`` seconds.  The exported ONNX file is then certified at ℓ2 ε
(default 1.58) on the first ``--test`` test images with the sound LipLT constants that
``liplt certify`` uses (computed once, for the table too; clean, PGD and certified accuracy),
and its tightness table is printed: naive, LipLT as the
generic recursion alone, LipLT with designed terms, the designed bound (Proposition 2 models),
and the empirical lower bound (sampling + ascent).  Mean pairwise L_ij and global L.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from liplt_cli.certify import PairwiseConstants, certify
from liplt_cli.data import load_dataset
from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.lipschitz.lower import empirical_lower_bound
from liplt_cli.load import load_model
from liplt_cli.train import loop
from liplt_cli.train.config import TrainConfig


def train_for(arch: str, budget: float, data, out: Path, args) -> dict:
    cfg = TrainConfig(
        arch=arch, dataset="mnist", data_dir=args.data_dir, epochs=1, batch_size=args.batch, lr=1e-3,
        lam=args.lam, cutoff=2.2, temperature=5.0, warmup_epochs=0, power_iterations=5, eps=args.eps,
        val_size=len(data.y_val), val_every=1000, sound_validation=False, device="cpu", out=str(out),
        method="liplt", seed=0,
    ).validate()
    spent, epoch, res = 0.0, 0, None
    while spent < budget:
        epoch += 1
        res = loop.train(cfg.replace(epochs=epoch), data=data, resume=epoch > 1)
        spent = sum(r.train_seconds for r in res.records)
    return {"arch": arch, "epochs": epoch, "train_seconds": spent, "onnx": res.files["onnx"],
            "train_acc": res.records[-1].train_acc}


def tightness(graph, samples: int) -> tuple[dict, PairwiseConstants]:
    """The tightness table, and the sound LipLT pairwise constants (what ``liplt certify`` uses)."""
    both = compute_bounds(graph, EngineOptions(norm=2.0), methods=("naive", "liplt", "designed")).methods
    if "designed" in both:
        generic = compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",), designed_terms=False).methods["liplt"]
    else:  # no certified block: the two LipLT numbers are the same computation
        generic = both["liplt"]
    low = empirical_lower_bound(graph, norm=2.0, samples=samples, ascent_steps=10, seed=0)
    rows = {"naive": both["naive"], "liplt (generic recursion)": generic, "liplt (with designed terms)": both["liplt"]}
    if "designed" in both:
        rows["designed"] = both["designed"]
    table = {k: {"mean_lij": v.pairwise_mean, "global": v.global_, "guarantee": v.guarantee.value} for k, v in rows.items()}
    table["lower bound (sampling + ascent)"] = {"mean_lij": low.pairwise_mean, "global": low.global_, "guarantee": "lower bound"}
    lip = both["liplt"]
    constants = PairwiseConstants(torch.tensor(lip.pairwise, dtype=torch.float64), lip.guarantee, norm=2.0, method="liplt")
    return table, constants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="prop2-mlp:3x128,sll;4C3F", help="';'-separated architectures")
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per architecture")
    ap.add_argument("--train", type=int, default=2000, help="MNIST training images used")
    ap.add_argument("--test", type=int, default=500, help="MNIST test images certified")
    ap.add_argument("--eps", type=float, default=1.58)
    ap.add_argument("--lam", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lower-samples", type=int, default=32)
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    base = TrainConfig(arch="4C3F", dataset="mnist", data_dir=args.data_dir, limit=args.train,
                       val_size=max(1, args.train // 10), out="unused")
    data = loop.prepare_data(base)
    test = load_dataset("mnist", split="test", data_dir=args.data_dir, limit=args.test)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in [a.strip() for a in args.archs.split(";") if a.strip()]:
            t0 = time.perf_counter()
            run = train_for(arch, args.budget, data, Path(tmp) / arch.replace(":", "_").replace(",", "_"), args)
            print(f"{arch}: trained {run['epochs']} epoch(s), {run['train_seconds']:.0f} s", file=sys.stderr, flush=True)
            graph = load_model(run["onnx"])
            table, constants = tightness(graph, args.lower_samples)
            print(f"{arch}: bounds done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            cert = certify(graph, test, [args.eps], norm=2.0, constants=constants)
            run.update({
                "clean": cert.clean_accuracy, "pgd": (cert.pgd_accuracy or [None])[0],
                "certified": cert.certified_accuracy[0], "constants": cert.constants_method,
                "constants_guarantee": cert.guarantee.value, "tightness": table,
                "wall_seconds": time.perf_counter() - t0,
            })
            run.pop("onnx")
            results.append(run)
    if args.json:
        print(json.dumps({"settings": vars(args), "results": results}, indent=2))
        return
    print(f"MNIST, {len(data.y_train)} training images, {args.test} test images, ℓ2 ε = {args.eps}, "
          f"training budget {args.budget:g} s per model (CPU)\n")
    print("| model | epochs | train s | clean | PGD | certified |")
    print("|---|---|---|---|---|---|")
    for r in results:
        pgd = f"{100 * r['pgd']:.1f}" if r["pgd"] is not None else "—"
        print(f"| {r['arch']} | {r['epochs']} | {r['train_seconds']:.0f} | {100 * r['clean']:.1f} | {pgd} | "
              f"{100 * r['certified']:.1f} |")
    for r in results:
        print(f"\ntightness, {r['arch']} (ℓ2)\n")
        print("| bound | mean L_ij | global L | guarantee |")
        print("|---|---|---|---|")
        for name, v in r["tightness"].items():
            print(f"| {name} | {v['mean_lij']:.4g} | {v['global']:.4g} | {v['guarantee']} |")


if __name__ == "__main__":
    main()
