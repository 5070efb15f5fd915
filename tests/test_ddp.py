"""Two CPU processes on the gloo backend train one short epoch with DistributedDataParallel."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import tests.train_standin as standin
    from liplt_cli.train import loop
    from liplt_cli.train.config import TrainConfig
    from liplt_cli.train.data import split_train_val

    if not standin.engine_available():
        loop._graph_from_module = standin.graph_from_module
        loop._pairwise = lambda g, m, s, n: standin.naive_pairwise(g, m, s, n)
        loop._sound_pairwise = standin.sound_pairwise
    if not standin.loader_available():
        loop.export_model = lambda *a, **k: {}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(72, 1, 4, 4, generator=g)
    y = (x[:, 0, :2].mean((1, 2)) > x[:, 0, 2:].mean((1, 2))).long()
    data = split_train_val(x, y, 8, 0, 2, "synthetic")
    cfg = TrainConfig(arch="mlp:8", dataset="synthetic", epochs=1, batch_size=16, lr=1e-2, lam=1.0, cutoff=5.0,
                      warmup_epochs=0, power_iterations=1, eps=0.01, device="cpu", seed=0,
                      out=os.path.join(tmp, "run"))
    # different initial weights per rank: DDP must broadcast rank 0's, then all-reduce the gradients
    # of the two different shards (robust term included) for the ranks to end equal
    build = loop.build_arch

    def _build_per_rank(*args, **kwargs):  # noqa: ANN002, ANN003
        model = build(*args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * rank)
        return model

    loop.build_arch = _build_per_rank
    res = loop.train(cfg, data=data)
    torch.save({"state": res.model.state_dict(), "records": res.records, "samples": None}, os.path.join(tmp, f"rank{rank}.pt"))


def test_two_gloo_ranks_agree(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # rank 0 alone reports and writes; it saw its shard only (64 training samples / 2 ranks)
    assert len(r0["records"]) == 1 and r1["records"] == []
    assert r0["records"][0]["world_size"] == 2 and r0["records"][0]["samples_rank0"] == 32
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "metrics.jsonl").exists()
