r"""Certified radii from logits and pairwise Lipschitz constants (equation 4 of the paper).

For a sample x with label y and logits z = f(x), if every margin map x ↦ z_y(x) − z_i(x) is
L_yi-Lipschitz from (ℝⁿ, ‖·‖_p) to ℝ, then for any δ with ‖δ‖_p < R(x),

.. math::

    R(x) = \min_{i \ne y} \frac{z_y(x) - z_i(x)}{L_{yi}},

z_y(x+δ) − z_i(x+δ) ≥ z_y − z_i − L_yi‖δ‖_p > 0 for every i ≠ y, so the prediction stays y.
A misclassified sample (some margin ≤ 0) gets R = 0.  A pair with L_yi = 0 and a positive
margin never changes sign, so it does not limit the radius (R may be +∞ if all pairs are so).

A sample is *certified at ε* when R(x) > ε (strict: at ‖δ‖ = R a tie is possible).  The radius
is only a certificate when the constants are sound (guarantee ``exact`` or ``upper bound``);
with estimates (``--fast``) it is an estimate too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from liplt_cli.errors import DataError, InputShapeError
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.radius import certified_accuracy, certified_radius

__all__ = [
    "PairwiseConstants", "RadiiBatchResult", "certified_accuracy", "certified_radii", "check_labels",
    "engine_constants", "match_inputs", "radii_from_logits",
]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PairwiseConstants:
    """A K×K matrix of pairwise Lipschitz constants L_ij of x ↦ z_i − z_j in input norm ``norm``.

    ``guarantee`` labels the whole matrix (its weakest entry); ``method`` names its source
    (``liplt``, ``naive``, ``dense`` …); ``seconds`` is the time it took to compute.
    """

    matrix: torch.Tensor
    guarantee: Guarantee
    norm: float
    method: str = "given"
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        m = torch.as_tensor(self.matrix, dtype=torch.float64).detach().cpu()
        if m.dim() != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"pairwise constants must be a K×K matrix, got shape {list(m.shape)}")
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError("pairwise constants must be finite and non-negative")
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "guarantee", Guarantee(self.guarantee))

    @property
    def num_classes(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def sound(self) -> bool:
        return self.guarantee.sound

    @property
    def mean_off_diagonal(self) -> float:
        k = self.num_classes
        if k < 2:
            return 0.0
        mask = ~torch.eye(k, dtype=torch.bool)
        return float(self.matrix[mask].mean())


def engine_constants(graph, norm: float = 2.0, fast: bool = False, method: str = "liplt",
                     progress: Callable | None = None) -> PairwiseConstants:
    """Pairwise constants of ``graph`` from the Lipschitz engine (computed once per model).

    The default (``fast=False``) is the engine's sound mode, in which every number is exact or
    an upper bound; ``fast=True`` gives power-iteration estimates, labelled ``estimate``.
    """
    from liplt_cli.lipschitz import EngineOptions, compute_bounds

    start = time.perf_counter()
    result = compute_bounds(graph, EngineOptions(norm=norm, fast=fast), methods=(method,), progress=progress)
    bound = result.methods[method]
    return PairwiseConstants(
        matrix=torch.tensor(bound.pairwise, dtype=torch.float64),
        guarantee=bound.guarantee,
        norm=norm,
        method=method,
        seconds=time.perf_counter() - start,
        notes=tuple(bound.notes),
    )


def radii_from_logits(logits: torch.Tensor, labels: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
    """Equation 4 for a batch: ``logits`` (B, K), ``labels`` (B,), ``pairwise`` (K, K) → R (B,).

    Computed in float64 by :func:`liplt_cli.radius.certified_radius` (R = 0 when some margin
    z_y − z_i ≤ 0: misclassified or tied).
    """
    z = logits.detach().to(torch.float64)
    return certified_radius(z, labels.to(z.device).long(), pairwise.to(device=z.device, dtype=torch.float64))


def match_inputs(x: torch.Tensor, input_shape: Sequence[int], what: str = "the data") -> torch.Tensor:
    """Reshape a batch of samples to the model's per-sample ``input_shape``.

    Allowed when the shapes are equal, or hold the same number of values and either the model
    takes a flat vector or the shapes agree after dropping 1-sized axes (a reshape keeps every
    ℓp norm, so radii are unchanged).  Otherwise :class:`InputShapeError`.
    """
    shape = tuple(int(s) for s in input_shape)
    have = tuple(x.shape[1:])
    if have == shape:
        return x
    same_count = math.prod(have) == math.prod(shape)
    squeeze = lambda s: tuple(v for v in s if v != 1)  # noqa: E731
    if same_count and (len(squeeze(shape)) <= 1 or squeeze(have) == squeeze(shape)):
        return x.reshape(x.shape[0], *shape)
    raise InputShapeError(
        f"the model takes inputs of shape {list(shape)} ({math.prod(shape)} values) but {what} has samples of "
        f"shape {list(have)} ({math.prod(have)} values); use data the model was built for (or --input-shape)"
    )


def check_labels(labels: torch.Tensor, num_classes: int, what: str = "the data") -> None:
    """:class:`DataError` when a label is outside the model's classes 0…K−1."""
    if labels.numel() == 0:
        raise DataError(f"{what} is empty")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"labels of {what} range over {lo}…{hi} but the model has {num_classes} outputs (classes 0…{num_classes - 1})")


@dataclass(frozen=True)
class RadiiBatchResult:
    """Per-sample outputs of :func:`certified_radii` (CPU tensors)."""

    radius: torch.Tensor  # float64 (N,)
    prediction: torch.Tensor  # int64 (N,)
    seconds: float


@torch.no_grad()
def certified_radii(graph, x: torch.Tensor, y: torch.Tensor, constants: PairwiseConstants,
                    batch_size: int = 256, device: str | torch.device = "cpu",
                    progress: ProgressFn | None = None) -> RadiiBatchResult:
    """Radii (eq. 4) of every sample, in batches of ``batch_size`` on ``device``.

    ``graph`` is a :class:`~liplt_cli.graph.LayerGraph` (already on ``device``); ``x`` must have
    the model's per-sample shape (see :func:`match_inputs`).  ``progress(done, total)`` is
    called after each batch.
    """
    if constants.num_classes != graph.num_classes:
        raise InputShapeError(f"pairwise constants are {constants.num_classes}×{constants.num_classes} "
                              f"but the model has {graph.num_classes} outputs")
    check_labels(y, graph.num_classes)
    start = time.perf_counter()
    n = x.shape[0]
    radii, preds = [], []
    dtype = graph.dtype
    for lo in range(0, n, max(1, int(batch_size))):
        xb = x[lo: lo + batch_size].to(device=device, dtype=dtype)
        logits = graph.evaluate(xb).reshape(xb.shape[0], -1)
        yb = y[lo: lo + batch_size].to(device)
        radii.append(radii_from_logits(logits, yb, constants.matrix).cpu())
        preds.append(logits.argmax(dim=1).cpu())
        if progress is not None:
            progress(min(lo + batch_size, n), n)
    return RadiiBatchResult(torch.cat(radii), torch.cat(preds).long(), time.perf_counter() - start)
