"""Proposition 2 architectures: names, plain export (safetensors + ONNX) and live layer graphs."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from liplt_cli.errors import ArgumentError
from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.load import graph_from_module, load_model
from liplt_cli.radius import certified_accuracy, certified_radius
from liplt_cli.train import loop
from liplt_cli.train.archs import build_arch
from liplt_cli.train.config import TrainConfig
from liplt_cli.train.lipschitz_layers import Prop2Conv, Prop2Dense
from liplt_cli.train.prop2_archs import Prop2Sequential, parse_prop2_spec
from liplt_cli.train.prop2_export import PlainResidual

PLAIN_ONNX_OPS = {"Add", "Conv", "ConvTranspose", "Flatten", "Gemm", "MatMul", "Mul", "Identity",
                  "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Softplus"}


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model)


def test_dense_family():
    m = build_arch("prop2-mlp:3x32", (1, 6, 6), 4)
    assert isinstance(m, Prop2Sequential)
    assert isinstance(m[0], nn.Flatten) and isinstance(m[1], nn.Linear) and m[1].in_features == 36
    layers = [x for x in m if isinstance(x, Prop2Dense)]
    assert len(layers) == 3 and all(x.channels == 32 and x.t_choice == "sll" and x.rho_learned for x in layers)
    assert isinstance(m[-1], nn.Linear) and m[-1].out_features == 4
    fixed = build_arch("prop2-mlp:2x36,aol,rho=1,nostem", (1, 6, 6), 4)
    assert not any(isinstance(x, nn.Linear) and x.out_features == 36 for x in fixed)
    layers = [x for x in fixed if isinstance(x, Prop2Dense)]
    assert all(x.t_choice == "aol" and not x.rho_learned and float(x.rho) == 1.0 for x in layers)


def test_conv_family():
    m = build_arch("prop2-conv:2x8-16,sn", (3, 12, 12), 10, activation="tanh")
    convs = [x for x in m if isinstance(x, Prop2Conv)]
    assert [(c.in_channels, c.spatial) for c in convs] == [(8, (12, 12))] * 2 + [(16, (6, 6))] * 2
    assert all(c.t_choice == "sn" and c.activation_name == "tanh" for c in convs)
    downs = [x for x in m if isinstance(x, nn.Conv2d) and x.stride == (2, 2)]
    assert [(d.in_channels, d.out_channels) for d in downs] == [(8, 16), (16, 16)]
    assert m[-1].in_features == 16 * 3 * 3
    assert m(torch.rand(2, 3, 12, 12)).shape == (2, 10)


@pytest.mark.parametrize("name,why", [
    ("prop2-mlp", "missing"), ("prop2-mlp:3", "K x width"), ("prop2-mlp:0x8", "positive"),
    ("prop2-mlp:2x8-4", "one width"), ("prop2-mlp:2x8,xyz", "unknown option"),
    ("prop2-mlp:2x8,rho=0", "positive"), ("prop2-mlp:2x8,rho=abc", "rho"),
    ("prop2-mlp:2x8,nostem", "nostem"), ("prop2-conv:1x4,nostem", "unknown option"),
    ("prop2-conv:1x4-4-4-4-4-4", "stages"),
])
def test_bad_names(name, why):
    with pytest.raises(ArgumentError, match=why):
        build_arch(name, (1, 6, 6), 3)


def test_non_monotone_activation_is_a_clear_error():
    with pytest.raises(ArgumentError, match="monotone"):
        build_arch("prop2-mlp:2x8", (1, 6, 6), 3, activation="gelu")


def test_spec_parse():
    spec = parse_prop2_spec("prop2-conv:2x32-64,AOL,rho=2.5")
    assert (spec.family, spec.depth, spec.widths, spec.t_choice, spec.rho) == ("conv", 2, (32, 64), "aol", 2.5)


def test_existing_architectures_are_unchanged():
    assert type(build_arch("4C3F")) is nn.Sequential
    assert type(build_arch("mlp:8", (1, 4, 4), 3)) is nn.Sequential
    with pytest.raises(ArgumentError, match="prop2-mlp"):
        build_arch("9Z9")


def _perturbed(name: str, shape, classes: int = 4, seed: int = 0, activation: str = "relu") -> Prop2Sequential:
    """A model whose q, ρ and weights are away from their initial values (a few optimiser steps)."""
    torch.manual_seed(seed)
    model = build_arch(name, shape, classes, activation)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.rand(16, *shape), torch.randint(0, classes, (16,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


ARCHS = [
    ("prop2-mlp:2x12,sll", (1, 5, 5), "relu"),
    ("prop2-mlp:2x12,sn,rho=2", (1, 5, 5), "tanh"),
    ("prop2-conv:1x4-6,aol", (2, 8, 8), "relu"),
    ("prop2-conv:2x4,sn", (1, 6, 6), "sigmoid"),
    ("prop2-conv:1x3,sll", (1, 5, 5), "leaky_relu"),
]


@pytest.mark.parametrize("name,shape,activation", ARCHS)
def test_plain_export_round_trip(tmp_path, name, shape, activation):
    """module (eval) vs plain module vs ONNX vs safetensors: same logits; same bounds on both files."""
    model = _perturbed(name, shape, activation=activation)
    plain = model.to_plain()
    assert not any(isinstance(m, (Prop2Dense, Prop2Conv)) for m in plain.modules())
    assert sum(isinstance(m, PlainResidual) for m in plain) == _count(model, (Prop2Dense, Prop2Conv))
    cfg = TrainConfig(arch=name, activation=activation, out=str(tmp_path))
    files = loop.export_model(plain, cfg, shape, tmp_path, "synthetic")
    ops = {n.op_type for n in onnx.load(files["onnx"]).graph.node}
    assert ops <= PLAIN_ONNX_OPS, ops - PLAIN_ONNX_OPS
    assert {"Add", "Mul"} <= ops and ("ConvTranspose" in ops) == ("conv" in name)
    x = torch.rand(9, *shape)
    with torch.no_grad():
        ref = model(x)
        assert float((plain(x) - ref).abs().max()) <= 1e-5
    g_st, g_onnx = load_model(files["safetensors"]), load_model(files["onnx"])
    assert float((g_st.evaluate(x) - ref).abs().max()) <= 1e-5
    assert float((g_onnx.evaluate(x) - ref).abs().max()) <= 1e-5
    b_st = compute_bounds(g_st, EngineOptions(norm=2.0), methods=("naive", "liplt"))
    b_onnx = compute_bounds(g_onnx, EngineOptions(norm=2.0), methods=("naive", "liplt"))
    for method in ("naive", "liplt"):
        a, b = b_st.methods[method], b_onnx.methods[method]
        if activation == "leaky_relu":  # ONNX stores the slope 0.01 as a float32 attribute
            assert a.global_ == pytest.approx(b.global_, rel=1e-9)
            assert [v for r in a.pairwise for v in r] == pytest.approx([v for r in b.pairwise for v in r], rel=1e-9)
        else:
            assert a.global_ == b.global_ and a.pairwise == b.pairwise  # identical numbers
        assert a.guarantee.sound and b.guarantee.sound


@pytest.mark.parametrize("name,shape", [("prop2-conv:1x4,sll", (1, 6, 6)), ("prop2-mlp:2x10,aol", (1, 4, 4))])
def test_export_of_the_training_module_is_plain(tmp_path, name, shape):
    """``export_model`` given the module as trained writes its plain form: standard ops only (no
    Constant, no Mul by T's diagonal), the same layer graph from safetensors and ONNX, logits
    identical between the two files, and identical bounds."""
    model = _perturbed(name, shape)
    files = loop.export_model(model, TrainConfig(arch=name, out=str(tmp_path)), shape, tmp_path, "synthetic")
    ops = [n.op_type for n in onnx.load(files["onnx"]).graph.node]
    assert set(ops) <= PLAIN_ONNX_OPS, set(ops) - PLAIN_ONNX_OPS
    blocks = _count(model, (Prop2Dense, Prop2Conv))
    assert ops.count("Mul") == blocks and ops.count("Add") == blocks  # only the √ρ·x branch multiplies
    g_st, g_onnx = load_model(files["safetensors"]), load_model(files["onnx"])
    assert [n.kind for n in g_st.nodes] == [n.kind for n in g_onnx.nodes]
    assert [n.describe() for n in g_st.nodes] == [n.describe() for n in g_onnx.nodes]
    x = torch.rand(5, *shape)
    with torch.no_grad():
        ref = model.eval()(x)
        assert torch.equal(g_st.evaluate(x), g_onnx.evaluate(x))
    assert float((g_st.evaluate(x) - ref).abs().max()) <= 1e-5
    b_st = compute_bounds(g_st, EngineOptions(norm=2.0), methods=("naive", "liplt"))
    b_onnx = compute_bounds(g_onnx, EngineOptions(norm=2.0), methods=("naive", "liplt"))
    for method in ("naive", "liplt"):
        assert b_st.methods[method].global_ == b_onnx.methods[method].global_
        assert b_st.methods[method].pairwise == b_onnx.methods[method].pairwise


@pytest.mark.parametrize("name,shape", [("prop2-mlp:2x10,sll", (1, 4, 4)), ("prop2-conv:1x3,sn", (1, 5, 5))])
def test_layer_graph_built_once_follows_training(name, shape):
    """The training loop builds its graph once: after optimiser steps and a forward, that graph
    computes the current model and gives the same bounds as a freshly built graph."""
    torch.manual_seed(1)
    model = build_arch(name, shape, 3)
    graph = graph_from_module(model, shape)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.rand(12, *shape), torch.randint(0, 3, (12,))
    model.train()
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits_train = model(x)  # training-mode scales
        assert torch.allclose(graph.evaluate(x), logits_train, atol=1e-6)
        model.eval()
        logits_eval = model(x)  # certified scales
        assert torch.allclose(graph.evaluate(x), logits_eval, atol=1e-6)
    fresh = graph_from_module(model, shape)
    old, new = compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",)), compute_bounds(fresh, EngineOptions(norm=2.0), methods=("liplt",))
    assert old.methods["liplt"].global_ == pytest.approx(new.methods["liplt"].global_, rel=1e-12)


def test_bounds_on_the_live_graph_are_differentiable_in_w():
    from liplt_cli.lipschitz import pairwise_bound_tensor

    model = build_arch("prop2-mlp:2x8,aol", (1, 4, 4), 3).train()
    graph = graph_from_module(model, (1, 4, 4))
    model(torch.rand(2, 1, 4, 4))
    lip, _ = pairwise_bound_tensor(graph, method="liplt", state=None, iterations=3)
    lip.sum().backward()
    assert all(float(layer.weight.grad.abs().sum()) > 0 for layer in model if isinstance(layer, Prop2Dense))


def _quadrants(n: int = 96, seed: int = 0):
    from liplt_cli.train.data import split_train_val

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    q = torch.stack([x[:, 0, :3, :3].mean((1, 2)), x[:, 0, :3, 3:].mean((1, 2)),
                     x[:, 0, 3:, :3].mean((1, 2)), x[:, 0, 3:, 3:].mean((1, 2))], 1)
    return split_train_val(x, q.argmax(1), val_size=16, seed=seed, num_classes=4, description="synthetic quadrants")


def _train_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(arch="prop2-mlp:2x12,sn", dataset="synthetic", epochs=2, batch_size=32, lr=1e-2, lam=1.0,
                cutoff=5.0, warmup_epochs=1, power_iterations=2, eps=0.01, val_size=16, device="cpu",
                out=str(tmp_path), method="liplt")
    base.update(kw)
    return TrainConfig(**base).validate()


def test_training_loop_validates_the_current_weights(tmp_path):
    """The loop's per-epoch sound certified accuracy is that of the exported final model."""
    data = _quadrants()
    cfg = _train_cfg(tmp_path / "run")
    res = loop.train(cfg, data=data)
    last = res.records[-1]
    graph = load_model(res.files["safetensors"])
    lip = torch.tensor(compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",)).methods["liplt"].pairwise)
    with torch.no_grad():
        logits = graph.evaluate(data.x_val).double()
    assert certified_accuracy(certified_radius(logits, data.y_val, lip), [cfg.eps])[0] == last["val_certified"]
    assert loop._mean_offdiag(lip) == pytest.approx(last["mean_lij"], rel=1e-6)


@pytest.mark.parametrize("arch", ["prop2-conv:1x2,sn", "prop2-mlp:2x12,sn"])
def test_training_loop_resume(tmp_path, arch):
    """Resume is bit-exact for convolutional layers.  Dense layers apply Wᵀ through a view of W
    kept by the layer graph, whose autograd node PyTorch rebuilds lazily after W changes in place:
    its position in the backward order, hence the order in which W's gradient is summed, differs
    on resume, so dense models resume exactly up to float32 round-off."""
    data = _quadrants()
    full = loop.train(_train_cfg(tmp_path / "full", arch=arch), data=data)
    part = _train_cfg(tmp_path / "part", epochs=1, arch=arch)
    loop.train(part, data=data)
    resumed = loop.train(part.replace(epochs=2), data=data, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    if "conv" in arch:
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_cli_help_names_the_families(capsys):
    from liplt_cli.cli.app import run

    assert run(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "prop2-mlp:KxN" in out and "prop2-conv:KxC1-C2-" in out  # rich wraps at spaces only


def test_cli_refuses_a_non_monotone_activation_in_one_line(tmp_path, capsys):
    from liplt_cli.cli.app import run

    code = run(["train", "--arch", "prop2-mlp:2x8", "--activation", "gelu", "--limit", "64", "--epochs", "1",
                "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "monotone" in err and "Traceback" not in err


@pytest.mark.parametrize("recipe,shape", [("mnist_prop2_mlp", (1, 28, 28)), ("cifar10_prop2_conv", (3, 32, 32))])
def test_recipes_build(recipe, shape):
    from liplt_cli.train.config import load_recipe

    cfg = load_recipe(recipe)
    model = build_arch(cfg.arch, shape, 10, cfg.activation)
    assert isinstance(model, Prop2Sequential) and model(torch.rand(2, *shape)).shape == (2, 10)


def test_plain_export_of_a_five_by_five_kernel(tmp_path):
    """Padding 2 on both the Conv and the ConvTranspose: the loader reads it back exactly."""
    torch.manual_seed(0)
    model = Prop2Sequential(Prop2Conv(2, (6, 6), hidden=3, kernel=5, t_choice="sll"), nn.Flatten(), nn.Linear(72, 3))
    with torch.no_grad():
        model[0].log_q.normal_()
    model.eval()
    files = loop.export_model(model.to_plain(), TrainConfig(arch="custom", out=str(tmp_path)), (2, 6, 6), tmp_path, "x")
    x = torch.rand(4, 2, 6, 6)
    with torch.no_grad():
        ref = model(x)
    for path in (files["safetensors"], files["onnx"]):
        assert float((load_model(path).evaluate(x) - ref).abs().max()) <= 1e-5


def test_certified_radii_of_a_trained_prop2_model_resist_attacks(tmp_path):
    """A CRM-trained Proposition 2 model read back from ONNX: no perturbation of norm 0.99·r found
    by PGD, random or boundary search flips a point certified at r, whether the pairwise constants
    come from the engine or from the designed bound (√2·L for every pair); with constants 30 times
    too small the same search does find flips."""
    from liplt_cli.certify import PairwiseConstants, certified_radii, engine_constants
    from liplt_cli.lipschitz.result import Guarantee
    from liplt_cli.train.designed_bound import designed_bound
    from tests.test_certify_soundness import _violations

    data = _quadrants(160)
    res = loop.train(_train_cfg(tmp_path / "run", arch="prop2-mlp:2x16,sll", epochs=3, lam=2.0), data=data)
    graph = load_model(res.files["onnx"]).detached()
    x = torch.cat([data.x_val, data.x_train[:48]])
    with torch.no_grad():
        y = graph.evaluate(x).argmax(1)  # the model's own labels: every radius is positive
    k = graph.num_classes
    lip = designed_bound(res.model, (1, 6, 6)).value
    designed = PairwiseConstants((1 - torch.eye(k, dtype=torch.float64)) * 2**0.5 * lip, Guarantee.UPPER_BOUND,
                                 norm=2.0, method="designed")
    engine = engine_constants(graph, norm=2.0)
    for consts in (engine, designed):
        out = certified_radii(graph, x, y, consts)
        keep = (out.radius > 0) & torch.isfinite(out.radius)
        assert int(keep.sum()) == len(y)
        found = _violations(graph, x[keep], y[keep], out.radius[keep], 2.0, steps=20, restarts=1)
        assert found == {"pgd": 0, "random": 0, "boundary": 0}
    fake = PairwiseConstants(engine.matrix / 30, Guarantee.ESTIMATE, norm=2.0, method="fake")
    out = certified_radii(graph, x, y, fake)
    keep = (out.radius > 0) & torch.isfinite(out.radius)
    assert sum(_violations(graph, x[keep], y[keep], out.radius[keep], 2.0, steps=20, restarts=1).values()) > 0
