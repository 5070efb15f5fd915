r"""Batched, warm-startable power iteration on the maps :math:`A_{k,s}` of a structure.

For every requested (target k, source s) pair, one vector :math:`v_{k,s}` is kept.  An
iteration pushes *all* vectors forward in one :func:`forward_pass` (each read at its target),
normalises, and pulls them back in one :func:`adjoint_pass`:
:math:`v \leftarrow A^\top A v / \|A^\top A v\|`.  The returned value
:math:`\sigma = \|A v\|` converges to :math:`\|A\|_2` *from below*: it is an **estimate**, never
a bound.  Its gradient with respect to the weights (``with_grad=True``):

* ``through_iterations=False``: ``v`` held fixed, :math:`u^\top (\partial A) v`, the gradient of
  the top singular value at convergence;
* ``through_iterations=True``: the gradient of :math:`\|A\,v_n(A)\|` with
  :math:`v_n = (A^\top A)^n v_0 / \|(A^\top A)^n v_0\|` from the (detached) warm-start
  :math:`v_0`, i.e. autograd through this call's iterations, as the paper's training code does.
  It equals the first at convergence; before it, it also pushes down the singular directions
  that the estimate has not yet caught up with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from liplt_cli.lipschitz.propagation import adjoint_pass, forward_pass
from liplt_cli.lipschitz.structure import Structure
from liplt_cli.lipschitz.transform import Mode

PairKey = tuple[str, str, str]  # (mode.value, target, source): plain strings, as stored in checkpoints


@dataclass
class PowerState:
    """Warm-start vectors of the power iterations, kept by a caller between calls."""

    vectors: dict[PairKey, torch.Tensor] = field(default_factory=dict)
    last_relative_change: float | None = None
    iterations_done: int = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"|".join(k): v.detach().cpu() for k, v in self.vectors.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.vectors = {tuple(k.split("|")): v for k, v in state.items()}  # type: ignore[misc]


def _normalise(v: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1).clamp_min(1e-30)
    return v / n.reshape(-1, *([1] * (v.dim() - 1)))


def power_norms(
    structure: Structure,
    mode: Mode,
    pairs: list[tuple[str, str]],
    state: PowerState | None = None,
    iterations: int = 5,
    with_grad: bool = False,
    generator: torch.Generator | None = None,
    progress=None,
    through_iterations: bool = False,
) -> tuple[dict[tuple[str, str], torch.Tensor], PowerState]:
    """Estimate :math:`\\|A_{k,s}\\|_2` for every (k, s) in ``pairs`` (``Mode.LT`` or ``Mode.CUT``);
    ``with_grad``/``through_iterations`` choose the gradient (module docstring)."""
    state = state or PowerState()
    graph = structure.graph
    dtype, device = graph.dtype, graph.device
    v: dict[tuple[str, str], torch.Tensor] = {}
    for k, s in pairs:
        shape = (1, *graph.node(s).out_shape)
        old = state.vectors.get((mode.value, k, s))
        if old is not None and tuple(old.shape) == shape:
            v[(k, s)] = old.to(device=device, dtype=dtype)
        else:
            v[(k, s)] = _normalise(torch.randn(shape, generator=generator, dtype=dtype).to(device))
    reads_fwd = {(k, s): {k} for k, s in pairs}
    reads_adj = {(k, s): {s} for k, s in pairs}
    sigma_old: dict[tuple[str, str], torch.Tensor] = {}
    rel = None
    differentiate = with_grad and through_iterations
    with torch.enable_grad() if differentiate else torch.no_grad():
        for it in range(iterations):
            if progress is not None:
                progress(f"power iteration ({mode.value})", it, iterations)
            u: dict[tuple[str, str], torch.Tensor] = {}
            forward_pass(structure, mode, [(t, t[1], v[t]) for t in v], reads_fwd, lambda t, n, x: u.__setitem__(t, x))
            sigma_new = {t: torch.linalg.vector_norm(u[t].detach()) for t in u}
            if sigma_old:
                rel = max(
                    float((sigma_new[t] - sigma_old[t]).abs() / sigma_new[t].clamp_min(1e-30)) for t in sigma_new
                )
            sigma_old = sigma_new
            w: dict[tuple[str, str], torch.Tensor] = {}
            adjoint_pass(
                structure, mode, [(t, t[0], _normalise(u[t])) for t in u], reads_adj, lambda t, n, x: w.__setitem__(t, x)
            )
            for t in v:
                if t in w and float(torch.linalg.vector_norm(w[t].detach())) > 0:
                    v[t] = _normalise(w[t])
    result: dict[tuple[str, str], torch.Tensor] = {}
    context = torch.enable_grad() if with_grad else torch.no_grad()
    with context:
        forward_pass(
            structure, mode, [(t, t[1], v[t] if differentiate else v[t].detach()) for t in v], reads_fwd,
            lambda t, n, x: result.__setitem__(t, torch.linalg.vector_norm(x)),
        )
    for t in pairs:
        result.setdefault(t, torch.zeros((), dtype=dtype, device=device))
    new_state = PowerState(
        {**state.vectors, **{(mode.value, k, s): v[(k, s)].detach() for k, s in pairs}},
        rel,
        state.iterations_done + iterations,
    )
    return result, new_state
