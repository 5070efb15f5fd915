r"""Local certificates and local radii.

**Certificate at ε.**  A sample x with label y, correctly classified, is *certified at ε* when
every margin :math:`z_y - z_i` (i ≠ y) is proven positive on its region :math:`\mathcal B`
(the ℓp ball of radius ε, ∩ the input domain when one is given).  For each margin two proofs are
tried and the better lower bound is kept:

* **local Lipschitz constant** (:mod:`liplt_cli.local.engine`): for every x' in the region,
  :math:`z_y(x') - z_i(x') \ge z_y(x) - z_i(x) - \varepsilon L_{yi}(x, \varepsilon)`, with
  :math:`L_{yi}(x, \varepsilon) = \min(L^{\mathrm{local}}_{yi}, L^{\mathrm{global}}_{yi})` (both are
  valid on the ball, so local ≤ global on every sample);
* **linear relaxation** (:mod:`liplt_cli.local.relaxation`): the row :math:`e_y - e_i`
  back-substituted to the input gives a lower bound of :math:`(z_y - z_i)(x') - (z_y - z_i)(x)`
  on the region.

The certificate holds when the larger of the two lower bounds, lowered by the engine's relative
margin :data:`~liplt_cli.lipschitz.norms.SAFETY` on the centre's margin, is > 0 for every i ≠ y.
Only the K − 1 margins of the predicted class are needed per sample.  Both proofs hold on the
*closed* ball, so a certificate at ε covers every ε' ≤ ε.

**Radius** (:func:`local_radii`).  The local radius r is the largest ε at which the certificate
was verified, searched per sample and batched over samples:

1. the global radius R (eq. 4 with the global constants) is a certificate for every ε < R, so
   the bracket starts there (the local radius is never below the global one);
2. the ε values the caller lists are checked exactly (certified accuracy at them needs no
   search tolerance); a sample that fails at some ε is not tried at larger ones;
3. if no listed ε failed, ε is doubled from the largest verified value until the certificate
   fails;
4. bisection (geometric midpoint) between the largest verified and the smallest refuted ε,
   until they are within the relative ``tolerance``.

Soundness needs no monotonicity: each reported radius is a value at which the certificate was
verified (or the global radius), so every ball of radius ≤ r is proven.  "Certified at ε" is
``verified_radius ≥ ε`` or ``global radius > ε``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.norms import SAFETY
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.local.analysis import LocalOptions, analyse_ball
from liplt_cli.local.ball import Ball

ProgressFn = Callable[[int, int], None]
MAX_DOUBLINGS = 12
MAX_BISECTIONS = 60
MIN_RADIUS = 1e-12


@dataclass(frozen=True, eq=False)
class MarginBounds:
    """Lower bounds of the margins :math:`z_y - z_i` on each sample's region (one evaluation).

    ``lipschitz``, ``relaxation``, ``best``: ``(S, K)`` lower bounds (+inf at i = y);
    ``constants``: the local pairwise constants :math:`L_{yi}` used ``(S, K)``; ``verified``:
    ``(S,)`` all margins proven positive; ``guarantee``: the label of the local constants.
    """

    lipschitz: torch.Tensor
    relaxation: torch.Tensor | None
    best: torch.Tensor
    constants: torch.Tensor
    verified: torch.Tensor
    guarantee: Guarantee


def margin_bounds(
    graph: LayerGraph, ball: Ball, predicted: torch.Tensor, global_pairwise: torch.Tensor,
    options: LocalOptions = LocalOptions(),
) -> MarginBounds:
    """Lower bounds of every margin of the predicted class on the region (module docstring).

    ``graph`` float64 on the ball's device; ``predicted`` ``(S,)`` the class whose margins are
    bounded; ``global_pairwise`` ``(K, K)`` sound global constants.
    """
    analysis = analyse_ball(graph, ball, options)
    z = analysis.logits
    k = z.shape[1]
    y = predicted.to(z.device)
    own = torch.nn.functional.one_hot(y, k).bool()
    margin = z.gather(1, y[:, None]) - z
    slack = SAFETY * (z.gather(1, y[:, None]).abs() + z.abs())
    glob = global_pairwise.to(device=z.device, dtype=torch.float64)[y]
    guarantee = Guarantee.EXACT
    if options.lipschitz:
        local = analysis.output_constants()
        guarantee = local.guarantee
        constants = torch.minimum(local.pairwise[torch.arange(z.shape[0], device=z.device), y], glob)
    else:
        constants = glob
    eps = ball.radius[:, None]
    lipschitz = margin - eps * constants - slack
    best = lipschitz
    relaxation = None
    if options.relaxations:
        eye = torch.eye(k, dtype=torch.float64, device=z.device)
        rows = (eye[y][:, None, :] - eye[None, :, :]).reshape(-1, *graph.output_shape)
        samples = torch.arange(z.shape[0], device=z.device).repeat_interleave(k)
        goal = (-(margin - slack)).reshape(-1) if options.focused_dual else None
        relaxation = margin + analysis.relaxed_lower_bounds(graph.output, rows, samples, goal).reshape(-1, k) - slack
        best = torch.maximum(best, relaxation)
    inf = torch.full_like(best, math.inf)
    best = torch.where(own, inf, best)
    lipschitz = torch.where(own, inf, lipschitz)
    if relaxation is not None:
        relaxation = torch.where(own, inf, relaxation)
    verified = (best > 0).all(dim=1)
    return MarginBounds(lipschitz, relaxation, best, constants, verified, guarantee)


@dataclass(frozen=True)
class LocalSettings:
    """How ``certify`` computes local radii: the input ``domain`` (lo, hi) or ``None``, the
    relative ``tolerance`` of the radius search, the analysis ``options``, and the number of
    samples analysed together (``batch_size``; memory grows with it)."""

    domain: tuple[float, float] | None = (0.0, 1.0)
    tolerance: float = 0.05
    options: LocalOptions = LocalOptions()
    batch_size: int = 32
    refine: bool = True

    def to_dict(self) -> dict:
        return {"domain": list(self.domain) if self.domain is not None else None, "tolerance": self.tolerance,
                "relaxations": self.options.relaxations, "lipschitz": self.options.lipschitz,
                "batch_size": self.batch_size, "refine": self.refine}


@dataclass(frozen=True, eq=False)
class LocalRadii:
    """Per-sample local radii (CPU tensors) and how they were found.

    ``radius``: the local radius, ``max(verified, global)``; ``verified``: the largest ε at
    which the local certificate was verified (0 if none); ``global_radius``: eq. 4 with the
    global constants; ``prediction``; ``evaluations``: certificate evaluations per sample;
    ``guarantee``: weakest label of the local constants used; ``tolerance``: relative bracket
    width at which the search stopped.
    """

    radius: torch.Tensor
    verified: torch.Tensor
    global_radius: torch.Tensor
    prediction: torch.Tensor
    evaluations: torch.Tensor
    guarantee: Guarantee
    tolerance: float
    seconds: float

    def certified(self, eps: float) -> torch.Tensor:
        """Samples certified at ε: verified locally at some ε' ≥ ε, or global radius > ε."""
        return (self.verified >= eps) & (self.verified > 0) | (self.global_radius > eps)

    def certified_accuracy(self, eps: Sequence[float]) -> list[float]:
        n = max(int(self.radius.numel()), 1)
        return [float(self.certified(e).sum()) / n for e in eps]


def local_radii(
    graph: LayerGraph, x: torch.Tensor, labels: torch.Tensor, p: float, global_pairwise: torch.Tensor,
    eps: Sequence[float] = (), *, domain: tuple[float, float] | None = None, tolerance: float = 0.05,
    options: LocalOptions = LocalOptions(), batch_size: int = 64, device: str | torch.device = "cpu",
    refine: bool = True, progress: ProgressFn | None = None,
) -> LocalRadii:
    """Local radii of every sample (module docstring), batched over samples.

    ``x`` ``(N, *input_shape)``, ``labels`` ``(N,)``; ``global_pairwise`` ``(K, K)`` sound global
    constants; ``eps``: values checked exactly; ``domain``: input range (lo, hi) or ``None``.
    ``refine=False`` checks only the listed ε (steps 1-2: the radius is then the largest listed
    ε verified, or the global radius).  ``progress(done, total)`` counts samples whose radius is
    final.
    """
    start = time.perf_counter()
    g = graph.detached().to(device=device, dtype=torch.float64)
    n = x.shape[0]
    radius = torch.zeros(n, dtype=torch.float64)
    verified = torch.zeros(n, dtype=torch.float64)
    global_r = torch.zeros(n, dtype=torch.float64)
    preds = torch.zeros(n, dtype=torch.long)
    evaluations = torch.zeros(n, dtype=torch.long)
    labels_used: list[Guarantee] = []
    done = 0
    for lo_i in range(0, n, max(1, int(batch_size))):
        sl = slice(lo_i, min(n, lo_i + batch_size))
        xb = x[sl].to(device=device, dtype=torch.float64)
        yb = labels[sl].to(device)
        out = _search(g, xb, yb, p, global_pairwise, sorted(set(float(e) for e in eps if e > 0)), domain,
                      tolerance, options, labels_used, refine)
        radius[sl], verified[sl], global_r[sl], preds[sl], evaluations[sl] = (t.cpu() for t in out)
        done = sl.stop
        if progress is not None:
            progress(done, n)
    guarantee = Guarantee.weakest(labels_used) if labels_used else Guarantee.EXACT
    return LocalRadii(radius, verified, global_r, preds, evaluations, guarantee, tolerance, time.perf_counter() - start)


def _global_radius(z: torch.Tensor, y: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    from liplt_cli.certify.radius import radii_from_logits

    return radii_from_logits(z, y, pairwise)


def _search(graph: LayerGraph, x: torch.Tensor, y: torch.Tensor, p: float, global_pairwise: torch.Tensor,
            eps: list[float], domain: tuple[float, float] | None, tolerance: float, options: LocalOptions,
            labels_used: list[Guarantee], refine: bool = True) -> tuple[torch.Tensor, ...]:
    s = x.shape[0]
    z = graph.evaluate(x).reshape(s, -1)
    pred = z.argmax(dim=1)
    correct = pred == y
    pairwise = global_pairwise.to(device=x.device, dtype=torch.float64)
    r_global = _global_radius(z, y, pairwise)
    lo = torch.zeros(s, dtype=torch.float64, device=x.device)  # largest verified ε (0: none)
    hi = torch.full((s,), math.inf, dtype=torch.float64, device=x.device)  # smallest refuted ε
    hi = torch.where(correct, hi, torch.zeros_like(hi))
    count = torch.zeros(s, dtype=torch.long, device=x.device)

    def evaluate(mask: torch.Tensor, at: torch.Tensor) -> None:
        idx = mask.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            return
        ball = Ball(x[idx], at[idx], p, domain)
        bounds = margin_bounds(graph, ball, pred[idx], pairwise, options)
        labels_used.append(bounds.guarantee)
        ok = bounds.verified
        lo[idx] = torch.where(ok, torch.maximum(lo[idx], at[idx]), lo[idx])
        hi[idx] = torch.where(ok, hi[idx], torch.minimum(hi[idx], at[idx]))
        count[idx] += 1

    for e in eps:  # the listed ε, exactly; skip what the global radius already covers
        at = torch.full((s,), e, dtype=torch.float64, device=x.device)
        evaluate(correct & (r_global <= e) & (hi > e) & (lo < e), at)
    for _ in range(MAX_DOUBLINGS if refine else 0):  # find a refuted ε above the start where none is known
        open_ended = correct & torch.isinf(hi)
        if not bool(open_ended.any()):
            break
        base = torch.maximum(lo, r_global)
        at = torch.where(base > 0, 2 * base, torch.full_like(base, 1e-3))
        evaluate(open_ended, at)
    for _ in range(MAX_BISECTIONS if refine else 0):
        base = torch.maximum(lo, r_global)
        active = correct & torch.isfinite(hi) & (hi > base * (1 + tolerance)) & (hi > MIN_RADIUS)
        if not bool(active.any()):
            break
        evaluate(active, torch.where(base > 0, torch.sqrt(base * hi), 0.5 * hi))
    radius = torch.where(correct, torch.maximum(lo, r_global), torch.zeros_like(lo))
    return radius, torch.where(correct, lo, torch.zeros_like(lo)), r_global, pred, count
