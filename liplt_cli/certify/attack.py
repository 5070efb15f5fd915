r"""Projected gradient descent (PGD) attacks in ℓ2, ℓ∞ and ℓ1: an *upper* bound on robust accuracy.

For each sample, PGD maximises the margin loss (Carlini–Wagner)

.. math::

    \ell(x') = \max_{i \ne y} z_i(x') - z_y(x')

over x' = x + δ with ‖δ‖_p ≤ ε and x' in the data box [lo, hi] (default [0, 1]).  The attack
succeeds as soon as ℓ > 0 at any iterate (including the random start).

Schedule (Madry et al. 2018): ``restarts`` random starts, each drawn uniformly from the ε-ball
(ℓ∞: uniform in the cube; ℓ2/ℓ1: uniform radius law r = ε·u^{1/n} along a random direction),
then ``steps`` steps of size α = ``step_factor``·ε/``steps`` (default 2.5·ε/steps) along the
steepest-ascent direction of the norm — ℓ∞: sign(g); ℓ2: g/‖g‖₂; ℓ1: sign(g) on the coordinates
whose |g| is in the top ``l1_sparsity`` fraction, rescaled to unit ℓ1 norm — each step followed
by clipping to the box and then projection onto the ball (clipping then shrinking towards x
keeps both constraints, since x is in the box).  Batched; gradients w.r.t. the input only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

DEFAULT_STEPS = 20
DEFAULT_RESTARTS = 1
DEFAULT_STEP_FACTOR = 2.5
DEFAULT_L1_SPARSITY = 0.05


@dataclass(frozen=True)
class AttackSettings:
    """PGD settings (see the module docstring for the schedule)."""

    steps: int = DEFAULT_STEPS
    restarts: int = DEFAULT_RESTARTS
    step_factor: float = DEFAULT_STEP_FACTOR
    l1_sparsity: float = DEFAULT_L1_SPARSITY
    box: tuple[float, float] | None = (0.0, 1.0)
    seed: int = 0

    def describe(self) -> str:
        return (f"PGD, margin loss, {self.restarts} random start(s), {self.steps} steps of "
                f"{self.step_factor:g}·ε/{self.steps}, clipped to {list(self.box) if self.box else 'no box'}")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "restarts": self.restarts, "step_size": f"{self.step_factor:g}*eps/steps",
                "loss": "margin max_{i!=y} z_i - z_y", "box": list(self.box) if self.box else None, "seed": self.seed}


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def project_ball(delta: torch.Tensor, eps: torch.Tensor, p: float) -> torch.Tensor:
    """Euclidean projection of each δ_b onto {‖δ‖_p ≤ ε_b} (ℓ∞: clamp; ℓ2: rescale; ℓ1: Duchi et al. 2008)."""
    if math.isinf(p):
        e = _bshape(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)
    flat = _flat(delta)
    if p == 2:
        norms = flat.norm(dim=1).clamp_min(1e-30)
        return delta * _bshape(torch.clamp(eps / norms, max=1.0), delta)
    if p == 1:
        a = flat.abs()
        inside = a.sum(dim=1) <= eps
        s, _ = torch.sort(a, dim=1, descending=True)
        cs = s.cumsum(dim=1)
        k = torch.arange(1, s.shape[1] + 1, device=s.device, dtype=s.dtype)
        cond = s * k > (cs - eps[:, None])  # true on a prefix of the sorted magnitudes
        rho = cond.sum(dim=1).clamp_min(1) - 1
        theta = ((cs.gather(1, rho[:, None]).squeeze(1) - eps) / (rho + 1).to(s.dtype)).clamp_min(0)
        shrunk = torch.sign(flat) * (a - theta[:, None]).clamp_min(0)
        out = torch.where(inside[:, None], flat, shrunk)
        return out.reshape(delta.shape)
    raise ValueError(f"unsupported norm p={p}")


def random_start(x: torch.Tensor, eps: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """A random δ in the ε-ball (uniform in the cube for ℓ∞; uniform-volume radius otherwise)."""
    shape, n = x.shape, x[0].numel()
    if math.isinf(p):
        u = torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
        return u * _bshape(eps, x)
    if p == 2:
        d = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
        d = d / _bshape(_flat(d).norm(dim=1).clamp_min(1e-30), x)
    else:
        d = -torch.log(torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype).clamp_min(1e-12))
        d = d * torch.sign(torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) - 0.5)
        d = d / _bshape(_flat(d).abs().sum(dim=1).clamp_min(1e-30), x)
    r = torch.rand(shape[0], generator=gen, device=x.device, dtype=x.dtype) ** (1.0 / n)
    return d * _bshape(r * eps, x)


def ascent_direction(g: torch.Tensor, p: float, sparsity: float = DEFAULT_L1_SPARSITY) -> torch.Tensor:
    """The unit-norm (in ℓp) steepest-ascent direction for gradient ``g`` (see module docstring)."""
    if math.isinf(p):
        return torch.sign(g)
    flat = _flat(g)
    if p == 2:
        return g / _bshape(flat.norm(dim=1).clamp_min(1e-30), g)
    k = max(1, int(round(sparsity * flat.shape[1])))
    thresh = flat.abs().topk(k, dim=1).values[:, -1:]
    d = torch.sign(flat) * (flat.abs() >= thresh)
    d = d / d.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return d.reshape(g.shape)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{i≠y} z_i − z_y per sample (> 0 ⇔ misclassified)."""
    zy = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -math.inf).max(dim=1).values
    return other - zy


def pgd(graph, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, p: float,
        settings: AttackSettings = AttackSettings()) -> tuple[torch.Tensor, torch.Tensor]:
    """Attack one batch; returns ``(success (B,) bool, x_adv (B, …))``.

    ``eps`` is a number or a per-sample tensor; ``x_adv`` is the first adversarial iterate found
    (or the last iterate where none was) and always satisfies ‖x_adv − x‖_p ≤ ε and the box.
    """
    x = x.detach()
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone()
    gen = torch.Generator(device=x.device).manual_seed(settings.seed)
    evaluate = lambda v: graph.evaluate(v).reshape(v.shape[0], -1)  # noqa: E731
    with torch.no_grad():
        success = margin_loss(evaluate(x), y) > 0
    best = x.clone()
    alpha = settings.step_factor * eps_t / max(settings.steps, 1)

    def clip(v: torch.Tensor) -> torch.Tensor:
        return v if settings.box is None else v.clamp(settings.box[0], settings.box[1])

    for _ in range(max(1, settings.restarts)):
        if bool(success.all()):
            break
        delta = project_ball(clip(x + random_start(x, eps_t, p, gen)) - x, eps_t, p)
        for step in range(settings.steps + 1):
            delta = delta.detach().requires_grad_(True)
            loss = margin_loss(evaluate(x + delta), y)
            hit = (loss.detach() > 0) & ~success
            if bool(hit.any()):
                best[hit] = (x + delta.detach())[hit]
                success = success | hit
            if step == settings.steps or bool(success.all()):
                break
            (g,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = delta + _bshape(alpha, x) * ascent_direction(g, p, settings.l1_sparsity)
                delta = project_ball(clip(x + delta) - x, eps_t, p)
        not_found = ~success
        best[not_found] = (x + delta.detach())[not_found]
    return success, best


def robust_under_attack(graph, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], p: float,
                        settings: AttackSettings = AttackSettings(), batch_size: int = 256,
                        device: str | torch.device = "cpu", skip: torch.Tensor | None = None,
                        progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, float]:
    """Per-sample robustness flags under PGD at each ε: a bool tensor (len(eps), N) and seconds.

    A sample is robust at ε when it is correctly classified and PGD finds no adversarial
    example within ε.  ε values are processed in increasing order and a sample broken at a
    smaller ε is not attacked again (it is not robust at any larger ε).  ``skip`` (len(eps), N)
    marks samples known robust (e.g. certified with sound constants), which are not attacked.
    """
    start = time.perf_counter()
    n = x.shape[0]
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    robust = torch.zeros(len(eps), n, dtype=torch.bool)
    dtype = graph.dtype
    with torch.no_grad():
        correct = torch.cat([
            graph.evaluate(x[lo: lo + batch_size].to(device=device, dtype=dtype)).reshape(min(batch_size, n - lo), -1)
            .argmax(dim=1).cpu() == y[lo: lo + batch_size] for lo in range(0, n, batch_size)])
    alive = correct.clone()
    total = len(eps) * n
    done = 0
    for rank, i in enumerate(order):
        todo = alive.clone()
        if skip is not None:
            todo &= ~skip[i]
        idx = torch.nonzero(todo).flatten()
        broken = torch.zeros(n, dtype=torch.bool)
        if eps[i] > 0:
            for lo in range(0, idx.numel(), batch_size):
                b = idx[lo: lo + batch_size]
                ok, _ = pgd(graph, x[b].to(device=device, dtype=dtype), y[b].to(device), float(eps[i]), p,
                            AttackSettings(**{**settings.__dict__, "seed": settings.seed + 7919 * rank + lo}))
                broken[b] = ok.cpu()
                if progress is not None:
                    progress(done + min(lo + batch_size, idx.numel()) * n // max(idx.numel(), 1), total)
        alive &= ~broken
        robust[i] = alive
        done += n
        if progress is not None:
            progress(done, total)
    return robust, time.perf_counter() - start
