"""Local LipLT (issue 12): the per-neuron engine against dense oracles, and soundness on balls.

* constant (global) slopes reproduce the global engine's numbers;
* random per-neuron slopes: the engine against the dense oracle (explicit Jacobians with
  diagonal slope matrices) on MLPs, conv nets, residual nets, MaxPool, in ℓ2 / ℓ∞ / ℓ1;
* on balls: sampled pre-activations lie in the proven boxes; the local constants are ≥ every
  Jacobian norm found by sampling and ascent inside the ball; local ≤ global;
* local radii: no PGD / random / boundary-directed perturbation below 0.99·r breaks a certified
  point, while the same checks do break points certified with deliberately shrunk constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liplt_cli.certify.attack import AttackSettings, pgd
from liplt_cli.graph.evaluate import Evaluation
from liplt_cli.graph.slopes import slope_range
from liplt_cli.lipschitz import EngineOptions, compute_bounds
from liplt_cli.local import Ball, LocalOptions, analyse_ball, local_bounds, local_radii, margin_bounds
from liplt_cli.local.relaxation import relax
from tests.local_oracle import dense_local, drive_engine
from tests.oracle import convnet, mlp, residual_mlp, residual_net

INF = math.inf
NORMS = [2.0, INF, 1.0]
NETS = {
    "mlp-relu": lambda: mlp([5, 7, 6, 3]),
    "mlp-tanh": lambda: mlp([5, 7, 6, 3], "tanh", seed=1),
    "mlp-gelu": lambda: mlp([5, 8, 3], "gelu", seed=2),
    "mlp-leaky": lambda: mlp([5, 8, 3], "leaky_relu", seed=3, negative_slope=0.1),
    "conv-relu": lambda: convnet(size=5),
    "conv-pool": lambda: convnet(size=5, pool=True),
    "residual-conv": lambda: residual_net(),
    "residual-mlp-silu": lambda: residual_mlp("silu"),
}


def _cases(nets, norms, fast):
    """(net, p) parameters; those not in ``fast`` are marked slow (the default suite keeps a spread)."""
    out = []
    for net in nets:
        for p in norms:
            ident = f"{net}-{'l2' if p == 2 else ('linf' if math.isinf(p) else 'l1')}"
            marks = () if (net, p) in fast else (pytest.mark.slow,)
            out.append(pytest.param(net, p, id=ident, marks=marks))
    return out


def _global_slopes(graph, samples=1):
    return {n.name: (torch.full((samples, *n.out_shape), n.activation.alpha, dtype=torch.float64),
                     torch.full((samples, *n.out_shape), n.activation.beta, dtype=torch.float64))
            for n in graph.nodes if n.kind == "activation"}


def _random_slopes(graph, seed):
    """Per-neuron slope ranges of each activation on random intervals (some stable, some not)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n in graph.nodes:
        if n.kind != "activation":
            continue
        centre = torch.randn(n.out_shape, generator=gen, dtype=torch.float64)
        width = torch.rand(n.out_shape, generator=gen, dtype=torch.float64) * 1.5
        out[n.name] = slope_range(n.activation, centre - width, centre + width)
    return out


def _close(a, b, rtol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert np.allclose(a, b, rtol=rtol, atol=1e-12), (a, b)


# ----------------------------------------------------------------------------- engine vs oracles
@pytest.mark.parametrize("p", NORMS, ids=["l2", "linf", "l1"])
@pytest.mark.parametrize("net", ["mlp-relu", "conv-relu", "residual-conv", "residual-mlp-silu"])
def test_constant_slopes_reproduce_the_global_engine(net, p):
    graph = NETS[net]()
    local = drive_engine(graph, p, _global_slopes(graph), 1)
    ref = compute_bounds(graph, EngineOptions(norm=p), methods=("liplt",)).methods["liplt"]
    # same maps, same norm routines, same order: equal up to the last bits of the pairwise sums
    _close(float(local.global_[0]), ref.global_, 1e-13)
    _close(local.per_class[0].numpy(), ref.per_class, 1e-13)
    _close(local.pairwise[0].numpy(), ref.pairwise, 1e-13)


def test_constant_slopes_bit_for_bit_where_the_code_paths_coincide():
    graph = NETS["mlp-relu"]()
    for p in (2.0, INF):
        local = drive_engine(graph, p, _global_slopes(graph), 1)
        ref = compute_bounds(graph, EngineOptions(norm=p), methods=("liplt",)).methods["liplt"]
        assert float(local.global_[0]) == ref.global_
    local = drive_engine(graph, INF, _global_slopes(graph), 1)
    ref = compute_bounds(graph, EngineOptions(norm=INF), methods=("liplt",)).methods["liplt"]
    assert local.pairwise[0].tolist() == ref.pairwise


@pytest.mark.parametrize("net, p", _cases(list(NETS), NORMS, fast={
    (n, p) for n in NETS for p in NORMS if not n.startswith(("conv", "residual-conv"))} | {
    ("conv-relu", 2.0), ("conv-pool", 2.0), ("conv-pool", 1.0), ("residual-conv", 2.0)}))
def test_per_neuron_slopes_match_the_dense_oracle(net, p):
    graph = NETS[net]()
    slopes = _random_slopes(graph, seed=7)
    batched = {k: (a[None], b[None]) for k, (a, b) in slopes.items()}
    local = drive_engine(graph, p, batched, 1)
    oracle = dense_local(graph, p, {k: a for k, (a, _) in slopes.items()}, {k: b for k, (_, b) in slopes.items()})
    rtol = 5e-6  # local ≥ oracle by the certified-eigenvalue margin (1e-6 relative) and SAFETY (1e-7)
    assert float(local.global_[0]) >= oracle["global"]
    _close(float(local.global_[0]), oracle["global"], rtol)
    _close(local.per_class[0].numpy(), oracle["per_class"], rtol)
    _close(local.pairwise[0].numpy(), oracle["pairwise"], rtol)


def test_samples_are_independent_in_a_batch():
    graph = NETS["conv-relu"]()
    a, b = _random_slopes(graph, 1), _random_slopes(graph, 2)
    both = {k: (torch.stack([a[k][0], b[k][0]]), torch.stack([a[k][1], b[k][1]])) for k in a}
    for p in (2.0, INF):
        batch = drive_engine(graph, p, both, 2)
        for s, one in enumerate((a, b)):
            single = drive_engine(graph, p, {k: (v[0][None], v[1][None]) for k, v in one.items()}, 1)
            _close(batch.pairwise[s].numpy(), single.pairwise[0].numpy(), 1e-9)
            _close(float(batch.global_[s]), float(single.global_[0]), 1e-9)


# ----------------------------------------------------------------------------- soundness on balls
class _Values(Evaluation):
    def __init__(self, graph, x):
        super().__init__(graph, x)
        self.values = {}

    def emit(self, pos, node, value):
        self.values[node.name] = value
        return value


def _in_ball(x, eps, p, count, gen, domain=None):
    """Random points of the ball around each sample (on the sphere and inside), clipped to the domain
    and pulled back into the ball."""
    from liplt_cli.certify.attack import project_ball

    s = x.shape[0]
    d = torch.randn((count, *x.shape), generator=gen, dtype=torch.float64)
    if math.isinf(p):
        d = torch.sign(d) * (torch.rand(d.shape, generator=gen, dtype=torch.float64) > 0.3)
    elif p == 1:
        d = d * (torch.rand(d.shape, generator=gen, dtype=torch.float64) > 0.8)
    flat = d.reshape(count * s, -1)
    scale = torch.rand(count * s, generator=gen, dtype=torch.float64) ** 0.3
    norms = torch.linalg.vector_norm(flat, ord=p, dim=1).clamp_min(1e-12)
    e = eps.repeat(count)
    delta = (flat * (e * scale / norms)[:, None]).reshape(count * s, *x.shape[1:])
    xs = x.repeat(count, *([1] * (x.dim() - 1)))
    pts = xs + delta
    if domain is not None:
        pts = pts.clamp(*domain)
        pts = xs + project_ball(pts - xs, e, p)
    return pts, torch.arange(s).repeat(count)


def _logit_jacobians(graph, pts):
    def f(v):
        return graph.evaluate(v).reshape(v.shape[0], -1).sum(0)
    jac = torch.autograd.functional.jacobian(f, pts, vectorize=True)  # (K, N, *in)
    return jac.reshape(jac.shape[0], pts.shape[0], -1).transpose(0, 1)  # (N, K, d)


def _opnorms(j, p):
    if p == 2:
        return torch.linalg.matrix_norm(j, ord=2)
    if math.isinf(p):
        return j.abs().sum(dim=2).max(dim=1).values
    return j.abs().sum(dim=1).max(dim=1).values


def _dual(p):
    return 2.0 if p == 2 else (1.0 if math.isinf(p) else INF)


@pytest.mark.parametrize("p", NORMS, ids=["l2", "linf", "l1"])
@pytest.mark.parametrize("net", ["mlp-relu", "mlp-tanh", "mlp-gelu", "conv-pool", "residual-conv", "residual-mlp-silu"])
@pytest.mark.parametrize("domain", [None, (0.0, 1.0)], ids=["free", "domain"])
def test_ball_boxes_and_constants_hold_on_sampled_points(net, p, domain):
    graph = NETS[net]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand((3, *graph.input_shape), generator=gen, dtype=torch.float64)
    eps = torch.tensor([0.05, 0.2, 0.6], dtype=torch.float64) * (1.0 if p == 2 else (0.3 if math.isinf(p) else 2.0))
    analysis = analyse_ball(graph, Ball(x, eps, p, domain))
    local = analysis.output_constants()
    pts, owner = _in_ball(x, eps, p, 40, gen, domain)
    values = _Values(graph, pts).run().values
    for name, (lo, hi) in analysis.boxes.items():
        pre = values[graph.node(name).inputs[0]]
        assert bool((pre >= lo[owner]).all() & (pre <= hi[owner]).all()), name
    jac = _logit_jacobians(graph, pts.clone())
    q = _dual(p)
    slack = 1 + 1e-9
    assert bool((_opnorms(jac, p) <= local.global_[owner] * slack).all())
    assert bool((torch.linalg.vector_norm(jac, ord=q, dim=2) <= local.per_class[owner] * slack).all())
    diff = jac[:, :, None, :] - jac[:, None, :, :]
    assert bool((torch.linalg.vector_norm(diff, ord=q, dim=3) <= local.pairwise[owner] * slack + 1e-12).all())


@pytest.mark.parametrize("net", ["mlp-tanh", "residual-mlp-silu"])
def test_local_constants_hold_against_gradient_ascent_inside_the_ball(net):
    """Projected ascent on ‖∇(z_i − z_j)‖₂ from random starts stays below the local pairwise constant."""
    from liplt_cli.certify.attack import project_ball

    graph = NETS[net]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand((2, *graph.input_shape), generator=gen, dtype=torch.float64)
    eps = torch.tensor([0.3, 1.0], dtype=torch.float64)
    local = analyse_ball(graph, Ball(x, eps, 2.0)).output_constants()
    k = graph.num_classes
    pts, owner = _in_ball(x, eps, 2.0, 8, gen)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            v = pts.clone()
            best = torch.zeros(v.shape[0], dtype=torch.float64)
            for _ in range(15):
                v = v.detach().requires_grad_(True)
                z = graph.evaluate(v).reshape(v.shape[0], -1)
                (g,) = torch.autograd.grad((z[:, i] - z[:, j]).sum(), v, create_graph=True)
                norm = g.reshape(g.shape[0], -1).norm(dim=1)
                best = torch.maximum(best, norm.detach())
                (h,) = torch.autograd.grad(norm.sum(), v)
                with torch.no_grad():
                    step = h / h.reshape(h.shape[0], -1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (h.dim() - 1)))
                    v = x[owner] + project_ball(v + 0.1 * eps[owner].reshape(-1, 1) * step - x[owner], eps[owner], 2.0)
            assert bool((best <= local.pairwise[owner, i, j] * (1 + 1e-9)).all())


@pytest.mark.parametrize("net", ["mlp-relu", "conv-relu", "residual-conv"])
def test_local_constants_are_at_most_the_global_ones_and_sound(net):
    graph = NETS[net]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    x = torch.rand((4, *graph.input_shape), generator=gen, dtype=torch.float64)
    ref = compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",)).methods["liplt"]
    glob = torch.tensor(ref.pairwise, dtype=torch.float64)
    for eps in (0.01, 1.0):
        res = local_bounds(graph, x, eps, 2.0, global_reference=ref)
        assert res.guarantee.sound
        assert bool((res.pairwise <= glob).all())
        assert bool((res.global_ <= ref.global_).all())
        assert bool((res.per_class <= torch.tensor(ref.per_class, dtype=torch.float64)).all())
        jac = _logit_jacobians(graph, x.clone())  # the centre is in every ball
        diff = jac[:, :, None, :] - jac[:, None, :, :]
        assert bool((diff.norm(dim=3) <= res.pairwise * (1 + 1e-9) + 1e-12).all())
    small = local_bounds(graph, x, 1e-4, 2.0, global_reference=ref)
    assert float(small.pairwise_mean().mean()) < ref.pairwise_mean  # tiny balls: strictly tighter


# ----------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu", "softplus"])
def test_relaxation_lines_hold_on_the_interval(kind):
    from liplt_cli.graph import make_activation

    act = make_activation(kind)
    gen = torch.Generator().manual_seed(0)
    lo = torch.randn(200, generator=gen, dtype=torch.float64) * 2
    hi = lo + torch.rand(200, generator=gen, dtype=torch.float64) * 3
    y_x = lo + (hi - lo) * torch.rand(200, generator=gen, dtype=torch.float64)
    r = relax(act, lo, hi, y_x, act(y_x), slope_range(act, lo, hi))
    t = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
    y = lo + (hi - lo) * t
    change = act(y) - act(y_x)
    assert bool((change >= r.lower_slope * (y - y_x) + r.lower_offset - 1e-12).all())
    assert bool((change <= r.upper_slope * (y - y_x) + r.upper_offset + 1e-12).all())


@pytest.mark.parametrize("p", NORMS, ids=["l2", "linf", "l1"])
@pytest.mark.parametrize("domain", [None, (0.0, 1.0)], ids=["free", "domain"])
def test_min_linear_is_a_lower_bound_on_the_region(p, domain):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((3, 6), generator=gen, dtype=torch.float64)
    x[0, :3] = 0.0  # on the domain's edge
    eps = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    ball = Ball(x, eps, p, domain)
    rows = torch.randn((12, 6), generator=gen, dtype=torch.float64)
    owner = torch.arange(3).repeat(4)
    bound = ball.min_linear(rows, owner)
    pts, which = _in_ball(x, eps, p, 300, gen, domain)
    for r in range(12):
        mine = which == owner[r]
        values = (pts[mine] - x[owner[r]]) @ rows[r]
        assert float(values.min()) >= float(bound[r]) - 1e-12
    if p == 2 and domain is None:  # Hölder is exact without a domain
        _close(bound.numpy(), (-eps[owner] * rows.norm(dim=1)).numpy(), 1e-12)


def test_min_linear_on_sparse_rows_equals_the_dense_computation():
    gen = torch.Generator().manual_seed(6)
    x = torch.rand((2, 40), generator=gen, dtype=torch.float64)
    ball = Ball(x, torch.tensor([0.3, 1.0], dtype=torch.float64), 2.0, (0.0, 1.0))
    rows = torch.randn((10, 40), generator=gen, dtype=torch.float64)
    rows[torch.rand((10, 40), generator=gen) > 0.15] = 0.0  # a few non-zeros per row, like a conv's receptive field
    owner = torch.arange(2).repeat(5)
    sparse, dense = ball.min_linear(rows, owner), ball.min_linear(rows, owner, compress=False)
    _close(sparse.numpy(), dense.numpy(), 1e-6)  # the dual's multiplier is chosen in float32: sums in another order
    pts, which = _in_ball(x, ball.radius, 2.0, 300, gen, (0.0, 1.0))
    for r in range(10):
        values = (pts[which == owner[r]] - x[owner[r]]) @ rows[r]
        assert float(values.min()) >= float(sparse[r]) - 1e-12


# ----------------------------------------------------------------------------- radii vs attacks
def _attack_checks(graph, x, y, radius, p):
    """Largest number of points broken below ``radius`` by PGD, random points and the
    boundary-directed step of each margin (linearised distance along −∇margin)."""
    gen = torch.Generator().manual_seed(9)
    broken = torch.zeros(x.shape[0], dtype=torch.bool)
    live = radius > 0
    if not bool(live.any()):
        return broken
    r = radius.clamp_max(1e6)
    ok, _ = pgd(graph, x, y, r, p, AttackSettings(steps=40, restarts=2, box=None))
    broken |= ok & live
    pts, owner = _in_ball(x, r, p, 30, gen)
    wrong = graph.evaluate(pts).reshape(pts.shape[0], -1).argmax(1) != y[owner]
    broken.index_put_((owner[wrong],), torch.ones(int(wrong.sum()), dtype=torch.bool), accumulate=False)
    v = x.clone().requires_grad_(True)
    z = graph.evaluate(v).reshape(x.shape[0], -1)
    for i in range(z.shape[1]):
        (g,) = torch.autograd.grad((z.gather(1, y[:, None])[:, 0] - z[:, i]).sum(), v, retain_graph=True)
        flat = g.reshape(g.shape[0], -1)
        if p == 2:
            d = -flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
        elif math.isinf(p):
            d = -torch.sign(flat)
        else:
            d = torch.zeros_like(flat).scatter_(1, flat.abs().argmax(1, keepdim=True), 1.0) * -torch.sign(flat)
        step = (d * r[:, None]).reshape(x.shape)
        with torch.no_grad():
            out = graph.evaluate(x + step).reshape(x.shape[0], -1).argmax(1)
        broken |= (out != y) & live
    return broken


@pytest.mark.parametrize("net, p", _cases(["mlp-relu", "mlp-tanh", "conv-pool", "residual-conv"], NORMS, fast={
    ("mlp-relu", 2.0), ("mlp-tanh", INF), ("mlp-tanh", 1.0)}))
def test_no_attack_breaks_a_locally_certified_point(net, p):
    graph = NETS[net]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand((6, *graph.input_shape), generator=gen, dtype=torch.float64)
    y = graph.evaluate(x).reshape(6, -1).argmax(1)
    glob = torch.tensor(compute_bounds(graph, EngineOptions(norm=p), methods=("liplt",)).methods["liplt"].pairwise)
    res = local_radii(graph, x, y, p, glob, tolerance=0.02)
    assert bool((res.radius >= res.global_radius).all())
    assert bool((res.radius > 0).all())
    assert not bool(_attack_checks(graph, x, y, 0.99 * res.radius, p).any())


def test_the_checks_do_break_points_certified_with_shrunk_constants():
    graph = NETS["mlp-relu"]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand((6, *graph.input_shape), generator=gen, dtype=torch.float64)
    y = graph.evaluate(x).reshape(6, -1).argmax(1)
    glob = torch.tensor(compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",)).methods["liplt"].pairwise)
    shrunk = local_radii(graph, x, y, 2.0, glob * 0.02, options=LocalOptions(relaxations=False, lipschitz=False))
    assert bool(_attack_checks(graph, x, y, 0.99 * shrunk.radius, 2.0).any())


def test_margin_bounds_never_certify_a_point_with_a_counterexample_in_the_ball():
    graph = NETS["conv-relu"]().to(dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand((8, *graph.input_shape), generator=gen, dtype=torch.float64)
    y = graph.evaluate(x).reshape(8, -1).argmax(1)
    glob = torch.tensor(compute_bounds(graph, EngineOptions(norm=2.0), methods=("liplt",)).methods["liplt"].pairwise)
    eps = torch.full((8,), 0.3, dtype=torch.float64)
    bounds = margin_bounds(graph, Ball(x, eps, 2.0, (0.0, 1.0)), y, glob)
    ok, _ = pgd(graph, x, y, eps, 2.0, AttackSettings(steps=40, restarts=2))
    assert not bool((bounds.verified & ok).any())
    z = graph.evaluate(x).reshape(8, -1)
    margin = z.gather(1, y[:, None]) - z
    finite = torch.isfinite(bounds.best)  # +inf on the predicted class itself
    assert bool((bounds.best[finite] <= margin[finite] + 1e-9).all())
