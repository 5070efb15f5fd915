"""A graph built from a live module shares its parameters and buffers: an operation on one of them
is never simplified away, even when it does nothing at trace time (x · 1, x + 0, x / 1), since a
training step may change the value afterwards.  Constants of an ONNX file may still be folded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liplt_cli.graph import Affine, LinearNode
from liplt_cli.load import graph_from_module, load_model
from tests.conftest import export_onnx

pytestmark = pytest.mark.usefixtures("single_thread")


class LearnedScale(nn.Module):
    """``b(a(x) · s + t) / d``: a learned scale ``s`` (1 at first), a shift buffer ``t`` (0 at
    first) and a learned divisor ``d`` (1 at first)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)
        self.scale = nn.Parameter(torch.ones(()))
        self.divisor = nn.Parameter(torch.ones(()))
        self.register_buffer("shift", torch.zeros(5))

    def forward(self, x):
        return self.b(self.a(x) * self.scale + self.shift) / self.divisor


def _affines(graph):
    return [n for n in graph.nodes if isinstance(n, LinearNode) and isinstance(n.op, Affine)]


def test_no_op_operations_on_the_modules_own_tensors_are_kept():
    torch.manual_seed(0)
    module = LearnedScale()
    graph = graph_from_module(module, (4,))
    affines = _affines(graph)
    assert [a.op.label for a in affines] == ["multiply by constant", "add constant", "divide by constant"]
    assert affines[0].op.scale is module.scale  # shared, not a copy
    assert affines[1].op.shift is module.shift


def test_the_graph_follows_in_place_updates_of_a_unit_scale_and_a_zero_shift():
    torch.manual_seed(0)
    module = LearnedScale()
    graph = graph_from_module(module, (4,))
    with torch.no_grad():
        module.scale.fill_(2.5)  # an optimiser step, in place
        module.shift.copy_(torch.linspace(-1.0, 1.0, 5))
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), module(x))


def test_a_unit_divisor_still_passes_gradients_to_its_parameter():
    torch.manual_seed(0)
    module = LearnedScale()
    graph = graph_from_module(module, (4,))
    graph.evaluate(torch.randn(8, 4)).sum().backward()
    assert module.divisor.grad is not None and module.divisor.grad.abs().item() > 0
    assert module.scale.grad is not None and module.scale.grad.abs().item() > 0


def test_constants_that_are_not_the_modules_tensors_are_still_dropped():
    class Plain(LearnedScale):
        """The same layers, with plain constants in place of the module's own tensors."""

        def forward(self, x):
            return self.b(self.a(x) * 1.0 + torch.zeros(5)) / 1.0

    assert _affines(graph_from_module(Plain(), (4,))) == []


def test_onnx_initialisers_equal_to_one_are_still_folded(tmp_path):
    torch.manual_seed(0)
    module = LearnedScale()
    path = export_onnx(module, (4,), tmp_path / "scale.onnx")
    graph = load_model(path)
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), module(x), rtol=1e-5, atol=1e-5)
    assert _affines(graph) == []
