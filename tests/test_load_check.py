"""The loader's end-to-end check: large inputs and saturated pre-activations, errors not notes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from liplt_cli.cli.app import run
from liplt_cli.errors import GraphError, ModelLoadError
from liplt_cli.graph import make_activation
from liplt_cli.load import elementwise, graph_from_module, load_model
from liplt_cli.load.check import PREACTIVATION_TARGET, ModelMismatchError, preactivation_peak, trial_inputs

pytestmark = pytest.mark.usefixtures("single_thread")


def _f(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _switch_model(tmp_path):
    """fc → Where(h > 50, 1000·h − 49950, Relu(h)) → fc: equal to ReLU for h ≤ 50 only."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Greater", ["h", "c50"], ["g"], name="above_50"),
        helper.make_node("Mul", ["h", "c1000"], ["m"], name="steep"),
        helper.make_node("Sub", ["m", "c49950"], ["s"], name="steep_shift"),
        helper.make_node("Where", ["g", "s", "r"], ["phi"], name="switch"),
        helper.make_node("Gemm", ["phi", "w2", "b2"], ["output"], transB=1, name="fc2"),
    ]
    inits = [_f("w1", rng.normal(size=(8, 5))), _f("b1", rng.normal(size=8)), _f("w2", rng.normal(size=(3, 8))),
             _f("b2", rng.normal(size=3)), _f("c50", 50.0), _f("c1000", 1000.0), _f("c49950", 49950.0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = tmp_path / "switch.onnx"
    onnx.save(model, str(path))
    return path


def _misread_as_relu(monkeypatch):
    """Simulate the old grid matcher: every composite is 'recognised' as ReLU."""

    def fake(cv, chain):
        name, f = chain[0]
        return name, f, make_activation("relu"), None

    monkeypatch.setattr(elementwise, "_recognise", fake)


def test_a_misread_switch_far_out_is_caught_at_large_pre_activations(tmp_path, monkeypatch, capsys):
    path = _switch_model(tmp_path)
    assert load_model(path) is not None  # read correctly, it loads
    _misread_as_relu(monkeypatch)
    with pytest.raises(ModelMismatchError) as info:
        load_model(path)
    err = info.value
    assert isinstance(err, ModelLoadError) and isinstance(err, GraphError)
    msg = str(err)
    assert "does not reproduce the model" in msg and ("magnitude" in msg or "pre-activations" in msg)
    assert "first difference is at layer-graph node" in msg and "switch" in msg
    code = run(["bound", str(path)])
    cap = capsys.readouterr()
    assert code == 2 and len(cap.err.strip().splitlines()) == 1 and "Traceback" not in cap.err


class NearIdentity(nn.Module):
    """x + 1e-6·x³ between two linear layers: the identity to 1e-6 near 0."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        return self.b(h + 1e-6 * h * h * h)


def test_a_misread_near_identity_polynomial_is_caught(monkeypatch):
    def fake(cv, chain):
        name, f = chain[0]
        return name, f, make_activation("identity"), None

    monkeypatch.setattr(elementwise, "_recognise", fake)
    torch.manual_seed(0)
    with pytest.raises(ModelMismatchError, match="does not reproduce the model"):
        graph_from_module(NearIdentity(), (4,))


def test_trial_inputs_drive_pre_activations_to_about_1e3():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    graph = graph_from_module(model, (6,))
    example = torch.zeros(2, 6)
    trials = trial_inputs(graph, example, seed=0)
    kinds = [what for what, _, _ in trials]
    assert any("1e4" in k for k in kinds) and any("pre-activations" in k for k in kinds)
    x = next(x for what, x, _ in trials if "pre-activations" in what)
    peak = preactivation_peak(graph, x)
    assert 0.5 * PREACTIVATION_TARGET <= peak <= 2 * PREACTIVATION_TARGET


def test_models_that_overflow_in_float32_are_still_checked_where_finite():
    """log1p(exp(2g))/2 is softplus with β = 2; the model's float32 exp overflows for g > 44, the
    graph's softplus does not: such samples are left out, the others must agree."""

    class Overflow(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.log1p(torch.exp(2.0 * self.a(x))) / 2.0)

    torch.manual_seed(0)
    graph = graph_from_module(Overflow(), (3,))
    assert [n.activation.key for n in graph.nodes if hasattr(n, "activation")] == ["softplus"]


def test_a_derived_activation_cannot_be_saved(tmp_path):
    from liplt_cli.load import save_safetensors

    path = _switch_model(tmp_path)
    graph = load_model(path)
    with pytest.raises(GraphError, match="derived from an elementwise formula"):
        save_safetensors(graph, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
