r"""Proposition 2 blocks in a layer graph: recognised, re-certified from the weights, used as terms.

A plain residual block (what ``liplt train`` exports for ``prop2-*`` architectures, or any file
with the same structure)

.. math:: h(x) = s\,x + G\,\varphi(Wx + b)

is, when :math:`G = W^\top \mathrm{diag}(t)` with :math:`t \le 0`, the layer of Proposition 2
(eq. 10) with :math:`\sqrt\rho = s` and :math:`T = -\sqrt\rho\, \mathrm{diag}(t)/(\alpha+\beta)`;
its condition :math:`W W^\top \preceq \frac{2\rho}{(\alpha+\beta)^2} T^{-1}` reads

.. math:: \big\|\mathrm{diag}(\sqrt{|t|})\, W\big\|_2^2 \le \frac{2s}{\alpha+\beta}.

Nothing is read from metadata: this module finds the pattern in the graph
(:func:`find_blocks`), recovers t from the weights (least squares per hidden channel,
:math:`t_i = \langle G_{:,i}, W_{i,:}\rangle / \|W_{i,:}\|^2`), and *verifies* the inequality in
float64 with a certified upper bound on the left side (certified Gram eigenvalue for dense W,
the FFT bound for convolutions, every rounding error covered).  The block then has the certified
ℓ2 constant (:func:`certify_block`)

.. math:: c = s + \mathrm{Lip}_\varphi\, \|E\|_2\, \|W\|_2, \qquad E = G - W^\top\mathrm{diag}(t),

(the second term covers G's rounding when T was folded into it; :math:`\|E\|_2 \le \|E\|_F`,
:math:`\le k\|E\|_F` for a k×k transposed convolution).  A block whose t has a positive entry,
whose G is not :math:`W^\top\mathrm{diag}(t)` up to rounding, whose activation is not monotone
(α < 0: Proposition 2 needs αβ ≥ 0) or whose inequality fails gets no certificate, and the engine
uses only its generic terms for it.

**Designed terms in LipLT.**  :func:`collapse` replaces each certified block by a cut: a
Lipschitz block of constant 1 followed by the scalar map :math:`c\,\cdot` (so the constant stays a
tensor, differentiable in training).  On the collapsed graph

* the naive recursion (eq. 11) is the **designed bound** (reported only when every recognised
  block is certified): per pair,
  :math:`\|(e_i-e_j)^\top \text{head}\| \cdot \prod c_k \cdot` (norms of the linear maps between
  the blocks), the product of certified per-layer bounds of the paper's section 3;
* the LipLT recursion (eq. 16) is a sound bound too, at most the designed one (Proposition 3).

The LipLT number that :func:`~liplt_cli.lipschitz.engine.compute_bounds` reports on a graph with
certified blocks is the entrywise minimum of LipLT on the graph as it is and LipLT on the
collapsed graph (:func:`with_designed_terms`): both are upper bounds of the same constants, so the
minimum is one, and **LipLT ≤ designed** always holds.  ℓ2 only (Proposition 2 is an ℓ2 result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

import torch

from liplt_cli.graph.graph import LayerGraph
from liplt_cli.graph.linear_ops import Affine, Conv, ConvTranspose, Dense
from liplt_cli.graph.nodes import BlockNode, InputNode, LinearNode, Node
from liplt_cli.lipschitz.norms import certified_top_eigenvalue, conv_fft_bound
from liplt_cli.lipschitz.result import Guarantee, MethodBound

if TYPE_CHECKING:  # pragma: no cover
    from liplt_cli.lipschitz.options import EngineOptions

__all__ = [
    "BlockMatch",
    "BlockCertificate",
    "CertifiedUnitBlock",
    "DESIGNED",
    "find_blocks",
    "certify_block",
    "certify_blocks",
    "collapse",
    "with_designed_terms",
]

DESIGNED = "designed"
_U = 2.0**-53
_RECOGNISE = 1e-4  # G must equal Wᵀ·diag(t) to this relative Frobenius error to be called a Proposition 2 block


@dataclass(frozen=True)
class BlockMatch:
    """Node names of one residual block ``add = scale(entry) + outer([diag](act(inner(entry))))``."""

    add: str
    entry: str
    scale: str
    inner: str
    act: str
    outer: str
    diag: str | None = None  # a diagonal Affine between φ and G (graphs traced from the training module)

    @property
    def internal(self) -> tuple[str, ...]:
        return tuple(n for n in (self.scale, self.inner, self.act, self.diag, self.outer) if n is not None)


@dataclass(frozen=True)
class BlockCertificate:
    """The outcome of :func:`certify_block`: ``constant`` (an ℓ2 Lipschitz upper bound of the
    block) or ``None`` with the ``reason`` verification failed."""

    block: BlockMatch
    constant: float | None
    identity_scale: float | None
    reason: str

    @property
    def certified(self) -> bool:
        return self.constant is not None


@dataclass(eq=False)
class CertifiedUnitBlock:
    """A cut in the recursion: a map with ℓ2 Lipschitz constant at most 1 (a certified block
    divided by its constant, which the linear node after it multiplies back).  It only enters
    bounds; the collapsed graph is never evaluated."""

    label: str
    kind: str = "certified_unit"

    def lipschitz(self, p: float) -> float:
        if p != 2:
            raise ValueError("Proposition 2 certificates are ℓ2 results")
        return 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("a collapsed graph (certified blocks as cuts) only serves bounds; it is not evaluated")

    def attributes(self) -> dict[str, Any]:
        return {"label": self.label}

    def describe(self) -> str:
        return f"certified Proposition 2 block {self.label} (÷ its constant)"


# --------------------------------------------------------------------------- recognition
def _single_input(node: Node) -> str | None:
    return node.inputs[0] if len(node.inputs) == 1 else None


def _match(graph: LayerGraph, add: Node, scale_name: str, branch_name: str, users: dict[str, list[str]]) -> BlockMatch | None:
    scale = graph.node(scale_name)
    if scale.kind != "linear" or not isinstance(scale.op, Affine):
        return None
    entry = _single_input(scale)
    outer = graph.node(branch_name)
    if entry is None or outer.kind != "linear" or not isinstance(outer.op, (Dense, ConvTranspose)):
        return None
    prev = graph.node(outer.inputs[0]) if len(outer.inputs) == 1 else None
    diag = None
    if prev is not None and prev.kind == "linear" and isinstance(prev.op, Affine):
        diag, prev = prev.name, (graph.node(prev.inputs[0]) if len(prev.inputs) == 1 else None)
    if prev is None or prev.kind != "activation":
        return None
    inner = graph.node(prev.inputs[0]) if len(prev.inputs) == 1 else None
    if inner is None or inner.kind != "linear" or not isinstance(inner.op, (Dense, Conv)) or inner.inputs != (entry,):
        return None
    m = BlockMatch(add.name, entry, scale.name, inner.name, prev.name, outer.name, diag)
    # every internal node feeds only the next one, so cutting the block removes them all
    chain = {m.scale: m.add, m.inner: m.act, m.act: m.diag or m.outer, m.outer: m.add}
    if m.diag is not None:
        chain[m.diag] = m.outer
    if any(users[n] != [nxt] for n, nxt in chain.items()):
        return None
    return m


def find_blocks(graph: LayerGraph) -> list[BlockMatch]:
    """Every ``s·x + G φ(Wx + b)`` pattern (an Add of coefficients 1 of a scalar-or-diagonal
    Affine of x and a Dense/ConvTranspose of an activation of a Dense/Conv of the same x), in
    topological order.  Structure only; :func:`certify_block` checks the numbers."""
    users = graph.users()
    found = []
    for node in graph.nodes:
        if node.kind != "sum" or len(node.inputs) != 2 or any(node.coefficient(i) != 1 for i in range(2)):
            continue
        a, b = node.inputs
        m = _match(graph, node, a, b, users) or _match(graph, node, b, a, users)
        if m is not None:
            found.append(m)
    return found


# --------------------------------------------------------------------------- verification
def _fail(block: BlockMatch, why: str) -> BlockCertificate:
    return BlockCertificate(block, None, None, why)


def _rows(op: Dense | Conv | ConvTranspose) -> torch.Tensor:
    """The operator's weight as one row per hidden channel, float64 (Dense W: n×d; a conv kernel
    n×c×k×k: n×(c·k·k); Dense G (d×n): its transpose)."""
    w = op.weight.detach().to(torch.float64)
    if isinstance(op, Dense):
        return w
    return w.reshape(w.shape[0], -1)


def _conv_pair_ok(inner: Conv, outer: ConvTranspose) -> bool:
    """The transposed convolution is the adjoint of a convolution with the inner one's geometry."""
    return (
        inner.weight.dim() == 4 and outer.weight.shape == inner.weight.shape
        and tuple(inner.stride) == (1, 1) and tuple(outer.stride) == (1, 1)
        and tuple(inner.dilation) == (1, 1) and tuple(outer.dilation) == (1, 1)
        and inner.groups == 1 and outer.groups == 1
        and tuple(inner.padding) == tuple(outer.padding) and tuple(outer.output_padding) == (0, 0)
        and tuple(outer.in_shape) == tuple(inner.out_shape) and tuple(outer.out_shape) == tuple(inner.in_shape)
    )


def _per_channel(scale: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A diagonal Affine's scale as one value per hidden channel, or None if it varies inside one."""
    full = torch.broadcast_to(scale.detach().to(torch.float64), shape)
    per = full.reshape(shape[0], -1)
    if not bool((per == per[:, :1]).all()):
        return None
    return per[:, 0]


def _certified_norm_dense(a: torch.Tensor) -> float:
    """Upper bound on ‖A‖₂ of a float64 matrix: certified top eigenvalue of the computed Gram
    matrix plus the Gram's rounding (≤ γ_m ‖A‖_F², m the dot length)."""
    m = a if a.shape[0] <= a.shape[1] else a.T
    fro2 = float((m * m).sum())
    if fro2 == 0.0:
        return 0.0
    gram = m @ m.T
    top = float(certified_top_eigenvalue(gram, gap=1e-10))
    gamma = m.shape[1] * _U / (1 - m.shape[1] * _U)
    return math.sqrt(top + 2 * gamma * fro2 * (1 + 4 * _U)) * (1 + 4 * _U)


def _certified_norm_conv(kernel: torch.Tensor, inner: Conv) -> float:
    """Upper bound on the ℓ2 norm of the zero-padded stride-1 convolution with ``kernel``: the FFT
    bound (a circulant embedding, :func:`conv_fft_bound`) plus an absolute margin for its float64
    round-off (FFT error ≤ 5·log₂(N)·u per coefficient relative to the ℓ1 mass of a channel pair's
    taps, ≤ k‖taps‖₂; the SVD's error ≤ a few u‖K̂‖; both ≤ 64·log₂(N)·u·k·‖K‖_F with room)."""
    op = replace(inner, weight=kernel, bias=None)
    value = float(conv_fft_bound(op))
    k = kernel.shape[-1] * kernel.shape[-2]
    n = max(2, math.prod(inner.in_shape[1:]) * 4)
    margin = 64 * math.log2(n) * _U * math.sqrt(k) * float(torch.linalg.vector_norm(kernel))
    return (value + margin) * (1 + 4 * _U)


def certify_block(graph: LayerGraph, block: BlockMatch) -> BlockCertificate:
    """Re-derive the Proposition 2 certificate of ``block`` from its weights (module docstring).

    Returns the certified ℓ2 constant c, or the reason there is none.  Never trusts a stored
    number: s, t, W and the activation's slopes all come from the graph's own tensors.
    """
    scale_op = graph.node(block.scale).op
    inner_op = graph.node(block.inner).op
    outer_op = graph.node(block.outer).op
    act = graph.node(block.act).activation
    s_all = scale_op.scale.detach().to(torch.float64).reshape(-1)
    s = float(s_all[0]) if s_all.numel() else math.nan
    if not (s_all.numel() and bool((s_all == s_all[0]).all()) and math.isfinite(s) and s > 0):
        return _fail(block, "the identity branch is not one positive scalar √ρ")
    alpha, beta = float(act.alpha), float(act.beta)
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha >= 0 and alpha + beta > 0):
        return _fail(block, f"activation slopes [{alpha:.4g}, {beta:.4g}]: Proposition 2 needs 0 ≤ α and α + β > 0")
    if isinstance(inner_op, Dense) != isinstance(outer_op, Dense):
        return _fail(block, "inner and outer maps are not a dense pair or a convolution pair")
    if isinstance(inner_op, Dense):
        w = _rows(inner_op)
        if tuple(outer_op.weight.shape) != (w.shape[1], w.shape[0]):
            return _fail(block, "G does not have the shape of Wᵀ")
        g = outer_op.weight.detach().to(torch.float64).T  # n×d, row i = G[:, i]
        spread = 1.0
    else:
        if not _conv_pair_ok(inner_op, outer_op):
            return _fail(block, "the transposed convolution is not the adjoint of the inner convolution's geometry")
        w = _rows(inner_op)
        g = _rows(outer_op)
        spread = float(math.sqrt(inner_op.weight.shape[-1] * inner_op.weight.shape[-2]))
    if block.diag is not None:
        d = _per_channel(graph.node(block.diag).op.scale, tuple(graph.node(block.act).out_shape))
        if d is None:
            return _fail(block, "the scaling between φ and G is not one value per hidden channel")
        g = g * d[:, None]  # exact up to one rounding per entry, covered below
    if not (torch.isfinite(w).all() and torch.isfinite(g).all()):
        return _fail(block, "non-finite weights")
    # t by least squares per hidden channel (0 for a zero row of W)
    row2 = (w * w).sum(dim=1)
    t = torch.where(row2 > 0, (g * w).sum(dim=1) / row2.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(row2))
    tw = t[:, None] * w
    e = g - tw
    e_fro = float(torch.linalg.vector_norm(e))
    g_fro = float(torch.linalg.vector_norm(g))
    if e_fro > _RECOGNISE * max(g_fro, torch.finfo(torch.float64).tiny):
        return _fail(block, f"G is not Wᵀ·diag(t) (relative residual {e_fro / max(g_fro, 1e-300):.2e})")
    if bool((t > 0).any()):
        return _fail(block, "G = Wᵀ·diag(t) with a positive t_i: not a Proposition 2 layer (T would not be ≻ 0)")
    # the LMI: ‖diag(√|t|) W‖₂² ≤ 2s/(α+β), with a certified upper bound on the left side
    root = torch.sqrt(t.abs())
    a = root[:, None] * w
    a_fro = float(torch.linalg.vector_norm(a))
    if isinstance(inner_op, Dense):
        sigma = _certified_norm_dense(a)
    else:
        sigma = _certified_norm_conv(a.reshape(inner_op.weight.shape), inner_op)
    sigma += 4 * _U * a_fro * spread * (1 + 2 * (a.numel() + 2) * _U)  # rounding of √|t| and of the products forming A
    lhs = sigma * sigma * (1 + 4 * _U)
    rhs = 2 * s / (alpha + beta) * (1 - 4 * _U)
    if not lhs <= rhs:
        return _fail(block, f"the Proposition 2 condition fails: ‖diag(√|t|)W‖² ≤ {lhs:.9g} is not ≤ 2√ρ/(α+β) = {rhs:.9g}")
    # G's departure from Wᵀdiag(t): E (computed with ≤ 2u(|G| + |tW|) error per entry)
    fro = 1 + 2 * (w.numel() + 2) * _U  # the computed Frobenius norms' own rounding
    e_norm = (e_fro + 2 * _U * (g_fro + float(torch.linalg.vector_norm(tw)))) * spread * fro
    w_norm = float(torch.linalg.vector_norm(w)) * spread * fro
    lip_phi = max(abs(alpha), abs(beta))
    constant = (s + lip_phi * e_norm * w_norm) * (1 + 8 * _U)
    return BlockCertificate(block, constant, s, f"certified: √ρ = {s:.9g}, fold residual ≤ {constant - s:.3g}")


def certify_blocks(graph: LayerGraph) -> list[BlockCertificate]:
    """:func:`certify_block` for every block :func:`find_blocks` recognises."""
    return [certify_block(graph, b) for b in find_blocks(graph)]


# --------------------------------------------------------------------------- collapsed graph
def collapse(graph: LayerGraph, constants: Mapping[str, float | torch.Tensor], prefix: str = "") -> LayerGraph:
    """``graph`` with each certified block (keyed by its Add node's name in ``constants``) replaced
    by a cut: a :class:`CertifiedUnitBlock` on the block's input, then the scalar map ``c·`` under
    the Add node's name.  The block's internal nodes are dropped.  ``prefix`` renames every node
    (so warm-start vectors of the two graphs never share a key).  ``c`` may be a tensor with a
    gradient (training)."""
    blocks = {b.add: b for b in find_blocks(graph) if b.add in constants}
    dropped = {n for b in blocks.values() for n in b.internal}

    def name(n: str) -> str:
        return prefix + n

    nodes: list[Node] = []
    dtype, device = graph.dtype, graph.device
    for node in graph.nodes:
        if node.name in dropped:
            continue
        if node.kind == "input":
            nodes.append(InputNode(name(node.name), node.out_shape, node.source))
            continue
        b = blocks.get(node.name)
        if b is None:
            nodes.append(replace(node, name=name(node.name), inputs=tuple(name(i) for i in node.inputs)))
            continue
        cut = name(node.name) + "/cut"
        shape = tuple(node.out_shape)
        nodes.append(BlockNode(cut, (name(b.entry),), shape, CertifiedUnitBlock(node.name), source="certified block"))
        c = constants[node.name]
        c = c.reshape(()) if isinstance(c, torch.Tensor) else torch.tensor(float(c), dtype=dtype, device=device)
        op = Affine(c, None, shape, "certified constant of the block")
        nodes.append(LinearNode(name(node.name), (cut,), op, source="certified block"))
    return LayerGraph(tuple(nodes), name(graph.output), graph.notes)


# --------------------------------------------------------------------------- engine hook
def _entrywise_min(a: MethodBound, b: MethodBound) -> tuple[float, list[float], list[list[float]]]:
    return (
        min(a.global_, b.global_),
        [min(x, y) for x, y in zip(a.per_class, b.per_class)],
        [[min(x, y) for x, y in zip(ra, rb)] for ra, rb in zip(a.pairwise, b.pairwise)],
    )


def with_designed_terms(
    graph: LayerGraph, results: dict[str, MethodBound], options: "EngineOptions", want_designed: bool,
) -> dict[str, MethodBound]:
    """Tighten sound ℓ2 LipLT ``results`` of ``graph`` with the certified blocks' designed terms
    (entrywise min with LipLT on the collapsed graph) and add the ``designed`` bound when
    ``want_designed``.  Graphs without a certified block are returned unchanged."""
    from liplt_cli.lipschitz.engine import compute_bounds

    certificates = certify_blocks(graph)
    good = {c.block.add: c.constant for c in certificates if c.certified}
    if not good:
        return results
    failed = [c for c in certificates if not c.certified]
    collapsed = collapse(graph, good)
    sub = compute_bounds(collapsed, options, methods=("naive", "liplt"), designed_terms=False).methods
    note = (
        f"{len(good)} Proposition 2 block(s) re-certified from the weights"
        + (f" ({len(failed)} not: {failed[0].reason})" if failed else "")
    )
    out = dict(results)
    if "liplt" in results:
        generic, cut = results["liplt"], sub["liplt"]
        g, per, pair = _entrywise_min(generic, cut)
        used = g < generic.global_ or per != generic.per_class or pair != generic.pairwise
        # a block's certified constant is an upper bound, whatever the labels of the norm terms
        labels = [generic.guarantee, cut.guarantee] + ([Guarantee.UPPER_BOUND] if used else [])
        counts = {k: generic.term_counts.get(k, 0) + cut.term_counts.get(k, 0) for k in set(generic.term_counts) | set(cut.term_counts)}
        out["liplt"] = replace(
            generic, global_=g, per_class=per, pairwise=pair, guarantee=Guarantee.weakest(labels), term_counts=counts,
            seconds=generic.seconds + cut.seconds,
            notes=generic.notes + (
                f"LipLT uses each certified block's designed bound as one more term (entrywise min with the "
                f"generic recursion), so LipLT ≤ designed; {note}",
            ),
        )
    if want_designed and not failed:  # the designed product is claimed only when every block is certified
        d = sub["naive"]
        out[DESIGNED] = replace(
            d, method=DESIGNED, guarantee=Guarantee.weakest([d.guarantee, Guarantee.UPPER_BOUND]),
            notes=(f"product of the certified per-block √ρ_i and the norms of the maps between blocks; {note}",),
        )
    return out
