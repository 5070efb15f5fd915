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
    assert (c.arch, c.lam, c.cutoff, c.augment_flip, c.augment_rotate, c.augment_translate) == (
        "6C2F", 15.0, 0.2, True, 10.0, 0.1)
    assert c.eps == pytest.approx(36 / 255)


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
        ({"limit": 0}, "--limit must be positive"),
        ({"colour": "red"}, "unknown key"),
        ({"lr_schedule": "step"}, "unknown lr_schedule"),
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
