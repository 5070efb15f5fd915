"""Slope bounds of activations: global [α, β] proven, not sampled; slope_range over intervals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from liplt_cli.graph import interval as iv
from liplt_cli.graph.interval import Interval, Jet
from liplt_cli.graph.slopes import SUPPORTED_ACTIVATIONS, make_activation, slope_range, smooth_profile

ALL = [
    ("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("leaky_relu", {"negative_slope": 1.7}),
    ("leaky_relu", {"negative_slope": -0.3}), ("tanh", {}), ("sigmoid", {}), ("elu", {"alpha": 1.0}),
    ("elu", {"alpha": 0.5}), ("elu", {"alpha": 2.5}), ("softplus", {"beta": 1.0}), ("softplus", {"beta": 3.0}),
    ("softplus", {"beta": 0.25}), ("clip", {"min": -2.0, "max": 3.0}), ("relu6", {}), ("hardtanh", {}),
    ("clip", {"min": -math.inf, "max": 1.5}), ("hardsigmoid", {}), ("hardswish", {}),
    ("hardsigmoid", {"alpha": 0.1666666716337204, "beta": 0.5}), ("hardswish", {"alpha": 0.1666666716337204, "beta": 0.5}),
    ("hardswish", {"alpha": 0.3, "beta": 0.2}), ("silu", {}), ("gelu", {}),
    ("gelu_tanh", {}), ("mish", {}), ("identity", {}),
]
IDS = [k + "".join(f"-{v:.4g}" for v in p.values()) for k, p in ALL]


def _derivative(act, x):
    x = x.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(act(x).sum(), x)
    return d


def _math_fn(act):
    """The mathematical function where torch's implementation differs from it: Softplus without
    torch's threshold (whose switch at βx = 20 jumps by 2e-9), HardSigmoid whose float64 backward
    uses the float32 constant 1/6 (its forward is exact)."""
    if act.key == "softplus":
        beta = dict(act.params).get("beta", 1.0)
        return lambda x: torch.logaddexp(beta * x, torch.zeros_like(x)) / beta
    if act.key == "hardsigmoid":
        p = dict(act.params)
        if not p:
            return lambda x: torch.clamp(x / 6 + 0.5, 0, 1)
        return lambda x: torch.clamp(p["alpha"] * x + p["beta"], 0, 1)
    return act


# ---------------------------------------------------------------------- closed forms and known extrema
def test_gelu_extrema_are_at_plus_minus_sqrt2():
    """GELU'' = φ(x)(2 − x²): GELU' has its extrema at ±√2; the proven bounds contain them tightly."""
    act = make_activation("gelu")
    x = torch.tensor([-math.sqrt(2), math.sqrt(2)], dtype=torch.float64)
    d = _derivative(act, x)
    assert act.alpha <= float(d[0]) <= act.alpha + 1e-9
    assert act.beta - 1e-9 <= float(d[1]) <= act.beta
    prof = smooth_profile("gelu")
    assert len(prof.critical) == 2
    for (lo, hi, _, _), c in zip(prof.critical, (-math.sqrt(2), math.sqrt(2))):
        assert lo <= c <= hi and hi - lo < 4e-6  # a run of critical cells of width 2⁻²⁰


def test_silu_extrema_solve_x_tanh_half_x_equals_2():
    prof = smooth_profile("silu")
    roots = [(lo + hi) / 2 for lo, hi, _, _ in prof.critical]
    assert len(roots) == 2 and roots[0] == pytest.approx(-roots[1], abs=1e-8)
    assert roots[1] * math.tanh(roots[1] / 2) == pytest.approx(2.0, abs=1e-7)
    act = make_activation("silu")
    # φ'(x) + φ'(−x) = 1 for SiLU (φ(x) − φ(−x) = x)
    assert act.alpha + act.beta == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("key", ["silu", "gelu", "gelu_tanh", "mish"])
def test_smooth_bounds_contain_and_are_tight_on_a_dense_float64_grid(key):
    act = make_activation(key)
    x = torch.linspace(-60, 60, 600_001, dtype=torch.float64)
    d = _derivative(act, x)
    assert act.alpha <= float(d.min()) and float(d.max()) <= act.beta
    # GELU-tanh's bounds hold for both constants anywhere within 2⁻²⁰ of nominal (the loader
    # accepts float32-rounded ones), which costs about 1e-6
    tol = 2e-6 if key == "gelu_tanh" else 1e-8
    assert float(d.min()) - act.alpha < tol and act.beta - float(d.max()) < tol


@pytest.mark.parametrize("key", ["silu", "gelu", "gelu_tanh", "mish"])
def test_tail_inequalities_hold(key):
    prof = smooth_profile(key)
    act = make_activation(key)
    for side, box in (("left", prof.left), ("right", prof.right)):
        r = prof.radius
        x = torch.linspace(r, 700.0, 200_001, dtype=torch.float64)
        x = -x if side == "left" else x
        d = _derivative(act, x)
        assert box.lo <= float(d.min()) and float(d.max()) <= box.hi, (side, box, float(d.min()), float(d.max()))


def test_interval_jets_enclose_autograd_derivatives():
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        a = float(torch.empty(()).uniform_(-25, 25, generator=gen))
        w = float(torch.empty(()).uniform_(0, 3, generator=gen))
        X = Interval(a, a + w)
        for jet, fn in ((lambda j: j * iv.j_sigmoid(j), F.silu), (lambda j: j * iv.j_tanh(iv.j_softplus(j)), F.mish)):
            J = jet(Jet.variable(X))
            t = torch.linspace(a, a + w, 101, dtype=torch.float64, requires_grad=True)
            (d1,) = torch.autograd.grad(fn(t).sum(), t, create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), t)
            v = fn(t.detach())
            tol = 1e-13  # autograd's own float64 error (it returns 0 for a φ'' of -3e-18 at x = 22)
            assert J.v.lo <= float(v.min()) + tol and float(v.max()) - tol <= J.v.hi
            assert J.d1.lo <= float(d1.min()) + tol and float(d1.max()) - tol <= J.d1.hi
            assert J.d2.lo <= float(d2.min()) + tol and float(d2.max()) - tol <= J.d2.hi


def test_invalid_parameters_are_refused():
    for name, params in (("softplus", {"beta": 0.0}), ("softplus", {"beta": -1.0}), ("softplus", {"beta": math.nan}),
                         ("elu", {"alpha": -1.0}), ("elu", {"alpha": math.nan}), ("leaky_relu", {"negative_slope": math.inf}),
                         ("clip", {"min": math.nan, "max": 1.0})):
        with pytest.raises(ValueError):
            make_activation(name, **params)


def test_every_supported_key_builds():
    for key in SUPPORTED_ACTIVATIONS:
        act = make_activation(key)
        assert act.alpha <= act.beta and math.isfinite(act.alpha) and math.isfinite(act.beta)


# ---------------------------------------------------------------------- slope_range
@pytest.mark.parametrize("key,params", ALL, ids=IDS)
def test_slope_range_of_the_whole_line_is_the_global_bound(key, params):
    act = make_activation(key, **params)
    lo, hi = slope_range(act, torch.tensor([-math.inf], dtype=torch.float64), torch.tensor([math.inf], dtype=torch.float64))
    assert (float(lo), float(hi)) == (act.alpha, act.beta)


def _random_intervals(gen, n, scale):
    centre = torch.randn(n, generator=gen, dtype=torch.float64) * scale
    width = torch.rand(n, generator=gen, dtype=torch.float64) ** 3 * scale * 2
    return centre - width / 2, centre + width / 2


@pytest.mark.parametrize("key,params", ALL, ids=IDS)
def test_slope_range_contains_every_sampled_derivative_and_chord(key, params):
    """Dense sampling inside random intervals never finds φ' or a chord slope outside the range."""
    act = make_activation(key, **params)
    fn = _math_fn(act)
    gen = torch.Generator().manual_seed(len(key) + len(params))
    n, k = 300, 400
    for scale in (0.5, 3.0, 12.0):
        l, u = _random_intervals(gen, n, scale)
        a, b = slope_range(act, l, u)
        t = torch.linspace(0, 1, k, dtype=torch.float64)
        x = l[:, None] + (u - l)[:, None] * t[None, :]
        d = _derivative(fn, x)
        assert bool((d >= a[:, None] - 1e-12).all()) and bool((d <= b[:, None] + 1e-12).all())
        y = fn(x)
        i, j = torch.randint(0, k, (2, n, 64), generator=gen)
        xa, xb = x.gather(1, i), x.gather(1, j)
        ya, yb = y.gather(1, i), y.gather(1, j)
        ok = (xa - xb).abs() > 1e-6 * (1 + xa.abs())
        chord = torch.where(ok, (ya - yb) / torch.where(ok, xa - xb, torch.ones_like(xa)), a[:, None])
        tol = 1e-9
        assert bool((chord >= a[:, None] - tol).all()) and bool((chord <= b[:, None] + tol).all())


@pytest.mark.parametrize("key,params", [p for p in ALL if p[0] not in ("relu", "leaky_relu", "identity")],
                         ids=[i for i, p in zip(IDS, ALL) if p[0] not in ("relu", "leaky_relu", "identity")])
def test_slope_range_is_tight_on_small_intervals(key, params):
    """For small intervals the range is within a small tolerance of the sampled extrema of φ'."""
    act = make_activation(key, **params)
    gen = torch.Generator().manual_seed(1)
    centre = torch.empty(500, dtype=torch.float64).uniform_(-8, 8, generator=gen)
    width = torch.rand(500, generator=gen, dtype=torch.float64) * 0.05
    l, u = centre - width, centre + width
    a, b = slope_range(act, l, u)
    x = l[:, None] + (u - l)[:, None] * torch.linspace(0, 1, 2001, dtype=torch.float64)[None, :]
    d = _derivative(_math_fn(act), x)
    # the grid step is 5e-5 and |φ''| ≤ 2.5 between kinks, so sampling misses extrema by ≤ 1.25e-4
    assert float((d.min(1).values - a).max()) < 2e-4
    assert float((b - d.max(1).values).max()) < 2e-4


def test_slope_range_piecewise_linear_exact_cases():
    relu = make_activation("relu")
    l = torch.tensor([0.0, -2.0, -1.0, -math.inf])
    u = torch.tensor([3.0, -0.5, 1.0, math.inf])
    a, b = slope_range(relu, l, u)
    assert a.tolist() == [1.0, 0.0, 0.0, 0.0] and b.tolist() == [1.0, 0.0, 1.0, 1.0]
    leaky = make_activation("leaky_relu", negative_slope=0.1)
    a, b = slope_range(leaky, l, u)
    assert a.tolist() == [1.0, pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1)]
    clip = make_activation("clip", min=0.0, max=6.0)
    a, b = slope_range(clip, torch.tensor([1.0, 7.0, -1.0]), torch.tensor([5.0, 9.0, 1.0]))
    assert a.tolist() == [1.0, 0.0, 0.0] and b.tolist() == [1.0, 0.0, 1.0]
    hs = make_activation("hardswish")
    a, b = slope_range(hs, torch.tensor([-5.0, 4.0, -1.0, -4.0]), torch.tensor([-4.0, 5.0, 1.0, 4.0]))
    assert a.tolist() == pytest.approx([0.0, 1.0, 1 / 6, -0.5]) and b.tolist() == pytest.approx([0.0, 1.0, 5 / 6, 1.5])


def test_slope_range_any_shape_dtype_and_outward_float32():
    act = make_activation("gelu")
    l = torch.full((2, 3, 4), -0.3)
    u = torch.full((2, 3, 4), 0.7)
    a, b = slope_range(act, l, u)
    assert a.shape == (2, 3, 4) and a.dtype == torch.float32
    a64, b64 = slope_range(act, l.double(), u.double())
    assert bool((a.double() <= a64).all()) and bool((b.double() >= b64).all())
    # NaN gives the global bounds; reversed ends are read as [min, max]
    a, b = slope_range(act, torch.tensor([math.nan, 0.7]), torch.tensor([0.0, -0.3]))
    assert float(a[0]) <= act.alpha and float(b[0]) >= act.beta
    assert float(a[1]) == pytest.approx(float(a64.flatten()[0])) and float(b[1]) == pytest.approx(float(b64.flatten()[0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_slope_range_on_cuda_matches_cpu():
    for key, params in ALL:
        act = make_activation(key, **params)
        gen = torch.Generator().manual_seed(0)
        l, u = _random_intervals(gen, 1000, 4.0)
        a, b = slope_range(act, l, u)
        ac, bc = slope_range(act, l.cuda(), u.cuda())
        assert ac.device.type == "cuda"
        torch.testing.assert_close(ac.cpu(), a, rtol=0, atol=1e-12)
        torch.testing.assert_close(bc.cpu(), b, rtol=0, atol=1e-12)
