"""TrainConfig: recipes, schedules, validation errors."""

from __future__ import annotations

import pytest

from liplt_cli.errors import ArgumentError
from liplt_cli.train.config import TrainConfig, builtin_recipes, config_from_dict, load_recipe


def test_shipped_recipes_are_the_papers():
    assert {"mnist_4c3f", "cifar10_6c2f"} <= set(builtin_recipes())
    m = load_recipe("mnist_4c3f")
    assert (m.arch, m.batch_size, m.lr, m.lam, m.cutoff, m.temperature, m.warmup_epochs, m.eps) == (
        "4C3F", 512, 1e-3, 30.0, 2.2, 5.0, 10, 1.58)
    assert not (m.augment_flip or m.augment_rotate or m.augment_translate)
    c = load_recipe("cifar10_6c2f")
    assert (c.arch, c.augment_flip, c.augment_rotate, c.augment_translate, c.augment_fill) == (
        "6C2F", True, 10.0, 0.1, 0.5)
    assert c.eps == pytest.approx(36 / 255)
    # the reference's x ↦ (x − 0.5)/0.5 inside the model; its λ 15, t 5, cut-off 0.2 in [−1, 1] units
    # are λ 30, t 10, cut-off 0.1 in pixel units (radii halve)
    assert (c.input_mean, c.input_std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert (c.lam, c.temperature, c.cutoff) == (30.0, 10.0, 0.1)
    assert (m.input_mean, m.input_std) == (None, None)
    # the reference's schedule, optimiser, loss normalisation and split (its train.py / README commands)
    for r, decay, iterations in ((m, 25, 10), (c, 200, 5)):
        assert (r.epochs, r.lr_schedule, r.lr_decay_start, r.lr_min, r.adam_eps) == (
            400, "exponential", decay, 1e-6, 1e-7)
        assert (r.robust_normalisation, r.g, r.method, r.power_iterations, r.power_gradient) == (
            "batch", "lse", "liplt", iterations, "iterations")
        assert (r.val_fraction, r.val_size, r.val_every) == (0.1, None, 5)
        assert (r.lam_schedule, r.cutoff_schedule) == ("constant", "constant")


def test_json_and_toml_files(tmp_path):
    (tmp_path / "r.json").write_text('{"arch": "mlp:32", "epochs": 3, "lam": 2.5}')
    (tmp_path / "r.toml").write_text('arch = "mlp:32"\nepochs = 3\nlam = 2.5\ntrain_indices = [5848, 60000]\n')
    j, t = load_recipe(tmp_path / "r.json"), load_recipe(tmp_path / "r.toml")
    assert (j.arch, j.epochs, j.lam) == (t.arch, t.epochs, t.lam) == ("mlp:32", 3, 2.5)
    assert t.train_indices == (5848, 60000)


def test_schedules():
    c = TrainConfig(lam=10.0, cutoff=2.0, warmup_epochs=2, lam_schedule="linear", ramp_epochs=4)
    assert [c.lam_at(e) for e in range(7)] == [0.0, 0.0, 2.5, 5.0, 7.5, 10.0, 10.0]
    assert [c.cutoff_at(e) for e in range(4)] == [0.0, 0.0, 2.0, 2.0]
    assert TrainConfig(method="none", warmup_epochs=0).lam_at(5) == 0.0


@pytest.mark.parametrize(
    "data, message",
    [
        ({"method": "exact"}, "unknown method"),
        ({"g": "square"}, "unknown g"),
        ({"lam_schedule": "cosine"}, "unknown lam_schedule"),
        ({"epochs": 0}, "epochs must be positive"),
        ({"lam": -1.0}, "lam must be non-negative"),
        ({"limit": 0}, "limit must be positive"),
        ({"colour": "red"}, "unknown key"),
        ({"lr_schedule": "step"}, "unknown lr_schedule"),
        ({"robust_normalisation": "mean"}, "unknown robust_normalisation"),
        ({"power_gradient": "both"}, "unknown power_gradient"),
        ({"val_fraction": 0.5}, "val_fraction must be in"),
        ({"val_every": 0}, "val_every must be positive"),
        ({"adam_eps": 0.0}, "adam_eps must be positive"),
        ({"lr_decay_start": -1}, "lr_decay_start must be non-negative"),
    ],
)
def test_bad_values(data, message):
    with pytest.raises(ArgumentError, match=message):
        config_from_dict(data)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ArgumentError, match="neither a file nor a shipped recipe"):
        load_recipe(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("arch = \n")
    with pytest.raises(ArgumentError, match="not valid TOML"):
        load_recipe(tmp_path / "bad.toml")


def _reference_rates(lr: float, lr_min: float, start: int, end: int) -> list[float]:
    """The reference's ExponentialLRWithStopping, stepped by hand: the rate of each epoch."""
    gamma = (lr_min / lr) ** (1 / (end - start))
    rates, current = [], lr
    for last_epoch in range(end):  # the scheduler's step count when the epoch runs
        if last_epoch != 0 and start <= last_epoch < end:
            current = max(current * gamma, lr_min)
        rates.append(current)
    return rates


def test_exponential_lr_schedule_by_hand():
    c = TrainConfig(epochs=400, lr=1e-3, lr_schedule="exponential", lr_decay_start=25, lr_min=1e-6)
    rates = [c.lr * c.lr_factor_at(e) for e in range(400)]
    assert rates[:25] == [1e-3] * 25  # epochs 1-25 at the full rate
    gamma = (1e-6 / 1e-3) ** (1 / 375)
    assert rates[25] == pytest.approx(1e-3 * gamma, rel=1e-12)
    assert rates[26] == pytest.approx(1e-3 * gamma**2, rel=1e-12)
    assert rates[399] == pytest.approx(1e-6, rel=1e-12)  # the last epoch runs at lr_min
    assert rates == pytest.approx(_reference_rates(1e-3, 1e-6, 25, 400), rel=1e-9)
    # 4 epochs decaying from the second: gamma = 0.1
    short = TrainConfig(epochs=4, lr=1e-3, lr_schedule="exponential", lr_decay_start=1, lr_min=1e-6)
    assert [short.lr * short.lr_factor_at(e) for e in range(4)] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6], rel=1e-12)
    # a decay start at or after the last epoch: no decay (the reference's 4-epoch run of its README command)
    late = TrainConfig(epochs=4, lr_schedule="exponential", lr_decay_start=25)
    assert [late.lr_factor_at(e) for e in range(4)] == [1.0] * 4
    assert [TrainConfig(epochs=4).lr_factor_at(e) for e in range(4)] == [1.0] * 4  # constant


def test_epochs_override_rescales_the_recipe():
    m = load_recipe("mnist_4c3f")
    forty = m.with_epochs(40)
    assert (forty.epochs, forty.warmup_epochs, forty.lr_decay_start) == (40, 1, 3)  # 10/400·40, 25/400·40 = 2.5 → 3
    assert forty.lr * forty.lr_factor_at(39) == pytest.approx(1e-6, rel=1e-12)  # still ends at lr_min
    assert forty.lr_factor_at(2) == 1.0 and forty.lr_factor_at(3) < 1.0
    four = m.with_epochs(4)  # a warm-up stays one epoch; the decay starts after the first epoch
    assert (four.warmup_epochs, four.lr_decay_start) == (1, 1)
    assert [four.lr * four.lr_factor_at(e) for e in range(4)] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6], rel=1e-12)
    assert (m.with_epochs(200).warmup_epochs, m.with_epochs(200).lr_decay_start) == (5, 13)
    one = m.with_epochs(1)  # a one-epoch run still has the robust term
    assert one.warmup_epochs == 0 and one.lam_at(0) == 30.0
    assert m.with_epochs(400) == m
    c = load_recipe("cifar10_6c2f").with_epochs(40)
    assert (c.warmup_epochs, c.lr_decay_start) == (1, 20)
    # everything else is the same recipe
    assert {k: v for k, v in forty.to_dict().items() if k not in ("epochs", "warmup_epochs", "lr_decay_start")} == {
        k: v for k, v in m.to_dict().items() if k not in ("epochs", "warmup_epochs", "lr_decay_start")}


def test_validation_epochs_and_split_size():
    from liplt_cli.train.loop import validation_count

    c = TrainConfig(epochs=12, val_every=5)
    assert [e for e in range(12) if c.validates_at(e)] == [0, 5, 10, 11]
    assert [e for e in range(3) if TrainConfig(epochs=3, val_every=1).validates_at(e)] == [0, 1, 2]
    assert validation_count(TrainConfig(), 60000) == 6000  # the reference's 54,000 / 6,000
    assert validation_count(TrainConfig(), 50000) == 5000
    assert validation_count(TrainConfig(val_size=1000), 60000) == 1000
    assert validation_count(TrainConfig(val_fraction=0.0), 60000) == 0
