r"""Lipschitz-bounded residual layers of Proposition 2 (dense and convolutional).

For a diagonal :math:`T \succ 0` and :math:`\rho > 0` with

.. math:: W W^\top \preceq \frac{2\rho}{(\alpha+\beta)^2}\, T^{-1},

the residual layer (eq. 10 of the paper)

.. math:: h(x) = \sqrt\rho\, x - \frac{\alpha+\beta}{\sqrt\rho}\, W^\top T\, \varphi(W x + b)

is :math:`\sqrt\rho`-Lipschitz in ℓ2 when :math:`\varphi` is slope-restricted in
:math:`[\alpha, \beta]` with :math:`\alpha \ge 0` (the bias b does not change Lipschitz constants).
Proof (LMI (9) with :math:`H = \sqrt\rho I`, :math:`G = -\frac{\alpha+\beta}{\sqrt\rho} W^\top T`):
the off-diagonal block vanishes, the top-left block is :math:`-2\alpha\beta W^\top T W \preceq 0`
(this needs :math:`\alpha\beta \ge 0`), and the bottom-right block
:math:`-2T + \frac{(\alpha+\beta)^2}{\rho} T W W^\top T \preceq 0` is the condition above.
Monotonicity is necessary: in 1-d with :math:`w = 1`, :math:`T = 2/(\alpha+\beta)^2`,
:math:`\rho = 1`, :math:`h' = 1 - 2\varphi'/(\alpha+\beta)`, which is
:math:`(\beta-\alpha)/(\alpha+\beta) > 1` where :math:`\varphi' = \alpha < 0`.  Activations with
:math:`\alpha < 0` (SiLU, GELU) are therefore refused.

**Choosing T from W (Theorem 2's list).**  Write :math:`T^{-1} = \frac{(\alpha+\beta)^2}{2\rho} D`
with a diagonal :math:`D \succeq W W^\top`; then the condition holds for *any* W, and the layer is

.. math:: h(x) = \sqrt\rho\,\Big(x - \frac{2}{\alpha+\beta}\, W^\top D^{-1} \varphi(Wx + b)\Big),

i.e. :math:`\sqrt\rho` times the SLL layer of Araujo et al. (2023).  The three choices of D:

* ``sn``: :math:`D = \|W\|_2^2 I`;
* ``aol``: :math:`D_{ii} = \sum_j |W W^\top|_{ij}`;
* ``sll``: :math:`D_{ii} = \sum_j |W W^\top|_{ij}\, q_j / q_i` with a learnable :math:`q > 0`
  (``aol`` is ``sll`` with q = 1).

For symmetric M and q > 0, :math:`x^\top M x \le \sum_{ij} |M_{ij}||x_i||x_j| \le \sum_{ij}
|M_{ij}| \tfrac12 (x_i^2 q_j/q_i + x_j^2 q_i/q_j) = \sum_i x_i^2 \sum_j |M_{ij}| q_j/q_i`, so
:math:`M \preceq D` for the ``aol``/``sll`` D (Gershgorin-type bound).

**Convolutions.**  W is a stride-1 convolution with an odd k×k kernel K (n output channels, c
input channels) and zero padding :math:`p = (k-1)/2`, so input and output have the same spatial
size; :math:`W^\top` is the transposed convolution with the same kernel and padding (its exact
adjoint).  T is one value per output channel.  With the kernel autocorrelation
:math:`A_{ij}(\delta) = \sum_{a,u} K_{i,a,u} K_{j,a,u+\delta}` (a ``conv2d`` of K with itself,
padding k−1), the ``aol``/``sll`` D use :math:`M_{ij} = \sum_\delta |A_{ij}(\delta)|` in place of
:math:`|W W^\top|_{ij}`.  *Why this holds for the zero-padded operator:* the rows of
:math:`|WW^\top|` at the image border are partial sums of autocorrelations and need not be bounded
by :math:`\sum_\delta |A_{ij}(\delta)|` entrywise, so the argument goes through an embedding.  Let
E place the image in an N×N torus (N ≥ H + 2p), C be the circular convolution on the torus and P
select the output positions; no wrap-around reaches a kept output, so W = P C E.  E is an
isometry, so :math:`E E^\top \preceq I` and :math:`W W^\top = P C E E^\top C^\top P^\top \preceq
P C C^\top P^\top =: M'`, a principal submatrix of :math:`C C^\top`, whose entries are
:math:`M'_{(i,x),(j,y)} = A_{ij}(x - y)` (no aliasing for N ≥ 2k−1).  The Gershgorin bound above
applied to M' with :math:`q_{(i,x)} = q_i` gives row sums over a *subset* of shifts, each shift
at most once, hence :math:`M' \preceq D` with :math:`D_{(i,x)} = \sum_j \sum_\delta
|A_{ij}(\delta)| q_j/q_i`, and :math:`W W^\top \preceq M' \preceq D`.  For ``sn``,
:math:`\|W\|_2 \le \|C\|_2 = \max_\omega \sigma_{\max}(\hat K(\omega))` on the N-grid (the FFT
bound of :mod:`liplt_cli.lipschitz.norms`).

**Training versus certified scales.**  In training mode the layer computes D in the parameters'
precision and, for ``sn``, :math:`\|W\|_2` by warm-started power iteration (an *estimate*, from
below).  In eval mode (and for export) it uses *certified* scales, computed in float64 from the
current parameters and cached until they change:

* ``sn``: :math:`\|W\|_2` from a certified eigenvalue (dense) or the FFT bound (conv), an
  upper bound, plus a relative margin;
* ``aol``/``sll``: D plus the rounding error of the computed Gram entries,
  :math:`\gamma_m r_i \sum_j r_j q_j / q_i` (:math:`r_i = \|W_i\|`, m the dot-product length,
  times :math:`(2k-1)^2` shifts for convolutions), the whole times :math:`1 + 2\gamma` for the
  sums;
* the stored scale :math:`t = -\frac{2 s}{(\alpha+\beta) D}` (s the stored :math:`\sqrt\rho`) is
  shrunk by :math:`10^{-12}` and rounded towards zero in the parameters' dtype;
* s itself is :math:`\sqrt\rho` in the parameters' dtype, moved to the next float when it is
  exactly 1 (see :meth:`Prop2Layer.certified_scales`): any stored s is certified, since t is
  computed from it.

So the *stored* eval-mode layer :math:`h(x) = s\,x + W^\top \mathrm{diag}(t)\, \varphi(Wx+b)`
satisfies the LMI in exact arithmetic: :math:`D_{\mathrm{eff}} = -2s/((\alpha+\beta)t) \ge D
\succeq W W^\top`, hence it is s-Lipschitz, s being its :attr:`certified_scale`.

**Layer graphs stay current.**  The eval-mode forward reads the scales from buffers
(``identity_scale``, ``t_scale``) and W itself (shared, and ``W.t()`` is a view), so a layer graph
traced once from the module (:func:`liplt_cli.load.graph_from_module`) follows the parameters as
long as every forward refreshes the buffers in place: a training-mode forward writes its
(differentiable) scales' values, an eval-mode forward the certified ones.  On that graph T is a
constant; a training-mode forward also keeps its differentiable scales in ``live_scales``, which
:mod:`liplt_cli.train.prop2_training` substitutes into the graph so that the CRM constants are
differentiable in W, q and ρ through T and √ρ too.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from liplt_cli.errors import ArgumentError
from liplt_cli.graph.slopes import Activation, make_activation

__all__ = [
    "T_CHOICES",
    "certified_spectral_norm",
    "ACTIVATION_MODULES",
    "Prop2Layer",
    "Prop2Dense",
    "Prop2Conv",
    "slope_activation",
]

T_CHOICES = ("sn", "aol", "sll")
"""Diagonal T choices of Theorem 2: spectral normalisation, AOL, SLL (learnable q)."""

#: Activations by name, as the torch modules the loader recognises; GELU and SiLU (α < 0) are
#: listed so that :func:`slope_activation` can refuse them with the reason.
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

_U64 = 2.0**-53
_SHRINK = 1e-12  # relative shrink of the stored scale t: covers float64 round-off in computing it
_SN_MARGIN = 1e-7  # relative margin on the certified spectral norm (float64 SVD/eigenvalue round-off)


def _gamma(m: int) -> float:
    """Higham's :math:`\\gamma_m = m u / (1 - m u)` for float64 (u = 2⁻⁵³)."""
    return m * _U64 / (1 - m * _U64)


def slope_activation(name: str) -> tuple[nn.Module, Activation]:
    """The torch module of activation ``name`` and its slope bounds (from :func:`make_activation`).

    Raises :class:`ArgumentError` for unknown names and for activations that are not monotone
    (α < 0), for which Proposition 2 does not hold (see the module docstring).
    """
    key = name.lower()
    if key not in ACTIVATION_MODULES:
        raise ArgumentError(f"unknown activation '{name}'; choose from {', '.join(ACTIVATION_MODULES)}")
    slopes = make_activation(key)
    if slopes.alpha < 0:
        raise ArgumentError(
            f"activation '{name}' has slopes in [{slopes.alpha:.4g}, {slopes.beta:.4g}] with a negative lower "
            "slope; Proposition 2 layers need a monotone activation (α ≥ 0), e.g. relu, tanh, sigmoid, "
            "leaky_relu, elu, softplus"
        )
    if not slopes.alpha + slopes.beta > 0:
        raise ArgumentError(f"activation '{name}' has α + β = 0; Proposition 2 layers need α + β > 0")
    return ACTIVATION_MODULES[key](), slopes


@contextlib.contextmanager
def _jit_tracing_paused() -> Iterator[None]:
    """Run a block without recording it in an active TorchScript trace (ONNX export)."""
    state = torch._C._get_tracing_state() if hasattr(torch._C, "_get_tracing_state") else None
    if state is None:
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def _toward_zero(x64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x64`` in ``dtype``, rounded towards zero (so ``|result| <= |x64|`` exactly)."""
    y = x64.to(dtype)
    too_big = y.to(torch.float64).abs() > x64.abs()
    return torch.where(too_big, torch.nextafter(y, torch.zeros_like(y)), y)


def certified_spectral_norm(matrix64: torch.Tensor) -> torch.Tensor:
    r"""Upper bound on :math:`\|W\|_2` of a float64 matrix, within about 1e-9 of it.

    With G the computed Gram matrix of the smaller side (entrywise error at most
    :math:`\gamma_m |W||W|^\top`, so :math:`\|\hat G - G\|_2 \le \gamma_m \|W\|_F^2`), the top
    eigenvalue :math:`\hat\lambda` from ``eigvalsh`` is raised to :math:`t = \hat\lambda(1 + 10^{-9}) + \delta`
    and certified by a successful Cholesky factorisation of :math:`tI - \hat G`, which proves
    :math:`\lambda_{\max}(\hat G) \le t + \delta` (:math:`\delta = 2(n+1)^2 u\,\mathrm{tr}\,\hat G` bounds the
    factorisation's backward error).  If Cholesky fails, :math:`\mathrm{tr}\,\hat G` (always an
    upper bound) is used.
    """
    w = matrix64.reshape(matrix64.shape[0], -1).to(torch.float64)
    m = w if w.shape[0] <= w.shape[1] else w.T
    n, length = m.shape
    gram = m @ m.T
    trace = torch.diagonal(gram).sum().clamp_min(0.0)
    fro2 = float(trace) * (1 + 2 * _gamma(length + n))
    if fro2 == 0.0:
        return torch.zeros((), dtype=torch.float64)
    delta = 2 * (n + 1) ** 2 * _U64 * float(trace)
    top = float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0))
    bound = fro2 + delta
    eye = torch.eye(n, dtype=torch.float64)
    for bump in (1e-9, 1e-6):
        t = top * (1 + bump) + delta
        if int(torch.linalg.cholesky_ex(t * eye - gram)[1]) == 0:
            bound = t + delta
            break
    return torch.sqrt(torch.tensor(min(bound, fro2 + delta) + _gamma(length) * fro2, dtype=torch.float64))


class Prop2Layer(nn.Module):
    r"""Base class: :math:`h(x) = \sqrt\rho\,x - \frac{\alpha+\beta}{\sqrt\rho} W^\top T \varphi(Wx+b)`.

    Parameters: ``weight`` (W), ``bias`` (b), ``log_rho`` (:math:`\log\rho`, a parameter when ρ
    is learned, a buffer when fixed), ``log_q`` (SLL only).  Subclasses supply W and its
    adjoint, the Gram bound M and the certified spectral norm.
    """

    weight: nn.Parameter
    bias: nn.Parameter
    identity_scale: torch.Tensor
    t_scale: torch.Tensor

    def __init__(
        self,
        channels: int,
        activation: str = "relu",
        t_choice: str = "sll",
        rho: float | None = None,
        rho_init: float = 1.0,
        power_iterations: int = 1,
    ):
        super().__init__()
        choice = t_choice.lower()
        if choice not in T_CHOICES:
            raise ArgumentError(f"unknown T choice '{t_choice}'; choose from {', '.join(T_CHOICES)}")
        start = rho if rho is not None else rho_init
        if not (isinstance(start, (int, float)) and math.isfinite(start) and start > 0):
            raise ArgumentError(f"ρ must be a positive number, got {start}")
        if power_iterations < 1:
            raise ArgumentError(f"power iterations must be positive, got {power_iterations}")
        self.channels = int(channels)
        self.t_choice = choice
        self.activation_name = activation.lower()
        self.act, self.slopes = slope_activation(activation)
        self.alpha, self.beta = float(self.slopes.alpha), float(self.slopes.beta)
        self.power_iterations = int(power_iterations)
        log_rho = torch.tensor(math.log(start))
        if rho is None:
            self.log_rho = nn.Parameter(log_rho)
        else:
            self.register_buffer("log_rho", log_rho)
        self.rho_learned = rho is None
        self.register_parameter("log_q", nn.Parameter(torch.zeros(channels)) if choice == "sll" else None)
        self._cache_key: tuple | None = None
        self.live_scales: tuple[torch.Tensor, torch.Tensor] | None = None

    def __getstate__(self) -> dict:
        # copies and pickles drop this step's differentiable scales (non-leaf tensors)
        state = dict(self.__dict__)
        state["live_scales"] = None
        return state

    # ----------------------------------------------------------------- operator (subclasses)
    def apply_w(self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def apply_wt(self, u: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def abs_gram(self, weight: torch.Tensor) -> torch.Tensor:
        """n×n matrix M with :math:`W W^\\top \\preceq` (Gershgorin of) M, entrywise ≥ 0."""
        raise NotImplementedError

    def gram_rounding(self, weight: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """(r, γ, terms): |computed M_ij − M_ij| ≤ γ r_i r_j in float64, and the number of
        non-negative terms summed per row of D."""
        raise NotImplementedError

    def certified_norm(self, weight64: torch.Tensor) -> torch.Tensor:
        """Upper bound on :math:`\\|W\\|_2` (float64)."""
        raise NotImplementedError

    def _sn_vector_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _scale_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _init_buffers(self) -> None:
        """Called by subclasses once ``weight`` exists."""
        dtype = self.weight.dtype
        self.register_buffer("identity_scale", torch.ones((), dtype=dtype), persistent=False)
        self.register_buffer("t_scale", torch.zeros(self._scale_shape(), dtype=dtype), persistent=False)
        if self.t_choice == "sn":
            v = torch.randn(self._sn_vector_shape(), dtype=dtype)
            self.register_buffer("sn_vector", v / torch.linalg.vector_norm(v))
        self.register_load_state_dict_post_hook(lambda module, _keys: setattr(module, "_cache_key", None))
        self.refresh()

    # ----------------------------------------------------------------- scales
    @property
    def rho(self) -> torch.Tensor:
        return torch.exp(self.log_rho)

    def _estimated_norm(self) -> torch.Tensor:
        """‖W‖₂ by warm-started power iteration (an estimate from below), differentiable in W."""
        with torch.no_grad():
            v = self.sn_vector
            for _ in range(self.power_iterations):
                v = self.apply_wt(self.apply_w(v, bias=False))
                v = v / torch.linalg.vector_norm(v).clamp_min(torch.finfo(v.dtype).tiny)
            self.sn_vector.copy_(v)
        return torch.linalg.vector_norm(self.apply_w(v.detach(), bias=False))

    def _raw(self, name: str) -> torch.Tensor | None:
        """A parameter or buffer itself (never an fx proxy: used while the module is traced)."""
        if name in self._parameters:
            return self._parameters[name]
        return self._buffers.get(name)

    def sound_gram_diagonal(self, weight64: torch.Tensor, q64: torch.Tensor | None) -> torch.Tensor:
        """Diagonal D (shape (n,)) with :math:`W W^\\top \\preceq D` in exact arithmetic, from float64
        inputs, every rounding error of its computation covered (see module docstring)."""
        n = self.channels
        if self.t_choice == "sn":
            sigma = self.certified_norm(weight64) * (1 + _SN_MARGIN)
            return (sigma**2 * (1 + 4 * _U64)).expand(n).clone()
        m = self.abs_gram(weight64)
        r, gamma, terms = self.gram_rounding(weight64)
        if q64 is None:
            d = m.sum(dim=1) + gamma * r * r.sum()
        else:
            d = (m @ q64) / q64 + gamma * r * (r * q64).sum() / q64
        return d * (1 + 2 * _gamma(terms + n + 4))

    def training_gram_diagonal(self) -> torch.Tensor:
        """D in the parameters' precision, differentiable; ``sn`` by power iteration (an estimate)."""
        if self.t_choice == "sn":
            return (self._estimated_norm() ** 2).expand(self.channels)
        q = None if self.log_q is None else torch.exp(self.log_q)
        m = self.abs_gram(self.weight)
        return m.sum(dim=1) if q is None else (m @ q) / q

    def _floor(self, dtype: torch.dtype) -> float:
        # raising D keeps W Wᵀ ⪯ D; the floor only avoids dividing by zero for zero rows of W
        return torch.finfo(dtype).tiny ** 0.5

    def training_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ρ, t) with t = −2√ρ/((α+β) D), differentiable (training mode)."""
        d = self.training_gram_diagonal().clamp_min(self._floor(self.weight.dtype))
        s = torch.exp(0.5 * self.log_rho)
        t = -2.0 * s / ((self.alpha + self.beta) * d)
        return s, t.reshape(self._scale_shape())

    @torch.no_grad()
    def certified_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t) in the parameters' dtype such that the layer with these stored scales is
        s-Lipschitz in exact arithmetic (see module docstring)."""
        weight, log_rho, log_q = self._raw("weight"), self._raw("log_rho"), self._raw("log_q")
        dtype = weight.dtype
        s = torch.exp(0.5 * log_rho.detach()).to(dtype)
        # the loader drops multiplications by exactly 1, which would freeze a graph traced at
        # ρ = 1; any stored s is certified (t is computed from it), so take the next float
        s = torch.where(s == 1, torch.nextafter(s, torch.full_like(s, 2.0)), s)
        q64 = None if log_q is None else torch.exp(log_q.detach().to(torch.float64))
        d = self.sound_gram_diagonal(weight.detach().to(torch.float64), q64).clamp_min(self._floor(dtype))
        t64 = -2.0 * s.to(torch.float64) / ((self.alpha + self.beta) * d) * (1 - _SHRINK)
        return s, _toward_zero(t64, dtype).reshape(self._scale_shape())

    def _key(self) -> tuple:
        tensors = [self._raw(n) for n in ("weight", "log_rho", "log_q")]
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors if t is not None)

    @torch.no_grad()
    def refresh(self) -> None:
        """Write the certified scales into ``identity_scale`` / ``t_scale`` (cached until the
        parameters change); never recorded by a TorchScript trace."""
        with _jit_tracing_paused():
            key = self._key()
            if key == self._cache_key:
                return
            s, t = self.certified_scales()
            self._buffers["identity_scale"].copy_(s)
            self._buffers["t_scale"].copy_(t)
            self._cache_key = self._key()

    @property
    def certified_scale(self) -> float:
        """The stored eval-mode :math:`\\sqrt\\rho`: an upper bound on the layer's ℓ2 Lipschitz
        constant in eval mode (refreshes the scales first)."""
        self.refresh()
        return float(self.identity_scale)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            s, t = self.training_scales()
            # the differentiable scales of this step, for the training bound (prop2_training)
            self.live_scales = (s, t)
            with torch.no_grad():
                self._buffers["identity_scale"].copy_(s.detach())
                self._buffers["t_scale"].copy_(t.detach())
            self._cache_key = None
        else:
            self.live_scales = None
            self.refresh()
            s, t = self.identity_scale, self.t_scale
        return x * s + self.apply_wt(self.act(self.apply_w(x)) * t)

    def extra_repr(self) -> str:
        rho = f"ρ={'learned' if self.rho_learned else f'{float(self.rho):g}'}"
        return f"channels={self.channels}, T={self.t_choice}, activation={self.activation_name}, {rho}"


class Prop2Dense(Prop2Layer):
    r"""Dense Proposition 2 layer on vectors of size ``features``; W is ``hidden × features``
    (``hidden`` defaults to ``features``)."""

    def __init__(
        self,
        features: int,
        hidden: int | None = None,
        activation: str = "relu",
        t_choice: str = "sll",
        rho: float | None = None,
        rho_init: float = 1.0,
        power_iterations: int = 1,
    ):
        hidden = int(hidden or features)
        super().__init__(hidden, activation, t_choice, rho, rho_init, power_iterations)
        self.features = int(features)
        layer = nn.Linear(features, hidden)  # the usual initialisation
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self._init_buffers()

    def _scale_shape(self) -> tuple[int, ...]:
        return (self.channels,)

    def _sn_vector_shape(self) -> tuple[int, ...]:
        return (1, self.features)

    def apply_w(self, x, weight=None, bias=True):
        return F.linear(x, self.weight if weight is None else weight, self.bias if bias else None)

    def apply_wt(self, u, weight=None):
        return F.linear(u, (self.weight if weight is None else weight).t())

    def abs_gram(self, weight):
        return (weight @ weight.T).abs()

    def gram_rounding(self, weight):
        r = torch.linalg.vector_norm(weight, dim=1)
        return r, _gamma(weight.shape[1]), weight.shape[0]

    def certified_norm(self, weight64):
        return certified_spectral_norm(weight64)


class Prop2Conv(Prop2Layer):
    r"""Convolutional Proposition 2 layer: W a stride-1 ``kernel``×``kernel`` convolution (odd
    kernel, zero padding ``(kernel−1)/2``) from ``channels`` to ``hidden`` channels, Wᵀ the
    transposed convolution with the same kernel.  ``spatial`` (H, W) is the input's size; it is
    needed by ``sn`` (power-iteration vector, FFT grid)."""

    def __init__(
        self,
        channels: int,
        spatial: tuple[int, int],
        hidden: int | None = None,
        kernel: int = 3,
        activation: str = "relu",
        t_choice: str = "sll",
        rho: float | None = None,
        rho_init: float = 1.0,
        power_iterations: int = 1,
    ):
        if kernel < 1 or kernel % 2 == 0:
            raise ArgumentError(f"Proposition 2 convolutions need an odd kernel size, got {kernel}")
        hidden = int(hidden or channels)
        super().__init__(hidden, activation, t_choice, rho, rho_init, power_iterations)
        self.in_channels = int(channels)
        self.spatial = (int(spatial[0]), int(spatial[1]))
        self.kernel = int(kernel)
        self.padding = (self.kernel - 1) // 2
        layer = nn.Conv2d(channels, hidden, kernel, padding=self.padding)
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())
        self._init_buffers()

    def _scale_shape(self) -> tuple[int, ...]:
        return (self.channels, 1, 1)

    def _sn_vector_shape(self) -> tuple[int, ...]:
        return (1, self.in_channels, *self.spatial)

    def apply_w(self, x, weight=None, bias=True):
        return F.conv2d(x, self.weight if weight is None else weight, self.bias if bias else None, padding=self.padding)

    def apply_wt(self, u, weight=None):
        return F.conv_transpose2d(u, self.weight if weight is None else weight, padding=self.padding)

    def abs_gram(self, weight):
        # A[i, j, δ] = Σ_{a,u} K[i,a,u+δ] K[j,a,u]: cross-correlation of the kernel with itself
        auto = F.conv2d(weight, weight, padding=self.kernel - 1)
        return auto.abs().sum(dim=(2, 3))

    def gram_rounding(self, weight):
        n, c, k, _ = weight.shape
        r = torch.linalg.vector_norm(weight.reshape(n, -1), dim=1)
        shifts = (2 * k - 1) ** 2
        return r, shifts * _gamma(c * k * k), shifts * n

    def certified_norm(self, weight64):
        from liplt_cli.graph.linear_ops import Conv
        from liplt_cli.lipschitz.norms import conv_fft_bound

        h, w = self.spatial
        op = Conv(weight64, None, (1, 1), (self.padding, self.padding), (1, 1), 1,
                  (self.in_channels, h, w), (self.channels, h, w))
        return conv_fft_bound(op)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, kernel={self.kernel}, spatial={self.spatial}, " + super().extra_repr()
