"""graph_from_module: op coverage, parameter sharing, the built-in equality check, error paths."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.errors import GraphError, InputShapeError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import ActivationNode, Affine, BlockNode, ConcatNode, Conv, Dense, LinearNode, SumNode
from liplt_cli.load import graph_from_module
from liplt_cli.load.ops import linear
from liplt_cli.load.registry import REGISTRY
from liplt_cli.train.archs import build_arch

pytestmark = pytest.mark.usefixtures("single_thread")


def assert_same(graph, module, shape, batch=4):
    x = torch.randn(batch, *shape)
    with torch.no_grad():
        ref, got = module.eval()(x), graph.evaluate(x)
    assert float((got - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def kinds(graph):
    return [type(n).__name__ if not isinstance(n, LinearNode) else type(n.op).__name__ for n in graph.nodes]


# ---------------------------------------------------------------------- sharing and differentiability
def test_sequential_shares_parameters_and_gradients_flow():
    torch.manual_seed(0)
    model = build_arch("mlp:16,8", (1, 6, 6))
    graph = graph_from_module(model, (1, 6, 6))
    dense = [n.op for n in graph.nodes if isinstance(n, LinearNode) and isinstance(n.op, Dense)]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [d.weight for d in dense] == [m.weight for m in linears]
    assert all(d.weight is m.weight and d.bias is m.bias for d, m in zip(dense, linears))
    # an in-place optimiser step is seen by the graph
    x = torch.randn(3, 1, 6, 6)
    with torch.no_grad():
        linears[-1].bias.add_(1.0)
    assert_same(graph, model, (1, 6, 6))
    # gradients reach the module's parameters
    graph.evaluate(x).square().sum().backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in linears)


def test_conv_arch_shares_weights():
    model = build_arch("4C3F")
    graph = graph_from_module(model, (1, 28, 28))
    convs = [n.op for n in graph.nodes if isinstance(n, LinearNode) and isinstance(n.op, Conv)]
    assert len(convs) == 4 and convs[0].weight is model[0].weight


def test_batchnorm_is_affine_and_mode_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2), nn.BatchNorm1d(2))
    for bn in (model[1], model[5]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
    model.train()
    graph = graph_from_module(model, (2, 4, 4))
    assert model.training and model[1].training
    bn2d = graph.nodes[2].op
    assert isinstance(bn2d, Affine) and bn2d.label == "batchnorm" and tuple(bn2d.scale.shape) == (3, 1, 1)
    expected = model[1].weight / torch.sqrt(model[1].running_var + model[1].eps)
    torch.testing.assert_close(bn2d.scale.reshape(-1), expected)
    assert tuple(graph.node(graph.output).op.scale.shape) == (2,)
    assert_same(graph, model, (2, 4, 4))


# ---------------------------------------------------------------------- op coverage
class Everything(nn.Module):
    """A functional model that exercises most handlers at once."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, padding="same", dilation=2)
        self.c1d = nn.Conv1d(6, 4, 3, stride=2)
        self.up = nn.ConvTranspose2d(6, 6, 2, stride=2)
        self.pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.w = nn.Parameter(torch.randn(10, 40))
        self.scale = nn.Parameter(torch.rand(6, 1, 1) + 0.5)

    def forward(self, x):
        x = (x - 0.5) / 0.25
        y = torch.relu(self.c1(x)) * self.scale
        y = F.pad(y, (0, 1, 1, 0))
        y = self.c2(y) + y - 2 * y
        y = self.pool(F.silu(y))
        y = F.max_pool2d(F.leaky_relu(y, 0.2).clamp(min=-1.0), 2, ceil_mode=False)
        z = self.up(y)
        z = self.gap(F.elu(z))
        t = torch.cat([z, z.transpose(2, 3)], 1)
        t = -t.reshape(t.size(0), 6, 8)
        u = self.c1d(torch.tanh(t))
        v = torch.matmul(u.flatten(1), self.w[:, :12].t())
        return torch.log_softmax(F.hardtanh(v, -2.0, 3.0) + 1.0, dim=1)


def test_functional_model_all_ops():
    torch.manual_seed(0)
    model = Everything()
    graph = graph_from_module(model, (3, 9, 9))
    k = kinds(graph)
    for name in ("Affine", "Conv", "Pad", "SumNode", "BlockNode", "ConvTranspose", "ConcatNode",
                 "Permute", "Reshape", "Dense", "ActivationNode"):
        assert name in k, name
    acts = [n.activation.key for n in graph.nodes if isinstance(n, ActivationNode)]
    assert acts == ["relu", "silu", "leaky_relu", "clip", "elu", "tanh", "clip"]
    assert any("stripped final LogSoftmax" in n for n in graph.notes)
    # count_include_pad=False: a full-shape correction Affine after the pooling conv
    pool_fix = [n for n in graph.nodes if isinstance(n, LinearNode) and isinstance(n.op, Affine) and "non-padded" in n.op.label]
    assert len(pool_fix) == 1 and pool_fix[0].op.scale.shape[-2:] == (5, 5)
    # the logits before the log-softmax
    x = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        ref = model(x)
        got = torch.log_softmax(graph.evaluate(x), 1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


ACTIVATIONS = [
    (nn.ReLU(), "relu", 0.0, 1.0), (nn.LeakyReLU(0.1), "leaky_relu", 0.1, 1.0), (nn.Tanh(), "tanh", 0.0, 1.0),
    (nn.Sigmoid(), "sigmoid", 0.0, 0.25), (nn.ELU(), "elu", 0.0, 1.0), (nn.Softplus(), "softplus", 0.0, 1.0),
    (nn.Hardtanh(-2, 3), "clip", 0.0, 1.0), (nn.ReLU6(), "clip", 0.0, 1.0), (nn.SiLU(), "silu", None, None),
    (nn.GELU(), "gelu", None, None), (nn.Mish(), "mish", None, None), (nn.Hardsigmoid(), "hardsigmoid", 0.0, 1 / 6),
    (nn.Hardswish(), "hardswish", -0.5, 1.5),
]


@pytest.mark.parametrize("act,key,alpha,beta", ACTIVATIONS, ids=[a[1] + str(i) for i, a in enumerate(ACTIVATIONS)])
def test_activation_modules(act, key, alpha, beta):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), act, nn.Linear(7, 3))
    graph = graph_from_module(model, (5,))
    node = graph.nodes[2]
    assert isinstance(node, ActivationNode) and node.activation.key == key
    if alpha is not None:
        assert node.activation.alpha == pytest.approx(alpha) and node.activation.beta == pytest.approx(beta)
    else:  # computed bounds: valid (contain the derivative's range) and not vacuous
        x = torch.linspace(-8, 8, 20001, dtype=torch.float64, requires_grad=True)
        (d,) = torch.autograd.grad(node.activation(x).sum(), x)
        assert node.activation.alpha <= float(d.min()) and float(d.max()) <= node.activation.beta
        assert node.activation.beta < 1.2
    assert_same(graph, model, (5,))


def test_silu_written_as_x_times_sigmoid():
    class SiluMul(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(h * torch.sigmoid(h))

    graph = graph_from_module(SiluMul(), (4,))
    acts = [n.activation.key for n in graph.nodes if isinstance(n, ActivationNode)]
    assert acts == ["silu"]


def test_residual_concat_maxpool_nodes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(4 * 2 * 2, 3)

        def forward(self, x):
            r = x + self.c(torch.relu(x))
            m = nn.functional.max_pool2d(r, 2)
            return self.fc(torch.cat([m, m - 0.5 * nn.functional.avg_pool2d(r, 2)], 1).flatten(1))

    net = Net()
    graph = graph_from_module(net, (2, 4, 4))
    assert sum(isinstance(n, SumNode) for n in graph.nodes) == 2
    assert sum(isinstance(n, ConcatNode) for n in graph.nodes) == 1
    assert sum(isinstance(n, BlockNode) for n in graph.nodes) == 1
    assert_same(graph, net, (2, 4, 4))


def test_final_relu_is_kept():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    graph = graph_from_module(model, (4,))
    assert isinstance(graph.node(graph.output), ActivationNode)
    assert not graph.notes


def test_identity_and_dropout_are_skipped():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Identity(), nn.ReLU())
    graph = graph_from_module(model.train(), (4,))
    assert kinds(graph) == ["InputNode", "Dense", "ActivationNode"]


# ---------------------------------------------------------------------- errors
def test_unsupported_nodes_collected():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = torch.exp(self.fc(x))
            z = y[:, :2]
            return torch.cat([z, torch.abs(z)], 1)

    with pytest.raises(UnsupportedOpError) as info:
        graph_from_module(Bad(), (4,))
    names = [p[0] for p in info.value.problems]
    assert names[:2] == ["exp", "getitem"] and names[2].startswith("abs") and len(names) == 3
    message = str(info.value)
    assert "node 'exp' (op exp" in message and "Supported ops:" in message and "MaxPool" in message


def test_product_of_inputs_is_unsupported_not_silently_linearised():
    class Sq(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(UnsupportedOpError, match="not linear"):
        graph_from_module(Sq(), (3,))


def test_input_dependent_weight_is_an_error():
    class DenseByInput(nn.Module):
        def forward(self, x):
            return F.linear(torch.ones(1, 2), x)

    class ConvByInput(nn.Module):
        def forward(self, x):
            return F.conv2d(torch.ones(1, 1, 3, 3), x)

    with pytest.raises(ModelLoadError, match="weight depends on the model input"):
        graph_from_module(DenseByInput(), (2,))
    with pytest.raises(ModelLoadError, match="weight depends on the model input"):
        graph_from_module(ConvByInput(), (1, 2, 2))


def test_untraceable_module():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(ModelLoadError, match="cannot be traced by torch.fx"):
        graph_from_module(Branchy(), (3,))


def test_nan_weight_is_a_graph_error():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = math.inf
    with pytest.raises(GraphError, match="NaN or Inf"):
        graph_from_module(model, (3,))


def test_wrong_input_shape():
    with pytest.raises(InputShapeError, match="does not run"):
        graph_from_module(nn.Linear(3, 2), (4,))


def test_ceil_mode_avgpool_unsupported():
    model = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True), nn.Flatten())
    with pytest.raises(UnsupportedOpError, match="ceil_mode"):
        graph_from_module(model, (1, 5, 5))


def test_the_equality_check_catches_a_wrong_translation(monkeypatch):
    """A handler that drops the bias must be caught by the built-in comparison with the module."""

    def no_bias(c):
        return linear.dense(c, c.src, c.mod.weight, None)

    registered = REGISTRY.modules[nn.Linear]
    monkeypatch.setitem(REGISTRY.modules, nn.Linear, dataclasses.replace(registered, handler=no_bias))
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].bias.fill_(1.0)
    with pytest.raises(GraphError, match="does not reproduce the model"):
        graph_from_module(model, (3,))


def test_gelu_and_softplus_formulas_become_one_activation():
    class Formulas(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
            g = self.b(h)
            g = torch.log1p(torch.exp(2.0 * g)) / 2.0  # softplus with β = 2
            return self.c(g)

    graph = graph_from_module(Formulas(), (4,))
    acts = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
    assert [a.key for a in acts] == ["gelu", "softplus"]
    assert dict(acts[1].params)["beta"] == pytest.approx(2.0)
    assert kinds(graph) == ["InputNode", "Dense", "ActivationNode", "Dense", "ActivationNode", "Dense"]


def test_spatial_mean_is_global_average_pooling():
    class Means(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(2, 3, 3), nn.Linear(6, 2)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            a = y.mean((2, 3))
            b = torch.mean(y, dim=(-1, -2), keepdim=True).flatten(1)
            return self.fc(torch.cat([a, b], 1))

    model = Means()
    graph = graph_from_module(model, (2, 5, 6))
    pools = [n.op for n in graph.nodes if isinstance(n, LinearNode) and isinstance(n.op, Conv) and n.op.groups == 3]
    assert len(pools) == 2 and all(tuple(p.weight.shape[2:]) == (3, 4) for p in pools)
    assert_same(graph, model, (2, 5, 6))
    with pytest.raises(UnsupportedOpError, match="only the spatial axes"):
        graph_from_module(_ChannelMean(), (2, 5, 6))


class _ChannelMean(nn.Module):
    def forward(self, x):
        return x.mean(1)
