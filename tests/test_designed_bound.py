"""The designed bound (product of certified √ρ_i and stem/head norms) against dense oracles."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.train.archs import build_arch
from liplt_cli.train.designed_bound import designed_bound
from liplt_cli.train.lipschitz_layers import Prop2Conv, Prop2Dense


def _perturbed(name: str, shape, activation: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = build_arch(name, shape, 3, activation)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.rand(8, *shape), torch.randint(0, 3, (8,))
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _max_jacobian_norm(fn, shape, seed: int, points: int = 24, ascent: bool = True) -> float:
    """Largest ‖J(x)‖₂ (SVD of the explicit Jacobian) over random points and a short ascent."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.tensor(shape).prod())

    def jac(x):
        return torch.autograd.functional.jacobian(lambda v: fn(v.reshape(1, *shape)).reshape(-1), x)

    best = 0.0
    for i in range(points):
        x = torch.randn(n, generator=g, dtype=torch.float64) * (0.3, 1.0, 3.0)[i % 3]
        best = max(best, float(torch.linalg.matrix_norm(jac(x), ord=2)))
    if ascent:
        x = torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.1)
        for _ in range(15):
            j = jac(x.detach())
            best = max(best, float(torch.linalg.matrix_norm(j, ord=2)))
            v = torch.linalg.eigh(j.T @ j)[1][:, -1]
            flat = lambda u: fn(u.reshape(1, *shape)).reshape(-1)  # noqa: E731
            _, jv = torch.autograd.functional.jvp(flat, x, v, create_graph=True)
            opt.zero_grad()
            (-torch.linalg.vector_norm(jv)).backward()
            opt.step()
    return best


def _explicit(module: nn.Module, shape) -> torch.Tensor:
    """A linear module as an explicit float64 matrix (outputs × inputs)."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    m = module.double() if not isinstance(module, nn.Flatten) else module
    with torch.no_grad():
        out = m(basis) - (m(torch.zeros(1, *shape, dtype=torch.float64)) if not isinstance(module, nn.Flatten) else 0)
    return out.reshape(n, -1).T


MODELS = [
    ("prop2-mlp:2x6,sll", (1, 3, 3), "relu"),
    ("prop2-mlp:3x5,sn", (1, 2, 3), "tanh"),
    ("prop2-mlp:2x6,aol,rho=0.5", (1, 3, 3), "softplus"),
    ("prop2-conv:1x2-3,aol", (1, 4, 4), "tanh"),
    ("prop2-conv:2x2,sn", (1, 4, 4), "relu"),
    ("prop2-conv:1x2,sll", (2, 3, 3), "sigmoid"),
]


@pytest.mark.parametrize("name,shape,activation", MODELS)
def test_designed_bound_is_sound_and_is_the_product(name, shape, activation):
    model = _perturbed(name, shape, activation, seed=3)
    bound = designed_bound(model, shape)
    assert bound.guarantee is Guarantee.UPPER_BOUND
    # the plain export, evaluated in float64 (its float32 weights exactly), is what is certified
    plain = model.to_plain().double()
    worst = _max_jacobian_norm(plain, shape, seed=0, ascent=activation != "relu")
    assert worst <= bound.value
    # the factors: certified √ρ of each layer, exact norms of the linear parts (dense oracle)
    expected, x = 1.0, torch.zeros(1, *shape)
    for module, factor in zip(model, bound.factors):
        in_shape = tuple(x.shape[1:])
        with torch.no_grad():
            x = module(x)
        if isinstance(module, (Prop2Dense, Prop2Conv)):
            assert factor.kind == "prop2"
            assert factor.value == pytest.approx(module.certified_scale, rel=1e-5)
            assert factor.value >= module.certified_scale
            expected *= module.certified_scale
        else:
            exact = float(torch.linalg.matrix_norm(_explicit(copy.deepcopy(module), in_shape), ord=2))
            assert factor.value >= exact * (1 - 1e-9)
            if factor.kind != "conv":  # the FFT bound of a convolution may exceed its norm on small images
                assert factor.value == pytest.approx(exact, rel=1e-5)
            expected *= exact
    assert bound.value >= expected * (1 - 1e-9)


def test_single_layer_bound_is_attained():
    """One layer alone: the ascent reaches √ρ, so the comparison above can fail."""
    torch.manual_seed(0)
    layer = Prop2Dense(4, activation="tanh", t_choice="aol", rho_init=2.0)
    with torch.no_grad():
        layer.weight.mul_(3)
    model = nn.Sequential(layer).eval()
    bound = designed_bound(model, (4,))
    worst = _max_jacobian_norm(model.double(), (4,), seed=0)
    assert bound.value == pytest.approx(2.0**0.5, rel=1e-5)
    assert 0.9 * bound.value <= worst <= bound.value


def test_unknown_module_is_refused():
    with pytest.raises(TypeError, match="ReLU"):
        designed_bound(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), (3,))
