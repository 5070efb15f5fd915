"""CRM constants of Proposition 2 models from the layer structure: min(generic, designed),
differentiable in W, q and ρ (central differences), and never below the true constants."""

from __future__ import annotations

import copy

import pytest
import torch

from liplt_cli.lipschitz.lower import empirical_lower_bound
from liplt_cli.train import loop
from liplt_cli.train.archs import build_arch
from liplt_cli.train.prop2_training import Prop2TrainingBound

SHAPE = (1, 4, 4)


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_arch(name, SHAPE, 3).double().train()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1 and p.numel() > 1:  # q away from 1, so d/dq is not special
                p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    return model, x


def test_the_loop_uses_the_structure_for_prop2_models():
    model, _ = _model("prop2-mlp:2x6,sll")
    assert isinstance(loop._graph_from_module(model, SHAPE), Prop2TrainingBound)
    plain = build_arch("mlp:8", SHAPE, 3)
    assert not isinstance(loop._graph_from_module(plain, SHAPE), Prop2TrainingBound)


def _value(model, x, bound, state, which: str) -> torch.Tensor:
    model(x)  # the training-mode forward writes this step's differentiable scales
    st = copy.deepcopy(state)
    if which == "min":
        lip, _ = bound.pairwise_bound("liplt", st, 40)
        return lip.sum()
    generic, designed, _ = bound.parts("liplt", st, 40)
    return (generic if which == "generic" else designed).sum()


@pytest.mark.parametrize("name,which,params", [
    ("prop2-mlp:2x6,sll", "generic", ["2.log_rho", "2.log_q", "2.weight", "3.weight"]),
    ("prop2-mlp:2x6,sll", "designed", ["2.log_rho", "3.log_rho", "1.weight", "4.weight"]),
    ("prop2-conv:1x2,sll", "min", ["1.log_rho", "1.log_q", "1.weight", "0.weight"]),
])
def test_gradient_of_the_training_constants_matches_central_differences(name, which, params):
    """d(Σ L_ij)/dθ by autograd equals central differences, for θ in ρ, q, W (and the linear maps),
    with the power iterations converged (warm start from a converged state)."""
    model, x = _model(name)
    bound = loop._graph_from_module(model, SHAPE)
    model(x)
    _, state = bound.pairwise_bound("liplt", None, 300)
    named = dict(model.named_parameters())
    model.zero_grad()
    _value(model, x, bound, state, which).backward()
    gen = torch.Generator().manual_seed(0)
    for pname in params:
        p = named[pname]
        idx = tuple(int(torch.randint(0, n, (1,), generator=gen)) for n in p.shape)
        analytic = float(p.grad[idx]) if p.grad is not None else 0.0
        h = 1e-6
        with torch.no_grad():
            p[idx] += h
        up = float(_value(model, x, bound, state, which))
        with torch.no_grad():
            p[idx] -= 2 * h
        down = float(_value(model, x, bound, state, which))
        with torch.no_grad():
            p[idx] += h
        numeric = (up - down) / (2 * h)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7), (pname, idx, analytic, numeric)
        if which == "generic" or pname.endswith("log_rho"):
            assert abs(numeric) > 1e-6, (pname, "the constant depends on it")


@pytest.mark.parametrize("name", ["prop2-mlp:2x6,sll", "prop2-mlp:3x6,sn", "prop2-conv:1x2,aol"])
def test_training_constants_are_at_least_the_true_pairwise_constants(name):
    """With converged iterations (the bound's and, for SN, the layers' estimate of ‖W‖, from
    below, which the designed term √ρ relies on) the training constant (min of the two terms) is
    ≥ the largest pairwise gradient norm of the training-mode model found by sampling and ascent; it is the
    entrywise minimum of the generic and the designed terms."""
    model, x = _model(name, seed=1)
    bound = loop._graph_from_module(model, SHAPE)
    for _ in range(60 if ",sn" in name else 1):  # SN: the layers' own ‖W‖ power iteration converges
        model(x)
    lip, state = bound.pairwise_bound("liplt", None, 300)
    generic, designed, _ = bound.parts("liplt", copy.deepcopy(state), 1)
    assert torch.allclose(lip, torch.minimum(generic, designed), rtol=1e-9)
    with torch.no_grad():
        low = empirical_lower_bound(bound.layer_graph.detached(), norm=2.0, samples=48, ascent_steps=10, seed=0)
    k = lip.shape[0]
    for i in range(k):
        for j in range(k):
            if i != j:
                assert low.pairwise[i][j] <= float(lip[i, j]) * (1 + 1e-9), (i, j)
