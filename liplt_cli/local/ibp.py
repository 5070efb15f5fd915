r"""Sound interval images of the graph's nodes (interval bound propagation), in float64.

Every function takes per-sample boxes ``(lo, hi)`` of shape ``(S, *shape)`` that contain the
true values and returns boxes that contain every value the node can produce from them --
including the rounding of the float64 arithmetic that computes the box:

* **linear** :math:`x \mapsto Ax + b` in centre-radius form: with :math:`c = (lo+hi)/2`,
  :math:`r = (hi-lo)/2`, the image is :math:`Ac + b \pm |A| r`.  A sum of at most N products
  computed in float64 (any order, with or without FMA) is off by at most
  :math:`\gamma_N \sum |a_i||x_i|`, :math:`\gamma_N = Nu/(1-Nu)`, :math:`u = 2^{-53}`; the box is
  widened by :math:`(N+8)\,2^{-52}\,(|A|(|c|+r) + |b|)` with N the number of input values (≥ the
  fan-in), which also covers the rounding of c, r and of the final ± (module docstring of
  :mod:`liplt_cli.lipschitz.norms` for the engine's margins);
* **sum** :math:`\sum_i \kappa_i v_i`: interval arithmetic, widened likewise;
* **activation**: for a non-decreasing activation (global :math:`\alpha \ge 0`) the image is
  :math:`[\varphi(l), \varphi(u)]`; otherwise the mean value theorem with the slope range
  :math:`[\alpha_i, \beta_i]` of :math:`\varphi` over :math:`[l, u]`
  (:func:`~liplt_cli.graph.slopes.slope_range`, proven, not sampled) bounds
  :math:`\varphi(y) - \varphi(l) \in [\min(0, \alpha_i(u-l)), \max(0, \beta_i(u-l))]` and the same
  from u, and the two enclosures are intersected.  Values of :math:`\varphi` are widened by
  :data:`EVAL_MARGIN` relative (libm functions are within a few ulp);
* **block** (MaxPool): monotone in every input, so the image is :math:`[\mathrm{pool}(lo),
  \mathrm{pool}(hi)]` exactly.
"""

from __future__ import annotations

import math

import torch

from liplt_cli.graph.slopes import Activation, slope_range

_TWO_U = 2.0**-52
_TINY = 1e-300
EVAL_MARGIN = 2.0**-40
"""Relative widening of activation values computed in float64 (libm errors are a few ulp)."""


def _per_value_slack(shape: tuple[int, ...]) -> float:
    return (math.prod(shape) + 8) * _TWO_U


def linear_image(op, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box of :math:`Ax + b` over the box ``[lo, hi]`` (``op`` a linear operator of the graph)."""
    c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    absolute = op.absolute()
    both = absolute.linear(torch.cat([r, c.abs() + r], dim=0))
    width, mass = torch.split(both, [r.shape[0], r.shape[0]], dim=0)
    centre = op.forward(c)
    shift = _offset_magnitude(op)
    slack = _per_value_slack(op.in_shape) * (mass + shift) + _TINY
    return centre - width - slack, centre + width + slack


def _offset_magnitude(op) -> torch.Tensor | float:
    tensors = op.tensors()
    b = tensors.get("bias", tensors.get("shift"))
    if b is None:
        return 0.0
    if op.kind in ("conv", "conv_transpose"):
        return b.abs().reshape(-1, *([1] * (len(op.out_shape) - 1)))
    return b.abs()


def sum_image(coefficients: list[float], boxes: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Box of :math:`\\sum_i \\kappa_i v_i` for boxes of the :math:`v_i`."""
    lo = hi = mass = None
    for k, (a, b) in zip(coefficients, boxes):
        lo_k, hi_k = (k * a, k * b) if k >= 0 else (k * b, k * a)
        m = abs(k) * torch.maximum(a.abs(), b.abs())
        lo = lo_k if lo is None else lo + lo_k
        hi = hi_k if hi is None else hi + hi_k
        mass = m if mass is None else mass + m
    slack = (len(boxes) + 4) * _TWO_U * mass + _TINY
    return lo - slack, hi + slack


def widen_values(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen activation values computed in float64 by :data:`EVAL_MARGIN` relative (+ a tiny absolute)."""
    return lo - EVAL_MARGIN * lo.abs() - _TINY, hi + EVAL_MARGIN * hi.abs() + _TINY


def activation_image(
    activation: Activation, lo: torch.Tensor, hi: torch.Tensor,
    slopes: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box of :math:`\\varphi(y)` for y in ``[lo, hi]`` (see the module docstring).

    ``slopes``: the slope range of φ over the box when already known (else computed).
    """
    f_lo, f_hi = activation(lo), activation(hi)
    if activation.alpha >= 0:  # non-decreasing
        return widen_values(f_lo, f_hi)
    a, b = slopes if slopes is not None else slope_range(activation, lo, hi)
    w = (hi - lo).clamp_min(0.0)
    zero = torch.zeros_like(w)
    low = torch.maximum(f_lo + torch.minimum(zero, a * w), f_hi - torch.maximum(zero, b * w))
    high = torch.minimum(f_lo + torch.maximum(zero, b * w), f_hi - torch.minimum(zero, a * w))
    mass = f_lo.abs() + f_hi.abs() + (a.abs() + b.abs()) * w
    low, high = low - 4 * _TWO_U * mass, high + 4 * _TWO_U * mass
    return widen_values(low, high)


def block_image(block, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box of a monotone Lipschitz block (MaxPool): its values at the two corners."""
    return block(lo), block(hi)
