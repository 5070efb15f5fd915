"""Exporter habits around shared constants: TorchScript's Identity over a deduplicated bias,
Identity chains, Constant nodes as weights, one initialiser read by two nodes; GELU-tanh."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from liplt_cli.graph import ActivationNode
from liplt_cli.load import load_model
from tests.conftest import export_onnx

pytestmark = pytest.mark.usefixtures("single_thread")


class ZeroBiasResidual(nn.Module):
    """A residual conv net whose two residual convolutions both have zero biases: the TorchScript
    exporter stores one zero bias and feeds the other conv through an ONNX Identity node."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)
        with torch.no_grad():
            self.c1.bias.zero_()
            self.c2.bias.zero_()

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = h + self.c2(torch.relu(self.c1(h)))
        return self.fc(torch.relu(h).flatten(1))


@pytest.mark.parametrize("opset,folding", [(13, True), (17, True), (17, False)])
def test_identity_over_a_deduplicated_zero_bias_loads(tmp_path, opset, folding):
    torch.manual_seed(0)
    module = ZeroBiasResidual()
    path = export_onnx(module, (1, 6, 6), tmp_path / "res.onnx", opset=opset, do_constant_folding=folding)
    assert "Identity" in [n.op_type for n in onnx.load(str(path)).graph.node]  # the habit is reproduced
    graph = load_model(path)
    x = torch.randn(4, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), module(x), rtol=1e-5, atol=1e-5)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def test_identity_chain_constant_weight_and_initializer_shared_by_two_convs(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 3, 3)) * 0.3
    nodes = [
        helper.make_node("Identity", ["b0"], ["b1"], name="id1"),
        helper.make_node("Identity", ["b1"], ["b2"], name="id2"),  # a chain of Identity nodes
        helper.make_node("Constant", [], ["wc"], value=numpy_helper.from_array(w.astype(np.float32), "wc_value"), name="const_w"),
        helper.make_node("Identity", ["wc"], ["wc_id"], name="id_const"),  # Identity over a Constant node
        helper.make_node("Conv", ["input", "w", "b2"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w", "b0"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),  # same initialiser twice
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "wc_id", "b1"], ["c3"], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Flatten", ["c3"], ["output"], name="flat"),
    ]
    inits = [_init("w", rng.normal(size=(3, 3, 3, 3)) * 0.3), _init("b0", rng.normal(size=3))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 48])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = tmp_path / "shared.onnx"
    onnx.save(model, str(path))
    loaded = load_model(path)
    x = rng.normal(size=(1, 3, 4, 4)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    got = loaded.evaluate(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True])
def test_gelu_tanh_approximation_is_recognised(tmp_path, dynamo):
    """TorchScript writes GELU(approximate='tanh') as nine Mul/Add/Tanh ops; dynamo as Gelu-20 with
    approximate="tanh" (written with older ops before the opset conversion)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 3))
    path = export_onnx(module, (6,), tmp_path / "g.onnx", dynamo=dynamo, opset=None if dynamo else 17)
    graph = load_model(path)
    acts = [n.activation.key for n in graph.nodes if isinstance(n, ActivationNode)]
    assert acts == ["gelu_tanh"]
    x = torch.randn(5, 6) * 3
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), module(x), rtol=1e-5, atol=1e-5)
