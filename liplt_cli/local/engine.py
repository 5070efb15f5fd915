r"""Local LipLT: the loop-transformation recursion with one slope range per neuron and per sample.

Inside the region :math:`\mathcal B_s` of sample s (:mod:`liplt_cli.local.ball`) every
activation node j has per-neuron slope ranges :math:`[\alpha_{j,i}, \beta_{j,i}]` (from sound
intervals of its pre-activation).  Loop-transforming each neuron with its own centre
:math:`c_{j,i} = (\alpha+\beta)/2` and radius :math:`r_{j,i} = (\beta-\alpha)/2`
(:math:`C_j = \mathrm{diag}(c_j)`, :math:`R_j = \mathrm{diag}(r_j)`) gives, exactly as Lemma 1 /
eq. 15 of the paper but with diagonal matrices in place of scalars,

.. math:: y_k(x') = A_{k,0}\,x' + \sum_j A_{k,j}\,\psi_j(y_j(x')),
          \qquad |\psi_{j,i}(a) - \psi_{j,i}(b)| \le r_{j,i} |a - b| \text{ on the interval},

where :math:`A_{k,j}` runs through the network whose activation j acts as :math:`C_j` (the
engine's :class:`~liplt_cli.lipschitz.transform.LoopTransform` with per-sample tensors; a
Lipschitz block keeps :math:`c = 0`, :math:`r = \mathrm{Lip}_p`).  Stable neurons
(:math:`r_{j,i} = 0`) drop out of every inner term, so only the *unstable* set
:math:`U_j = \{i : r_{j,i} > 0\}` matters: with :math:`m_j` a Lipschitz bound on the ball of
:math:`x' \mapsto P_{U_j} y_{\mathrm{pre}(j)}(x')` and q = p,

.. math:: m_j = \|P_{U_j} A_{\mathrm{pre}(j),0}\|_{p\to p}
          + \sum_{i} \|P_{U_j} A_{\mathrm{pre}(j),i} R_i\|_{p\to p}\, m_i,

because :math:`\|A R_i \Delta\psi\| \le \|A R_i\|\,\|P_{U_i}\Delta y\|` for every diagonal
:math:`|\Delta\psi| \le R_i |\Delta y|`.  The maps are only ever needed on the rows of
:math:`U_j` and the columns of :math:`U_i`: the cost of a term grows with the number of unstable
neurons, not with the width.  Per neuron of a target k (one row :math:`a = e_i^\top A`),

.. math:: \lambda_{k,i} = \|a_{0}\|_{p^*} + \sum_j \|a_{j} \odot r_j\|_{p^*}\, m_j

bounds the Lipschitz constant of :math:`x' \mapsto y_{k,i}(x')` on the ball (the Lipschitz
interval :math:`y_{k,i}(x) \pm \varepsilon\lambda_{k,i}`), and at the output, for a row
:math:`c` (:math:`e_i` per class, :math:`e_i - e_j` per pair), the last row of the recursion
:math:`L_c = \|c^\top A_{\mathrm{out},0}\|_{p^*} + \sum_j \|c^\top A_{\mathrm{out},j} R_j\|_{p^*} m_j`
is the local constant of :math:`x' \mapsto c^\top z(x')` on the ball.

With the global slopes for every neuron (all neurons unstable) the recursion *is* the engine's
(:mod:`liplt_cli.lipschitz.recursions`): same maps, same norm routines for a single sample,
same order of operations, hence the same numbers bit for bit when the radii are powers of two
(ReLU's 1/2; otherwise :math:`\|A R\|` and :math:`r\|A\|` differ by round-off only).  Terms are
labelled as in the engine: exact (certified eigenvalues, abs-sums) or upper bound (the
Riesz–Thorin bound when a Gram matrix would exceed the budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.lipschitz.norms import SAFETY, dual_exponent, pairwise_dual_norms
from liplt_cli.lipschitz.propagation import adjoint_pass
from liplt_cli.lipschitz.result import Guarantee
from liplt_cli.lipschitz.structure import LT, Structure, analyse
from liplt_cli.lipschitz.transform import LoopTransform
from liplt_cli.local.norms import matrix_norms, row_dual_norms

Reads = dict[str, torch.Tensor]


def one_hot_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows :math:`e_i` for every True entry of ``mask`` ``(S, *shape)``, sample by sample.

    Returns ``(rows (R, *shape), samples (R,))`` in the order of ``mask.nonzero()``.
    """
    flat = mask.reshape(mask.shape[0], -1)
    samples, index = flat.nonzero(as_tuple=True)
    rows = torch.zeros((samples.numel(), flat.shape[1]), dtype=torch.float64, device=mask.device)
    rows[torch.arange(samples.numel(), device=mask.device), index] = 1.0
    return rows.reshape(samples.numel(), *mask.shape[1:]), samples


@dataclass(frozen=True, eq=False)
class LocalConstants:
    """Local Lipschitz constants of the logits on each sample's region (tensors, float64).

    ``global_`` ``(S,)``: of :math:`x' \\mapsto z(x')` (ℓp → ℓp); ``per_class`` ``(S, K)``: of
    :math:`z_i`; ``pairwise`` ``(S, K, K)``: of :math:`z_i - z_j` (zero diagonal).  ``guarantee``:
    the weakest label of the terms.  The engine's relative safety margin is already applied.
    """

    global_: torch.Tensor
    per_class: torch.Tensor
    pairwise: torch.Tensor
    guarantee: Guarantee


class LocalLipLT:
    """The local recursion for one batch of S samples, filled node by node in topological order.

    Call :meth:`set_slopes` (activations) / :meth:`set_block` (Lipschitz blocks) for every
    nonlinear node before pulling rows back through it, :meth:`inner` to get its :math:`m_j`,
    and :meth:`output_constants` at the end.  ``budget``: per-sample cost limit of exact ℓ2
    matrix norms (see :func:`~liplt_cli.local.norms.matrix_norms`).
    """

    def __init__(self, graph: LayerGraph, p: float, samples: int, budget: float = 2e8) -> None:
        self.graph = graph
        self.p = p
        self.count = samples
        self.budget = budget
        base = LoopTransform.of(graph, p, prune_zero=False)
        self._structure = analyse(graph, p, base)
        self._base = base
        self.centre: dict[str, torch.Tensor] = {}
        self.radius: dict[str, torch.Tensor | float] = {}
        self.unstable: dict[str, torch.Tensor] = {}
        self.m: dict[str, torch.Tensor] = {}
        self.labels: list[Guarantee] = []

    # ------------------------------------------------------------------ slopes
    @property
    def structure(self) -> Structure:
        """The graph's structure with the per-sample centres set so far (others: global, unused)."""
        centre = {**self._base.centre, **self.centre}
        return replace(self._structure, transform=replace(self._base, centre=centre))

    def set_slopes(self, node: str, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        """Per-neuron, per-sample slope range ``(S, *shape)`` of activation ``node`` on the region."""
        self.centre[node] = (alpha + beta) / 2
        radius = (beta - alpha) / 2
        self.radius[node] = radius
        self.unstable[node] = radius > 0

    def set_block(self, node: str) -> None:
        """A Lipschitz block: no linear part, radius its ℓp constant, every output counts."""
        self.radius[node] = float(self._base.radius[node])
        shape = self.graph.node(self.pre(node)).out_shape  # U_j: every coordinate of the block's input
        self.unstable[node] = torch.ones((self.count, *shape), dtype=torch.bool, device=self.graph.device)

    def pre(self, node: str) -> str:
        return self._structure.pre[node]

    # ------------------------------------------------------------------ rows
    def sources(self, target: str) -> list[str]:
        """Input and nonlinear nodes (set so far) whose injection reaches ``target`` in the LT network."""
        return [s for s in self._structure.sources_of(LT, target) if s == self._structure.input or s in self.radius]

    def pull_back(self, target: str, rows: torch.Tensor, samples: torch.Tensor) -> Reads:
        """:math:`a_s = e^\\top A_{k,s}` for every row at ``target`` and every source s, flattened ``(R, d_s)``.

        Sources are listed in the order the adjoint walk reads them (the engine's order).
        """
        sources = set(self.sources(target))
        out: Reads = {}
        adjoint_pass(
            self.structure, LT, [("rows", target, rows)], {"rows": sources},
            lambda t, n, v: out.__setitem__(n, v.reshape(v.shape[0], -1)), samples={"rows": samples},
        )
        for s in self.sources(target):
            out.setdefault(s, rows.new_zeros((rows.shape[0], _size(self.graph, s))))
        return out

    def _scaled(self, source: str, a: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        r = self.radius[source]
        if isinstance(r, float):
            return a * r
        return a * r.reshape(r.shape[0], -1)[samples]

    def row_constants(self, reads: Reads, samples: torch.Tensor) -> torch.Tensor:
        """:math:`\\lambda` of every row (the local Lipschitz constant of that neuron on the ball)."""
        total = None
        for s, a in reads.items():
            if s == self._structure.input:
                term = row_dual_norms(a, self.p)
            else:
                term = row_dual_norms(self._scaled(s, a, samples), self.p) * self.m[s][samples]
            total = term if total is None else total + term
        if total is None:
            return torch.zeros(samples.shape[0], dtype=torch.float64, device=samples.device)
        return total

    def inner(self, node: str, reads: Reads, samples: torch.Tensor) -> torch.Tensor:
        """:math:`m_j` per sample for nonlinear ``node`` from the rows of (a superset of) its unstable set."""
        inp = self._structure.input
        total = None
        if inp in reads:
            total, label = matrix_norms(reads[inp], samples, self.count, self.p, self.budget)
            self.labels.append(label)
        for s in self.sources(self.pre(node)):
            if s == inp:
                continue
            value, label = matrix_norms(self._scaled(s, reads[s], samples), samples, self.count, self.p, self.budget)
            self.labels.append(label)
            term = value * self.m[s]
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros(self.count, dtype=torch.float64, device=self.graph.device)
        self.m[node] = total
        return total

    # ------------------------------------------------------------------ output
    def output_constants(self) -> LocalConstants:
        """Global, per-class and pairwise local constants of the logits (the last row, exact terms)."""
        graph = self.graph
        out = graph.output
        k = graph.num_classes
        eye = torch.eye(k, dtype=torch.float64, device=graph.device)
        rows = eye.repeat(self.count, 1).reshape(self.count * k, *graph.node(out).out_shape)
        samples = torch.arange(self.count, device=graph.device).repeat_interleave(k)
        reads = self.pull_back(out, rows, samples)
        glob = per = pair = 0
        for s, a in reads.items():
            scaled = a if s == self._structure.input else self._scaled(s, a, samples)
            factor = 1.0 if s == self._structure.input else self.m[s]
            matrix, label = matrix_norms(scaled, samples, self.count, self.p, self.budget)
            self.labels.append(label)
            class_rows = scaled.reshape(self.count, k, -1)
            per_class = row_dual_norms(scaled, self.p).reshape(self.count, k)
            if isinstance(factor, float):
                glob, per, pair = glob + matrix * factor, per + per_class * factor, pair + _pairwise(class_rows, self.p) * factor
            else:
                glob = glob + matrix * factor
                per = per + per_class * factor[:, None]
                pair = pair + _pairwise(class_rows, self.p) * factor[:, None, None]
        guarantee = Guarantee.weakest(self.labels)
        scale = 1.0 + SAFETY
        return LocalConstants(torch.as_tensor(glob) * scale, torch.as_tensor(per) * scale,
                              torch.as_tensor(pair) * scale, guarantee)


def _size(graph: LayerGraph, name: str) -> int:
    return math.prod(graph.node(name).out_shape)


def _pairwise(class_rows: torch.Tensor, p: float) -> torch.Tensor:
    """:math:`\\|a_i - a_j\\|_{p^*}` per sample ``(S, K, K)``: the engine's
    :func:`~liplt_cli.lipschitz.norms.pairwise_dual_norms` for one sample, its batched form
    otherwise (ℓ2 from the Gram matrix plus the same rounding term :math:`4du(G_{ii}+G_{jj})`)."""
    if class_rows.shape[0] == 1:
        return pairwise_dual_norms(class_rows[0], p)[None]
    s, k, d = class_rows.shape
    if p == 2:
        gram = class_rows @ class_rows.transpose(1, 2)
        diag = torch.diagonal(gram, dim1=1, dim2=2)
        total = diag[:, :, None] + diag[:, None, :]
        rounding = 4 * d * torch.finfo(class_rows.dtype).eps * total
        squared = (total - 2 * gram + rounding).clamp_min(torch.finfo(class_rows.dtype).tiny)
        off = 1.0 - torch.eye(k, dtype=class_rows.dtype, device=class_rows.device)
        return torch.sqrt(squared) * off
    q = dual_exponent(p)
    return torch.stack([torch.linalg.vector_norm(class_rows - class_rows[:, j:j + 1], ord=q, dim=2)
                        for j in range(k)], dim=2)
