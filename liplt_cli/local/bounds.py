r"""Local Lipschitz constants of a model at given inputs (``liplt bound MODEL --at inputs.npz``).

For each input :math:`x_s` and its region :math:`\mathcal B_s` (ℓp ball of radius ε, ∩ the input
domain when one is given, :mod:`liplt_cli.local.ball`), the local recursion
(:mod:`liplt_cli.local.engine`) on the proven per-neuron slopes (:mod:`liplt_cli.local.analysis`)
bounds the Lipschitz constants on the region of

* :math:`x' \mapsto z(x')` (ℓp → ℓp, "global"), of each logit :math:`z_i` ("per class") and of
  each margin :math:`z_i - z_j` ("pairwise").

The global engine's numbers are valid on every region too, so each reported local number is the
smaller of the two: local ≤ global on every sample, by construction.  Labels as everywhere:
``exact`` / ``upper bound`` (sound) from the terms that went in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from liplt_cli.eps import Epsilon, parse_epsilons
from liplt_cli.errors import ArgumentError
from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.result import Guarantee, MethodBound, norm_name
from liplt_cli.local.analysis import LocalOptions, analyse_ball
from liplt_cli.local.ball import Ball
from liplt_cli.notes import warnings_in


@dataclass(frozen=True, eq=False)
class LocalBoundResult:
    """Local constants at S inputs (CPU float64 tensors) next to the global engine's numbers.

    ``global_`` ``(S,)``, ``per_class`` ``(S, K)``, ``pairwise`` ``(S, K, K)``: the local
    constants (each ≤ the global one); ``eps`` ``(S,)``: the radius of each region;
    ``global_reference``: the global LipLT bounds (sound); ``unstable``: unstable neurons per
    sample (all activation nodes together); ``eps_text``: the radius as it was written
    (``36/255``) when one radius given as text or :class:`~liplt_cli.eps.Epsilon` holds for all.
    """

    model: str
    norm: float
    eps: torch.Tensor
    domain: tuple[float, float] | None
    global_: torch.Tensor
    per_class: torch.Tensor
    pairwise: torch.Tensor
    guarantee: Guarantee
    global_reference: MethodBound
    unstable: torch.Tensor
    neurons: int
    seconds: float
    device: str = "cpu"
    notes: tuple[str, ...] = field(default=())
    eps_text: str | None = None

    @property
    def samples(self) -> int:
        return int(self.global_.numel())

    @property
    def num_classes(self) -> int:
        return int(self.per_class.shape[1]) if self.per_class.dim() == 2 else 0

    def pairwise_mean(self) -> torch.Tensor:
        """Mean off-diagonal local :math:`L_{ij}` per sample ``(S,)``."""
        k = self.num_classes
        if k < 2:
            return torch.zeros(self.samples, dtype=torch.float64)
        off = ~torch.eye(k, dtype=torch.bool)
        return self.pairwise[:, off].mean(dim=1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``liplt bound --at --json``."""
        ref = self.global_reference
        return {
            "model": self.model,
            "norm": norm_name(self.norm),
            "eps_text": self.eps_text,
            "domain": list(self.domain) if self.domain is not None else None,
            "device": self.device,
            "guarantee": self.guarantee.value,
            "sound": self.guarantee.sound,
            "global_reference": {"global": ref.global_, "per_class": ref.per_class, "pairwise": ref.pairwise,
                                 "pairwise_mean": ref.pairwise_mean, "guarantee": ref.guarantee.value},
            "samples": [
                {"eps": float(self.eps[s]), "global": float(self.global_[s]),
                 "per_class": self.per_class[s].tolist(), "pairwise": self.pairwise[s].tolist(),
                 "pairwise_mean": float(self.pairwise_mean()[s]), "unstable_neurons": int(self.unstable[s])}
                for s in range(self.samples)
            ],
            "neurons": self.neurons,
            "seconds": self.seconds,
            "notes": list(self.notes),
            "warnings": warnings_in(self.notes),
        }


def local_bounds(
    graph: LayerGraph, x: torch.Tensor, eps: float | str | Epsilon | Sequence[float] | torch.Tensor,
    norm: float = 2.0, *,
    domain: tuple[float, float] | None = None, options: LocalOptions = LocalOptions(),
    global_reference: MethodBound | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
    model_name: str = "", progress: Callable[[int, int], None] | None = None,
) -> LocalBoundResult:
    """Local constants of ``graph`` on the region of radius ``eps`` around each row of ``x``.

    ``x`` ``(S, *input_shape)``; ``eps`` one radius (a number, or text such as ``"36/255"`` /
    an :class:`~liplt_cli.eps.Epsilon`, kept as ``eps_text``) or one per sample; ``domain`` (lo, hi) of the
    input coordinates or ``None``; ``global_reference``: the global LipLT bound (computed when
    absent).  See the module docstring.
    """
    from liplt_cli.lipschitz import EngineOptions, compute_bounds

    start = time.perf_counter()
    if batch_size <= 0:
        raise ArgumentError(f"batch size must be positive, got {batch_size}")
    s = x.shape[0]
    eps_text = None
    if isinstance(eps, (str, Epsilon)):
        given = parse_epsilons(eps)
        if len(given) != 1:
            raise ArgumentError(f"one radius for all inputs, got {len(given)} in '{eps}'")
        eps_text, eps = given[0].text, given[0].value
    radii = torch.as_tensor(eps, dtype=torch.float64).flatten()
    if radii.numel() == 1:
        radii = radii.expand(s).clone()
    if radii.numel() != s:
        raise ArgumentError(f"{radii.numel()} radii for {s} inputs; give one radius or one per input")
    if bool((radii < 0).any()) or not bool(torch.isfinite(radii).all()):
        raise ArgumentError("every radius must be finite and non-negative")
    if tuple(x.shape[1:]) != tuple(graph.input_shape):
        raise ArgumentError(f"inputs have per-sample shape {list(x.shape[1:])}, the model expects "
                            f"{list(graph.input_shape)}")
    if domain is not None and (bool((x < domain[0]).any()) or bool((x > domain[1]).any())):
        raise ArgumentError(f"some inputs lie outside the input range [{domain[0]:g}, {domain[1]:g}]")
    if global_reference is None:
        global_reference = compute_bounds(graph, EngineOptions(norm=norm), methods=("liplt",)).methods["liplt"]
    g = graph.detached().to(device=device, dtype=torch.float64)
    ref_g = torch.tensor(global_reference.global_, dtype=torch.float64)
    ref_c = torch.tensor(global_reference.per_class, dtype=torch.float64)
    ref_p = torch.tensor(global_reference.pairwise, dtype=torch.float64)
    parts: dict[str, list[torch.Tensor]] = {"g": [], "c": [], "p": [], "u": []}
    labels: list[Guarantee] = [global_reference.guarantee]
    for lo in range(0, s, batch_size):
        sl = slice(lo, min(s, lo + batch_size))
        ball = Ball(x[sl].to(device=device, dtype=torch.float64), radii[sl].to(device), norm, domain)
        analysis = analyse_ball(g, ball, options)
        local = analysis.output_constants()
        labels.append(local.guarantee)
        parts["g"].append(torch.minimum(local.global_.cpu(), ref_g))
        parts["c"].append(torch.minimum(local.per_class.cpu(), ref_c))
        parts["p"].append(torch.minimum(local.pairwise.cpu(), ref_p))
        counts = analysis.unstable_counts()
        parts["u"].append(sum(counts.values(), torch.zeros(ball.samples, dtype=torch.long, device=device)).cpu())
        if progress is not None:
            progress(sl.stop, s)
    neurons = sum(int(torch.tensor(n.out_shape).prod()) for n in graph.nodes if n.kind == "activation")
    return LocalBoundResult(
        model=model_name, norm=norm, eps=radii, domain=domain,
        global_=torch.cat(parts["g"]), per_class=torch.cat(parts["c"]), pairwise=torch.cat(parts["p"]),
        guarantee=Guarantee.weakest(labels), global_reference=global_reference, unstable=torch.cat(parts["u"]),
        neurons=neurons, seconds=time.perf_counter() - start, device=str(device),
        notes=tuple(warnings_in(graph.notes)), eps_text=eps_text,
    )
