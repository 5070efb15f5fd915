"""CRM training loop: records, metrics file, checkpoints, exact resume, exports."""

from __future__ import annotations

import json
import math

import pytest
import torch

from liplt_cli.train.config import TrainConfig
from liplt_cli.train.data import TrainData, augment, split_train_val
from liplt_cli.train import loop
from tests.train_standin import install, loader_available


def _data(n: int = 96, seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    # a learnable rule: which quadrant is brightest
    q = torch.stack([x[:, 0, :3, :3].mean((1, 2)), x[:, 0, :3, 3:].mean((1, 2)),
                     x[:, 0, 3:, :3].mean((1, 2)), x[:, 0, 3:, 3:].mean((1, 2))], 1)
    y = q.argmax(1)
    return split_train_val(x, y, val_size=16, seed=seed, num_classes=4, description="synthetic quadrants")


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(arch="mlp:12", dataset="synthetic", epochs=1, batch_size=32, lr=1e-2, lam=1.0, cutoff=5.0,
                warmup_epochs=0, power_iterations=2, eps=0.01, val_size=16, device="cpu",
                out=str(tmp_path / "run"), method="liplt")
    base.update(kw)
    return TrainConfig(**base).validate()


@pytest.fixture(autouse=True)
def _engine(monkeypatch):
    install(monkeypatch)


def test_one_epoch_writes_records_metrics_checkpoint(tmp_path):
    seen = []
    steps = []
    cfg = _cfg(tmp_path, epochs=2, warmup_epochs=1)
    res = loop.train(cfg, on_epoch=seen.append, on_step=lambda e, s, n: steps.append((e, s, n)), data=_data())
    assert [r["epoch"] for r in res.records] == [1, 2] and seen == res.records
    first, second = res.records
    assert first["lam"] == 0.0 and second["lam"] == 1.0  # robust term after the warm-up
    assert first["robust"] == 0.0
    for r in res.records:
        assert 0.0 <= r["train_acc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0
        assert 0.0 <= r["val_certified"] <= r["val_acc"]
        assert r["mean_lij"] > 0 and r["mean_lij_estimate"] > 0
        assert r["certified_source"].startswith("sound")
    assert steps[-1] == (1, 3, 3)  # 80 training samples / batch 32
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert ckpt["power_state"] is not None
    assert not list((tmp_path / "run").glob("*.tmp"))
    assert set(res.files) >= {"safetensors", "onnx", "checkpoint", "metrics"}


def test_robust_term_shrinks_lipschitz_constants(tmp_path):
    """Same seed and data: λ > 0 ends with a smaller mean L_ij than plain CE."""
    data = _data(160)
    plain = loop.train(_cfg(tmp_path / "a", method="none", epochs=3, lam=0.0), data=data)
    crm = loop.train(_cfg(tmp_path / "b", epochs=3, lam=5.0, cutoff=100.0), data=data)
    assert plain.records[-1]["mean_lij_estimate"] is None
    assert crm.records[-1]["mean_lij"] < plain.records[-1]["mean_lij"]


def test_resume_is_exact(tmp_path):
    data = _data()
    full = loop.train(_cfg(tmp_path / "full", epochs=2, warmup_epochs=1), data=data)
    part_cfg = _cfg(tmp_path / "part", epochs=1, warmup_epochs=1)
    loop.train(part_cfg, data=data)
    resumed = loop.train(part_cfg.replace(epochs=2), data=data, resume=True)
    assert resumed.resumed_from_epoch == 0
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in resumed.records] == [r["loss"] for r in full.records]
    lines = (tmp_path / "part" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [r["loss"] for r in full.records]


def test_cosine_schedule_survives_an_interrupted_run(tmp_path):
    """A run killed after epoch 1 and resumed ends exactly like an uninterrupted one."""
    data = _data()
    full = loop.train(_cfg(tmp_path / "f", epochs=3, lr_schedule="cosine"), data=data)
    lrs = [r["lr"] for r in full.records]
    assert lrs[0] == pytest.approx(1e-2) and lrs[0] > lrs[1] > lrs[2] > 0

    class Crash(Exception):
        pass

    def crash_after_first(rec):  # noqa: ANN001
        if rec["epoch"] == 1:
            raise Crash

    cfg = _cfg(tmp_path / "p", epochs=3, lr_schedule="cosine")
    with pytest.raises(Crash):
        loop.train(cfg, data=data, on_epoch=crash_after_first)
    again = loop.train(cfg, data=data, resume=True)
    assert [r["lr"] for r in again.records] == lrs
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_exponential_schedule_rates_and_exact_resume(tmp_path):
    """The reference's schedule: the recorded rates are lr·γ^k, and an interrupted run resumes exactly."""
    data = _data()
    kw = dict(epochs=4, lr_schedule="exponential", lr_decay_start=1, lr_min=1e-5)
    full = loop.train(_cfg(tmp_path / "f", **kw), data=data)
    assert [r["lr"] for r in full.records] == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5], rel=1e-12)
    ckpt = torch.load(tmp_path / "f" / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["eps"] == 1e-7  # the reference's Adam ε

    class Crash(Exception):
        pass

    def crash_after_second(rec):  # noqa: ANN001
        if rec["epoch"] == 2:
            raise Crash

    cfg = _cfg(tmp_path / "p", **kw)
    with pytest.raises(Crash):
        loop.train(cfg, data=data, on_epoch=crash_after_second)
    again = loop.train(cfg, data=data, resume=True)
    assert again.resumed_from_epoch == 1
    assert [r["lr"] for r in again.records] == [r["lr"] for r in full.records]
    assert [r["loss"] for r in again.records] == [r["loss"] for r in full.records]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_validation_every_n_epochs_and_the_last(tmp_path):
    res = loop.train(_cfg(tmp_path, epochs=4, val_every=2), data=_data())
    validated = [r["epoch"] for r in res.records if r["val_acc"] is not None]
    assert validated == [1, 3, 4]
    skipped = res.records[1]
    assert (skipped["val_certified"], skipped["mean_lij"], skipped["certified_source"]) == (None, None, None)
    assert skipped["mean_lij_estimate"] > 0  # the training estimate is logged every epoch


@pytest.mark.parametrize("power_gradient, through", [("iterations", True), ("final", False)])
def test_power_gradient_reaches_the_engine(tmp_path, monkeypatch, power_gradient, through):
    calls = []
    real = loop._pairwise

    def spy(graph, method, state, iterations, through_iterations=False):  # noqa: ANN001
        calls.append((torch.is_grad_enabled(), through_iterations))
        return real(graph, method, state, iterations, through_iterations)

    monkeypatch.setattr(loop, "_pairwise", spy)
    loop.train(_cfg(tmp_path, epochs=2, warmup_epochs=1, power_gradient=power_gradient), data=_data())
    warm_up, robust = calls[:3], calls[3:]  # 3 steps per epoch
    assert warm_up == [(False, False)] * 3  # no gradient needed while λ = 0
    assert robust == [(True, through)] * 3


def test_resume_without_checkpoint_is_an_error(tmp_path):
    from liplt_cli.errors import ArgumentError

    with pytest.raises(ArgumentError, match="no checkpoint"):
        loop.train(_cfg(tmp_path), data=_data(), resume=True)


@pytest.mark.skipif(not loader_available(), reason="liplt_cli.load.load_model not in the repository yet")
def test_exports_read_back_with_identical_logits(tmp_path):
    from liplt_cli.load import load_model

    res = loop.train(_cfg(tmp_path), data=_data())
    x = torch.rand(5, 1, 6, 6)
    with torch.no_grad():
        ref = res.model.eval()(x)
    for key in ("safetensors", "onnx"):
        graph = load_model(res.files[key], input_shape=(1, 6, 6))
        with torch.no_grad():
            got = graph.evaluate(x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=key)


def test_augment_keeps_shape_and_is_identity_when_off():
    x = torch.rand(4, 3, 8, 8)
    assert augment(x, False, 0.0, 0.0) is x
    torch.manual_seed(0)
    y = augment(x, True, 10.0, 0.1)
    assert y.shape == x.shape and not torch.equal(y, x)
    torch.manual_seed(0)
    assert torch.equal(augment(x, True, 10.0, 0.1), y)  # reproducible from the global RNG
    # flip only: every sample is itself or its mirror
    f = augment(x, True, 0.0, 0.0)
    for i in range(4):
        assert torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1))


def test_translation_moves_whole_pixels_and_fills_the_border():
    """Like torchvision's RandomAffine(translate=f): a shift of round(U(−f·W, f·W)) pixels, border = fill."""
    x = torch.rand(16, 2, 8, 8) + 2.0  # no pixel equals the fill
    torch.manual_seed(1)
    y = augment(x, False, 0.0, 0.25, fill=0.5)
    shifts = set()
    for i in range(16):
        found = None
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                want = torch.full_like(x[i], 0.5)
                src = x[i][:, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
                want[:, max(0, dy):8 - max(0, -dy), max(0, dx):8 - max(0, -dx)] = src
                if torch.equal(y[i], want):
                    found = (dx, dy)
        assert found is not None, i
        shifts.add(found)
    assert len(shifts) > 3  # several different shifts were drawn
    r = augment(x, False, 10.0, 0.0, fill=0.5)  # nearest sampling: every pixel is an input pixel or the fill
    values = set(x.flatten().tolist()) | {0.5}
    assert set(r.flatten().tolist()) <= values


def test_split_holds_out_validation():
    d = _data(100)
    assert d.x_val.shape[0] == 16 and d.x_train.shape[0] == 84
    small = split_train_val(torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long), 1000, 0, 2, "tiny")
    assert small.x_val.shape[0] == 2  # never more than a quarter


def test_certified_accuracy_by_hand():
    """Training's validation and ``liplt certify`` share eq. 4 and certified accuracy (liplt_cli.radius)."""
    from liplt_cli.certify import certified_accuracy as certify_accuracy
    from liplt_cli.radius import certified_accuracy, certified_radius

    assert certify_accuracy is certified_accuracy
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    lip = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    # radii 3, 1, misclassified
    assert certified_radius(logits, y, lip).tolist() == [3.0, 1.0, 0.0]
    assert certified_accuracy(certified_radius(logits, y, lip), [2.0])[0] == pytest.approx(1 / 3)
    assert certified_accuracy(certified_radius(logits, y, lip), [0.5])[0] == pytest.approx(2 / 3)
    assert math.isnan(certified_accuracy(certified_radius(logits[:0], y[:0], lip), [0.5])[0])


def test_input_normalisation_inside_the_model_scales_the_constants(tmp_path):
    """x ↦ (x − 0.5)/0.5 first: same logits as the bare net on 2x − 1, pairwise constants ×2 (pixel units)."""
    from liplt_cli.lipschitz import compute_bounds
    from liplt_cli.load import graph_from_module
    from liplt_cli.train.archs import Normalise, build_arch

    torch.manual_seed(0)
    normed = build_arch("mlp:12", (1, 6, 6), 4, mean=[0.5], std=[0.5])
    assert isinstance(normed[0], Normalise)
    bare = build_arch("mlp:12", (1, 6, 6), 4)
    shifted = {f"{int(k.split('.')[0]) - 1}.{k.split('.', 1)[1]}": v for k, v in normed.state_dict().items()}
    bare.load_state_dict({k: v for k, v in shifted.items() if not k.startswith("-1.")})
    x = torch.rand(5, 1, 6, 6)
    torch.testing.assert_close(normed(x), bare(2 * x - 1))
    a = compute_bounds(graph_from_module(normed, (1, 6, 6)), methods=("liplt",)).methods["liplt"].pairwise
    b = compute_bounds(graph_from_module(bare, (1, 6, 6)), methods=("liplt",)).methods["liplt"].pairwise
    torch.testing.assert_close(torch.tensor(a), 2 * torch.tensor(b), rtol=1e-9, atol=0.0)
    with pytest.raises(Exception, match="go together"):
        build_arch("mlp:12", (1, 6, 6), 4, mean=[0.5])


@pytest.mark.skipif(not loader_available(), reason="liplt_cli.load.load_model not in the repository yet")
def test_a_run_with_input_normalisation_exports_it(tmp_path):
    from liplt_cli.load import load_model

    res = loop.train(_cfg(tmp_path, input_mean=(0.5,), input_std=(0.25,)), data=_data())
    assert res.records[-1]["val_certified"] is not None
    x = torch.rand(3, 1, 6, 6)
    with torch.no_grad():
        ref = res.model.eval()(x)
    graph = load_model(res.files["safetensors"])
    torch.testing.assert_close(graph.evaluate(x), ref, rtol=1e-5, atol=1e-5)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["input_mean"], cfg["input_std"]) == ([0.5], [0.25])


def test_a_second_run_into_the_same_folder_is_refused_unless_overwriting(tmp_path):
    from liplt_cli.train.checkpoint import RunFolderNotEmptyError

    data = _data()
    cfg = _cfg(tmp_path)
    loop.train(cfg, data=data)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunFolderNotEmptyError, match="is not empty"):
        loop.train(cfg.replace(lr=0.5), data=data)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    (tmp_path / "run" / "notes.txt").write_text("mine")

    def stop(rec):  # noqa: ANN001 - the new run stops after writing its first checkpoint
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.train(cfg.replace(lr=0.5, epochs=2), data=data, overwrite=True, on_epoch=stop)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint.pt", "config.json", "metrics.jsonl", "notes.txt"]  # no stale model files
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.5
