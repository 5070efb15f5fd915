"""Proposition 2 layers: the LMI holds and the explicit Jacobian norm never exceeds √ρ.

Oracles are independent of the layer code: the LMI is checked on W as an explicit matrix (for
convolutions, the zero-padded operator applied to every basis image) with a dense eigenvalue
decomposition, and Jacobians come from ``torch.autograd.functional.jacobian`` of a function
written here from the layer's stored numbers (s, t, W, b), with norms by SVD.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from liplt_cli.errors import ArgumentError
from liplt_cli.graph.slopes import make_activation
from liplt_cli.train.lipschitz_layers import T_CHOICES, Prop2Conv, Prop2Dense

ACTS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "softplus")
SMOOTH = {"tanh", "sigmoid", "softplus", "elu"}
TOL = 1e-9  # relative: float64 round-off of the Jacobian and its SVD


def _layer(kind: str, t_choice: str, act: str, seed: int, rho: float | None = None):
    g = torch.Generator().manual_seed(seed)
    rho_init = float(torch.empty(()).uniform_(0.3, 3.0, generator=g))
    if kind == "dense":
        features, hidden = 5, int(torch.randint(3, 9, (), generator=g))
        layer = Prop2Dense(features, hidden, activation=act, t_choice=t_choice, rho=rho, rho_init=rho_init)
    else:
        k = 3 if seed % 2 == 0 else 5
        layer = Prop2Conv(2, (4, 4), hidden=3, kernel=k, activation=act, t_choice=t_choice, rho=rho, rho_init=rho_init)
    layer = layer.double()
    with torch.no_grad():
        scale = float(torch.empty(()).uniform_(0.2, 4.0, generator=g))
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64) * scale)
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
        if seed % 3 == 0:
            layer.weight[0].zero_()  # a zero row/filter: D must stay positive
        if layer.log_q is not None:
            layer.log_q.copy_(torch.randn(layer.log_q.shape, generator=g, dtype=torch.float64) * 1.5)
    layer.eval().refresh()
    return layer


def _explicit_w(layer) -> torch.Tensor:
    """W as an explicit (outputs × inputs) float64 matrix."""
    if isinstance(layer, Prop2Dense):
        return layer.weight.detach().clone()
    c, (h, w) = layer.in_channels, layer.spatial
    basis = torch.eye(c * h * w, dtype=torch.float64).reshape(-1, c, h, w)
    cols = F.conv2d(basis, layer.weight.detach(), padding=layer.padding)
    return cols.reshape(c * h * w, -1).T


def _d_eff(layer, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """2ρ/(α+β)² · T⁻¹ for the stored scales: T = −√ρ t/(α+β), so it is −2√ρ/((α+β) t)."""
    d = -2.0 * s.double() / ((layer.alpha + layer.beta) * t.double().reshape(-1))
    if isinstance(layer, Prop2Conv):
        d = d.repeat_interleave(layer.spatial[0] * layer.spatial[1])
    return d


def _lmi_margin(layer, s, t) -> float:
    """Smallest eigenvalue of 2ρ/(α+β)² T⁻¹ − W Wᵀ, relative to the largest entry of the diagonal."""
    w = _explicit_w(layer)
    d = _d_eff(layer, s, t)
    gap = torch.diag(d) - w @ w.T
    return float(torch.linalg.eigvalsh(gap)[0]) / float(d.max())


def _oracle(layer, s, t):
    """h(x) = s x + Wᵀ diag(t) φ(W x + b) on flattened inputs, written from the stored numbers
    with W as an explicit matrix (for a convolution: the zero-padded operator, t and b repeated
    over positions)."""
    phi = make_activation(layer.activation_name)
    w = _explicit_w(layer)
    b, t = layer.bias.detach(), t.detach().reshape(-1)
    if isinstance(layer, Prop2Conv):
        positions = layer.spatial[0] * layer.spatial[1]
        b, t = b.repeat_interleave(positions), t.repeat_interleave(positions)
    return lambda x: s * x + (t * phi(w @ x + b)) @ w


def _input_shape(layer) -> tuple[int, ...]:
    if isinstance(layer, Prop2Dense):
        return (layer.features,)
    return (layer.in_channels * layer.spatial[0] * layer.spatial[1],)


def _jac(fn, x: torch.Tensor) -> torch.Tensor:
    jac = torch.autograd.functional.jacobian(fn, x)
    return jac.reshape(x.numel(), x.numel())


def _max_jacobian_norm(fn, shape, seed: int, points: int, ascent: bool) -> float:
    """Largest ‖J(x)‖₂ (SVD) over random points at three scales, and along a short gradient
    ascent on ‖J(x) v‖ (v the current top right singular vector) from two random starts."""
    g = torch.Generator().manual_seed(seed)
    best = 0.0
    for i in range(points):
        x = torch.randn(shape, generator=g, dtype=torch.float64) * (0.3, 1.0, 3.0)[i % 3]
        best = max(best, float(torch.linalg.matrix_norm(_jac(fn, x), ord=2)))
    if ascent:
        for _ in range(2):
            x = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=0.1)
            for _ in range(20):
                jac = _jac(fn, x.detach())
                best = max(best, float(torch.linalg.matrix_norm(jac, ord=2)))
                v = torch.linalg.eigh(jac.T @ jac)[1][:, -1].reshape(shape)
                _, jv = torch.autograd.functional.jvp(fn, x, v, create_graph=True)
                opt.zero_grad()
                (-torch.linalg.vector_norm(jv)).backward()
                opt.step()
    return best


# every T choice and kind with a piecewise-linear and a smooth activation by default; all
# activations in the slow run
CASES = [
    pytest.param(kind, t, act, marks=() if act in ("relu", "tanh") else pytest.mark.slow)
    for kind in ("dense", "conv") for t in T_CHOICES for act in ACTS
]


@pytest.mark.parametrize("kind,t_choice,act", CASES)
def test_lmi_holds_and_jacobian_never_exceeds_sqrt_rho(kind, t_choice, act):
    worst = 0.0
    for seed in range(3):
        layer = _layer(kind, t_choice, act, seed)
        s, t = layer.identity_scale.clone(), layer.t_scale.clone()
        assert float(s) == pytest.approx(math.sqrt(float(layer.rho.detach())), rel=1e-12)
        assert _lmi_margin(layer, s, t) >= -1e-6
        fn = _oracle(layer, s, t)
        shape = _input_shape(layer)
        x = torch.randn((3, *shape), dtype=torch.float64)
        with torch.no_grad():  # the layer computes the oracle's function
            got = layer(x.reshape(3, *layer.weight.shape[1:2], *getattr(layer, "spatial", ()))).reshape(3, -1)
            assert torch.allclose(got, torch.stack([fn(v) for v in x]), atol=1e-12, rtol=1e-12)
        points = 24
        ratio = _max_jacobian_norm(fn, shape, seed, points, ascent=act in SMOOTH and seed == 0) / float(s)
        worst = max(worst, ratio)
    assert worst <= 1 + TOL
    assert worst > 0.5  # the points explore: the constant is approached, not trivially small


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("t_choice", ["aol", "sll"])
def test_training_scales_satisfy_the_lmi_too(kind, t_choice):
    """AOL/SLL need no norm estimate, so the training-mode layer is certified as well (float64)."""
    for seed in range(3):
        layer = _layer(kind, t_choice, "relu", seed).train()
        s, t = layer.training_scales()
        assert _lmi_margin(layer, s.detach(), t.detach()) >= -1e-6


def test_sn_training_uses_a_power_iteration_estimate_below_the_certified_norm():
    torch.manual_seed(0)  # the power-iteration start vector
    layer = _layer("dense", "sn", "relu", 1).train()
    exact = float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
    for _ in range(300):
        estimate = float(layer._estimated_norm())
    assert estimate <= exact * (1 + 1e-12) and estimate == pytest.approx(exact, rel=1e-6)
    layer.eval()
    d_eval = float(_d_eff(layer, layer.identity_scale, layer.t_scale)[0])
    assert d_eval >= exact**2  # the eval-mode T uses an upper bound


def test_negative_control_a_too_large_t_breaks_both_checks():
    """The oracles can fail: with t three times larger than the LMI allows, both checks break."""
    for kind in ("dense", "conv"):
        layer = _layer(kind, "aol", "relu", 1)
        s, t = layer.identity_scale.clone(), layer.t_scale.clone()
        w, d = _explicit_w(layer), _d_eff(layer, s, t)
        tight = float(torch.linalg.eigvalsh(w @ w.T / torch.sqrt(d[:, None] * d[None, :]))[-1])  # ≤ 1
        t = t * (3 / tight)
        assert _lmi_margin(layer, s, t) < -1e-3
        ratio = _max_jacobian_norm(_oracle(layer, s, t), _input_shape(layer), 0, 24, ascent=False) / float(s)
        assert ratio > 1.01


def test_transposed_convolution_is_the_exact_adjoint():
    layer = _layer("conv", "aol", "relu", 2)
    w = _explicit_w(layer)
    basis = torch.eye(w.shape[0], dtype=torch.float64).reshape(-1, layer.channels, *layer.spatial)
    wt = layer.apply_wt(basis).reshape(w.shape[0], -1)  # rows: Wᵀ e_i
    assert torch.allclose(wt, w, atol=1e-12)


def test_eval_scales_follow_parameter_updates():
    layer = _layer("dense", "sll", "tanh", 0)
    before = layer.t_scale.clone()
    with torch.no_grad():
        layer.weight.mul_(2.0)
    layer(torch.zeros(1, layer.features, dtype=torch.float64))
    assert not torch.equal(before, layer.t_scale)
    assert _lmi_margin(layer, layer.identity_scale, layer.t_scale) >= -1e-6


def test_certified_scale_is_rounded_safely_in_float32():
    """Float32 layers: the stored t is rounded towards zero, so the LMI holds for the stored numbers."""
    for t_choice in T_CHOICES:
        layer = _layer("conv", t_choice, "relu", 0).float()
        layer.refresh()
        s, t = layer.identity_scale, layer.t_scale
        w = _explicit_w(layer.double())  # exact copy of the float32 weights
        d = _d_eff(layer, s, t)
        assert float(torch.linalg.eigvalsh(torch.diag(d) - w @ w.T)[0]) >= -1e-6 * float(d.max())


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_non_monotone_activation_is_refused(act):
    with pytest.raises(ArgumentError, match="monotone"):
        Prop2Dense(4, activation=act)


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="T choice"):
        Prop2Dense(4, t_choice="lip")
    with pytest.raises(ArgumentError, match="odd kernel"):
        Prop2Conv(2, (4, 4), kernel=4)
    with pytest.raises(ArgumentError, match="positive"):
        Prop2Dense(4, rho=-1.0)


def test_fixed_and_learned_rho():
    fixed = Prop2Dense(4, rho=2.0)
    learned = Prop2Dense(4, rho_init=2.0)
    assert "log_rho" in dict(fixed.named_buffers()) and "log_rho" not in dict(fixed.named_parameters())
    assert "log_rho" in dict(learned.named_parameters())
    assert float(fixed.rho) == pytest.approx(2.0) and float(learned.rho.detach()) == pytest.approx(2.0)
    assert fixed.certified_scale == pytest.approx(math.sqrt(2.0), rel=1e-6)
