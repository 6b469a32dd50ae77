"""Linear-recurrent and state-space layers: LRU, S4D, S5, selective SSM (Mamba S6), RG-LRU (Griffin).

Every layer here is a *diagonal linear* recurrence ``h_t = a_t * h_{t-1} + b_t`` (complex for LRU/S4D/S5, real
for S6/RG-LRU; ``a`` constant in time for LRU/S4D/S5, input-dependent for S6/RG-LRU), wrapped in position-wise
maps. The recurrence runs through :func:`lrd.scan.linear_scan` in any of its modes (field ``scan_mode``, default
``"associative"``, and ``chunk_size`` for ``"chunked"``); everything else is computed for all steps at once,
outside the scan. Modules only create parameters and then call the pure functions of this file, which the tests
compare with loops over the papers' equations.

Conventions shared by all layers:

* ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]`` for any ``d_in``. A layer whose equations
  need its input to have the model width ``H = hidden_size`` (a skip ``D * u`` or a gate acting on ``u``) first
  applies a linear projection ``u = x W_in + b_in`` (params ``input_kernel``, ``input_bias``) **only when**
  ``d_in != hidden_size``; inside a block model (``d_in == d_model``) the layer is exactly the paper's.
* Complex quantities are stored as separate real and imaginary float32 parameters (``*_re``, ``*_im``), so
  optimizers and :func:`lrd.models.count_params` see real numbers only.
* The gradient probe (``probe_variable``) has the shape of the recurrent state, batch-major, e.g.
  ``complex64[time, batch, state]`` for LRU; ``grad`` with respect to it is ``dL/dh_t``.
* Complex diagonal layers with real inputs and outputs (S4D, S5) keep one state of each conjugate pair and read
  out ``2 Re(C h)``; the LRU reads out ``Re(C h)`` as in its paper.
* All layers are causal: ``y_t`` depends on ``x_0..x_t`` only (the short convolutions are left-padded).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import probe_variable, to_batch_major, to_time_major
from lrd.registry import register_mixer
from lrd.scan import linear_scan

__all__ = [
    "LRU",
    "S4D",
    "S5",
    "SelectiveSSM",
    "RGLRU",
    "S4D_INITS",
    "causal_depthwise_conv",
    "zoh",
    "lru_ring_init",
    "lru_lambda",
    "lru",
    "s4d_imag_init",
    "s4d",
    "hippo_legs",
    "hippo_n",
    "hippo_n_diagonalized",
    "s5",
    "selective_scan",
    "rglru_lambda_init",
    "rglru",
    "sqrt_bounded_derivative",
]

S4D_INITS = ("lin", "inv")
MAX_SQRT_GRADIENT = 1000.0  # bound on d sqrt(x)/dx used by the RG-LRU normalisation


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _uniform(low: float, high: float):
    """Initialiser ``U[low, high)``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def _normal(std: float):
    """Initialiser ``N(0, std^2)``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return std * jax.random.normal(key, shape, dtype)

    return init


def _log_uniform(low: float, high: float):
    """Initialiser for ``log x`` with ``log x ~ U[log low, log high)`` (timescales, S4/S5/Mamba)."""
    return _uniform(math.log(low), math.log(high))


def _to_width(module: nn.Module, x: jax.Array, width: int) -> jax.Array:
    """``x`` itself when ``d_in == width``, else the linear projection ``x W_in + b_in``: ``[B, T, width]``."""
    if x.shape[-1] == width:
        return x
    kernel = module.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], width))
    bias = module.param("input_bias", nn.initializers.zeros_init(), (width,))
    return x @ kernel + bias


def _dense(module: nn.Module, x: jax.Array, width: int, name: str, *, bias: bool) -> jax.Array:
    """``x W + b`` with parameters ``{name}_kernel`` (lecun normal) and ``{name}_bias`` (zeros) if ``bias``."""
    kernel = module.param(f"{name}_kernel", nn.initializers.lecun_normal(), (x.shape[-1], width))
    y = x @ kernel
    if bias:
        y = y + module.param(f"{name}_bias", nn.initializers.zeros_init(), (width,))
    return y


def _conv_params(module: nn.Module, width: int, conv_width: int) -> tuple[jax.Array, jax.Array]:
    """Depthwise causal conv parameters: kernel ``U(+-1/sqrt(conv_width))`` (PyTorch's Conv1d default), bias 0."""
    bound = 1.0 / math.sqrt(conv_width)
    kernel = module.param("conv_kernel", _uniform(-bound, bound), (conv_width, width))
    bias = module.param("conv_bias", nn.initializers.zeros_init(), (width,))
    return kernel, bias


def causal_depthwise_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Causal depthwise 1-D convolution: ``y_t = b + sum_{k=0}^{W-1} kernel[k] * x_{t-W+1+k}`` (zeros before 0).

    ``x: float32[batch, time, channels]``, ``kernel: [W, channels]`` (``kernel[W-1]`` weighs the current step, as
    PyTorch's ``Conv1d(padding=W-1)`` truncated to the first ``time`` outputs), ``bias: [channels]``.
    """
    width, num_steps = kernel.shape[0], x.shape[1]
    padded = jnp.pad(x, ((0, 0), (width - 1, 0), (0, 0)))
    y = sum(kernel[k] * padded[:, k : k + num_steps] for k in range(width))
    return y + bias


def zoh(lam: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Zero-order hold for a diagonal ``x' = Lambda x + B u``: ``(Lambda_bar, (Lambda_bar - 1) / Lambda)``.

    ``Lambda_bar = exp(Delta Lambda)`` and ``B_bar = (Delta Lambda)^{-1} (exp(Delta Lambda) - I) Delta B
    = ((Lambda_bar - 1) / Lambda) B`` (S4D, Gu et al. 2022, Sec. 2; S5, Smith et al. 2023, Sec. 2.2/3).
    """
    lam_bar = jnp.exp(lam * step)
    return lam_bar, (lam_bar - 1.0) / lam


def _complex(re: jax.Array, im: jax.Array) -> jax.Array:
    return jax.lax.complex(re, im)


def _pairs(z: jax.Array) -> jax.Array:
    """``complex[...] -> float32[..., 2]`` (real, imaginary)."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(jnp.float32)


def _unpair(p: jax.Array) -> jax.Array:
    """``float32[..., 2] -> complex64[...]``."""
    return _complex(p[..., 0], p[..., 1])


def _scan(a, b, module, *, probe) -> jax.Array:
    return linear_scan(a, b, mode=module.scan_mode, chunk_size=module.chunk_size, probe=probe)


# ----------------------------------------------------------------------------------------------------------------
# LRU (Orvieto et al. 2023)


def lru_ring_init(
    key: jax.Array, size: int, r_min: float, r_max: float, max_phase: float
) -> tuple[jax.Array, jax.Array]:
    """``(nu_log, theta_log)`` for eigenvalues uniform on the ring ``r_min <= |lambda| <= r_max`` (LRU Sec. 3.3).

    ``|lambda|^2 ~ U[r_min^2, r_max^2]`` (uniform by area) and ``arg lambda ~ U[0, max_phase]``; with
    ``lambda = exp(-exp(nu_log) + i exp(theta_log))``: ``nu_log = log(-log|lambda|)``, ``theta_log = log(arg)``.
    """
    key_r, key_phase = jax.random.split(key)
    u1 = jax.random.uniform(key_r, (size,))
    u2 = jax.random.uniform(key_phase, (size,))
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = jnp.log(max_phase * u2)
    return nu_log, theta_log


def lru_lambda(nu_log: jax.Array, theta_log: jax.Array) -> jax.Array:
    """``lambda = exp(-exp(nu_log) + i exp(theta_log))`` (LRU exponential parameterisation, Sec. 3.3)."""
    return jnp.exp(_complex(-jnp.exp(nu_log), jnp.exp(theta_log)))


def lru(
    u: jax.Array,
    nu_log: jax.Array,
    theta_log: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    gamma_log: jax.Array | None = None,
    *,
    mode: str = "associative",
    chunk_size: int = 64,
    probe: jax.Array | None = None,
) -> jax.Array:
    """The Linear Recurrent Unit (Orvieto et al. 2023, Sec. 3 and Appendix A).

    ``x_t = Lambda x_{t-1} + gamma * (B u_t)``, ``y_t = Re(C x_t) + D * u_t``, ``Lambda = diag(lambda)`` with
    ``lambda = exp(-exp(nu) + i exp(theta))`` and the normalisation ``gamma = sqrt(1 - |lambda|^2)`` (or
    ``exp(gamma_log)`` when given, the trainable variant of the paper's code).

    Args:
      u: ``float32[batch, time, H]``.
      nu_log, theta_log: ``[N]``.
      B: ``complex64[H, N]`` (input-major), C: ``complex64[N, H]``, D: ``float32[H]``.
      gamma_log: ``None`` or ``float32[N]``.
      probe: ``None`` or ``complex64[time, batch, N]``.

    Returns:
      ``float32[batch, time, H]``.
    """
    lam = lru_lambda(nu_log, theta_log)
    # 1 - |lambda|^2 = 1 - exp(-2 exp(nu)), computed without cancellation near the unit circle.
    gamma = jnp.sqrt(-jnp.expm1(-2.0 * jnp.exp(nu_log))) if gamma_log is None else jnp.exp(gamma_log)
    bu = to_time_major(u.astype(B.dtype) @ (B * gamma))
    h = linear_scan(lam, bu, mode=mode, chunk_size=chunk_size, probe=probe)
    return jnp.real(to_batch_major(h) @ C) + D * u


@register_mixer(
    "lru",
    family="ssm",
    description="Linear Recurrent Unit: complex diagonal, ring init, gamma normalisation (Orvieto et al. 2023)",
)
class LRU(nn.Module):
    """LRU layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`lru`.

    Attributes:
      hidden_size: ``H``, the width of ``u`` and ``y`` (the input is projected to it if ``d_in != H``).
      state_size: ``N`` complex states (``None``: ``H``).
      r_min, r_max: ring of eigenvalue moduli at initialisation (Sec. 3.3); the defaults are the range the
        paper uses for long-range tasks, close to the unit circle.
      max_phase: eigenvalue phases ``~ U[0, max_phase]`` at initialisation (the paper shrinks it, e.g. to pi/10,
        on its longest tasks).
      trainable_gamma: ``False``: ``gamma = sqrt(1 - |lambda|^2)`` always (the normalisation of Sec. 3.3);
        ``True``: ``gamma_log`` is a free parameter initialised to that value (as in the paper's Appendix A code).
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options.

    Initialisation (Appendix A): ``B_re, B_im ~ N(0, 1/(2H))``, ``C_re, C_im ~ N(0, 1/N)``, ``D ~ N(0, 1)``.
    """

    hidden_size: int
    state_size: int | None = None
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 2 * math.pi
    trainable_gamma: bool = False
    scan_mode: str = "associative"
    chunk_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _require(
            0.0 <= self.r_min < self.r_max <= 1.0,
            f"lru: need 0 <= r_min < r_max <= 1, got r_min={self.r_min!r}, r_max={self.r_max!r}",
        )
        _require(self.max_phase > 0, f"lru: max_phase must be > 0, got {self.max_phase!r}")
        width = self.hidden_size
        size = self.state_size or width
        u = _to_width(self, x, width)

        ring = functools.partial(
            lru_ring_init, size=size, r_min=self.r_min, r_max=self.r_max, max_phase=self.max_phase
        )
        nu_log = self.param("nu_log", lambda key: ring(key)[0])
        theta_log = self.param("theta_log", lambda key: ring(key)[1])
        b_std, c_std = 1.0 / math.sqrt(2 * width), 1.0 / math.sqrt(size)
        B = _complex(
            self.param("B_re", _normal(b_std), (width, size)),
            self.param("B_im", _normal(b_std), (width, size)),
        )
        C = _complex(
            self.param("C_re", _normal(c_std), (size, width)),
            self.param("C_im", _normal(c_std), (size, width)),
        )
        D = self.param("D", _normal(1.0), (width,))
        gamma_log = None
        if self.trainable_gamma:
            # Initialised from the same key as nu_log, i.e. to log sqrt(1 - |lambda|^2) of the initial lambda.
            gamma_log = self.param(
                "gamma_log",
                lambda _key: 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log))),
            )
        probe = probe_variable(self, jnp.zeros((x.shape[0], size), jnp.complex64), x.shape[1])
        return lru(
            u,
            nu_log,
            theta_log,
            B,
            C,
            D,
            gamma_log,
            mode=self.scan_mode,
            chunk_size=self.chunk_size,
            probe=probe,
        )


# ----------------------------------------------------------------------------------------------------------------
# S4D (Gu, Gupta, Goel & Re 2022)


def s4d_imag_init(init: str, state_size: int) -> np.ndarray:
    """Imaginary parts of ``A_n = -1/2 + i Im(A_n)``, ``n = 0..N/2-1`` (S4D paper, Sec. 4.1).

    * ``"lin"`` (S4D-Lin): ``Im(A_n) = pi n``;
    * ``"inv"`` (S4D-Inv): ``Im(A_n) = (N / pi) (N / (2n + 1) - 1)``.
    ``N = state_size`` counts both members of each conjugate pair.
    """
    _require(init in S4D_INITS, f"s4d: a_init={init!r} is unknown; allowed values: {', '.join(S4D_INITS)}")
    n = np.arange(state_size // 2, dtype=np.float64)
    if init == "lin":
        return np.pi * n
    return state_size / np.pi * (state_size / (2 * n + 1) - 1)


def s4d(
    u: jax.Array,
    log_dt: jax.Array,
    log_A_real: jax.Array,
    A_imag: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    mode: str = "associative",
    chunk_size: int = 64,
    probe: jax.Array | None = None,
) -> jax.Array:
    """S4D: ``H`` independent single-input single-output diagonal SSMs (Gu et al. 2022).

    Per channel ``h``: ``x' = A x + B u``, ``y = C x + D u`` with ``A = diag(-exp(log_A_real) + i A_imag)``,
    discretised by zero-order hold with step ``Delta = exp(log_dt)``: ``A_bar = exp(Delta A)``,
    ``B_bar = (A_bar - 1) / A * B``. ``B = 1`` (the S4D initialisation); only ``C_n B_n`` matters for a SISO
    system, so ``C`` carries the product. States come in conjugate pairs; one of each is kept and
    ``y_t = 2 Re(sum_n C_n x_{t,n}) + D u_t``.

    Args:
      u: ``float32[batch, time, H]``; log_dt: ``[H]``; log_A_real, A_imag: ``[H, N/2]``;
      C: ``complex64[H, N/2]``; D: ``float32[H]``; probe: ``None`` or ``complex64[time, batch, H, N/2]``.

    Returns:
      ``float32[batch, time, H]``.
    """
    A = _complex(-jnp.exp(log_A_real), A_imag)
    A_bar, B_bar = zoh(A, jnp.exp(log_dt)[:, None])
    b = to_time_major(u)[..., None] * B_bar  # [T, B, H, N/2]
    h = linear_scan(A_bar, b, mode=mode, chunk_size=chunk_size, probe=probe)
    y = 2.0 * jnp.real(jnp.sum(C * h, axis=-1))
    return to_batch_major(y) + D * u


@register_mixer(
    "s4d",
    family="ssm",
    description="S4D: diagonal SSM per channel, ZOH, S4D-Lin/Inv init (Gu et al. 2022)",
)
class S4D(nn.Module):
    """S4D layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`s4d`.

    Only the SSM with its ``D`` skip: the S4 block's position-wise GELU and output linear layer are left to the
    surrounding model (the block model's MLP sublayer).

    Attributes:
      hidden_size: ``H`` independent channels (the input is projected to ``H`` if ``d_in != H``).
      state_size: ``N`` per channel, even (``N/2`` complex states).
      a_init: ``"lin"`` (S4D-Lin) or ``"inv"`` (S4D-Inv), see :func:`s4d_imag_init` (not called ``init``,
        which would shadow ``nn.Module.init``).
      dt_min, dt_max: ``log Delta ~ U[log dt_min, log dt_max]`` per channel.
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options.

    Initialisation: ``Re(A_n) = -1/2``, ``C ~`` standard complex normal, ``D ~ N(0, 1)``.
    """

    hidden_size: int
    state_size: int = 64
    a_init: str = "lin"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan_mode: str = "associative"
    chunk_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _require(
            self.state_size >= 2 and self.state_size % 2 == 0,
            f"s4d: state_size must be an even int >= 2 (conjugate pairs), got {self.state_size!r}",
        )
        _require(
            0 < self.dt_min <= self.dt_max,
            f"s4d: need 0 < dt_min <= dt_max, got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}",
        )
        imag = s4d_imag_init(self.a_init, self.state_size)
        width, half = self.hidden_size, self.state_size // 2
        u = _to_width(self, x, width)
        log_dt = self.param("log_dt", _log_uniform(self.dt_min, self.dt_max), (width,))
        log_A_real = self.param("log_A_real", nn.initializers.constant(math.log(0.5)), (width, half))
        A_imag = self.param(
            "A_imag",
            lambda _key, shape: jnp.broadcast_to(jnp.asarray(imag, jnp.float32), shape),
            (width, half),
        )
        c_std = math.sqrt(0.5)  # real and imaginary parts: a standard complex normal has E|C|^2 = 1
        C = _complex(
            self.param("C_re", _normal(c_std), (width, half)),
            self.param("C_im", _normal(c_std), (width, half)),
        )
        D = self.param("D", _normal(1.0), (width,))
        probe = probe_variable(self, jnp.zeros((x.shape[0], width, half), jnp.complex64), x.shape[1])
        return s4d(
            u, log_dt, log_A_real, A_imag, C, D, mode=self.scan_mode, chunk_size=self.chunk_size, probe=probe
        )


# ----------------------------------------------------------------------------------------------------------------
# S5 (Smith, Warrington & Linderman 2023)


def hippo_legs(size: int) -> np.ndarray:
    """HiPPO-LegS (Gu et al. 2020): ``A_nk = -sqrt(2n+1) sqrt(2k+1)`` if ``n > k``, ``-(n+1)`` if ``n = k``, else 0."""
    q = np.sqrt(2 * np.arange(size, dtype=np.float64) + 1)
    return -(np.tril(np.outer(q, q), -1) + np.diag(np.arange(size, dtype=np.float64) + 1))


def hippo_n(size: int) -> np.ndarray:
    """HiPPO-N, the normal part of HiPPO-LegS: ``A_LegS + P P^T`` with ``P_n = sqrt(n + 1/2)`` (S5 Sec. 4.1).

    It equals ``-1/2 I + S`` with ``S`` skew-symmetric, so it is normal and every eigenvalue has real part -1/2.
    """
    p = np.sqrt(np.arange(size, dtype=np.float64) + 0.5)
    return hippo_legs(size) + np.outer(p, p)


@functools.lru_cache(maxsize=16)
def hippo_n_diagonalized(state_size: int, blocks: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(Lambda, V)`` of the S5 initialisation: ``blocks`` copies of HiPPO-N of size ``P/blocks`` on the diagonal.

    Each block ``A_N = V_j Lambda_j V_j^*`` (``V_j`` unitary) is diagonalised through the Hermitian ``-i S``
    (``S = A_N + I/2``), which gives ``Lambda_j = -1/2 + i w`` with ``w`` real. With conjugate symmetry only one
    member of each conjugate pair is kept, so ``Lambda: complex128[P/2]``, ``V: complex128[P, P/2]`` (block
    diagonal) and ``V^*`` restricted to those columns maps real inputs into the kept eigenbasis.
    """
    block = state_size // blocks
    skew = hippo_n(block) + 0.5 * np.eye(block)
    w, vectors = np.linalg.eigh(-1j * skew)
    # eigh sorts w ascending; conjugate pairs are (w, -w), so the first half holds one of each pair.
    lam = -0.5 + 1j * w[: block // 2]
    vectors = vectors[:, : block // 2]
    lam_all = np.tile(lam, blocks)
    v_all = np.zeros((state_size, state_size // 2), np.complex128)
    for j in range(blocks):
        v_all[j * block : (j + 1) * block, j * (block // 2) : (j + 1) * (block // 2)] = vectors
    return lam_all, v_all


def s5(
    u: jax.Array,
    Lambda_re: jax.Array,
    Lambda_im: jax.Array,
    log_step: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    max_real: float | None = -1e-4,
    mode: str = "associative",
    chunk_size: int = 64,
    probe: jax.Array | None = None,
) -> jax.Array:
    """S5: one multi-input multi-output diagonal SSM shared by all channels (Smith et al. 2023, Sec. 3).

    ``x_t = Lambda_bar x_{t-1} + B_bar u_t``, ``y_t = 2 Re(C~ x_t) + D u_t`` with ``Lambda_bar = exp(Delta
    Lambda)``, ``B_bar = ((Lambda_bar - 1) / Lambda) B~`` (zero-order hold, one timescale ``Delta_p =
    exp(log_step_p)`` per state), ``B~ = V^{-1} B`` and ``C~ = C V`` in the eigenbasis of the initial state matrix.
    ``2 Re`` because only one of each conjugate pair of states is kept. ``Re(Lambda)`` is clipped to at most
    ``max_real`` (S5's ``clip_eigs``) so the recurrence stays stable while training.

    Args:
      u: ``float32[batch, time, H]``; Lambda_re, Lambda_im, log_step: ``[P/2]``; B: ``complex64[H, P/2]``
      (input-major ``B~^T``); C: ``complex64[P/2, H]`` (``C~^T``); D: ``float32[H]``;
      probe: ``None`` or ``complex64[time, batch, P/2]``.

    Returns:
      ``float32[batch, time, H]``.
    """
    re = Lambda_re if max_real is None else jnp.minimum(Lambda_re, max_real)
    lam = _complex(re, Lambda_im)
    lam_bar, b_scale = zoh(lam, jnp.exp(log_step))
    bu = to_time_major(u.astype(B.dtype) @ (B * b_scale))  # [T, B, P/2]
    h = linear_scan(lam_bar, bu, mode=mode, chunk_size=chunk_size, probe=probe)
    return 2.0 * jnp.real(to_batch_major(h) @ C) + D * u


@register_mixer(
    "s5",
    family="ssm",
    description="S5: MIMO diagonalised SSM, HiPPO-N init, ZOH, parallel scan (Smith et al. 2023)",
)
class S5(nn.Module):
    """S5 layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`s5`.

    Attributes:
      hidden_size: ``H``, the width of ``u`` and ``y`` (the input is projected to it if ``d_in != H``).
      state_size: ``P`` (``None``: ``H``); ``P / blocks`` must be even (``P/2`` complex states are kept).
      blocks: ``J`` copies of HiPPO-N of size ``P/J`` on the diagonal of the initial state matrix (S5 Sec. 4.3).
      dt_min, dt_max: ``log Delta_p ~ U[log dt_min, log dt_max]`` per state.
      clip_eigs: clip ``Re(Lambda) <= -1e-4`` (stability while training).
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options (the paper uses the associative scan).

    Initialisation (Sec. 4): ``Lambda`` from :func:`hippo_n_diagonalized`; ``B ~`` lecun normal ``[P, H]``,
    ``B~ = V^{-1} B``; ``C`` complex with ``Re, Im ~ N(0, 1/P)`` ``[H, P]``, ``C~ = C V``; ``D ~ N(0, 1)``.
    Parameters ``B: float32[H, P/2, 2]`` and ``C: float32[P/2, H, 2]`` hold (real, imaginary) pairs of ``B~^T``
    and ``C~^T`` (``V`` is unitary, so ``V^{-1} = V^*``).
    """

    hidden_size: int
    state_size: int | None = None
    blocks: int = 1
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    clip_eigs: bool = True
    scan_mode: str = "associative"
    chunk_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = self.hidden_size
        size = self.state_size or width
        _require(
            isinstance(self.blocks, int) and self.blocks >= 1 and size % self.blocks == 0,
            f"s5: blocks must be a positive divisor of state_size={size}, got {self.blocks!r}",
        )
        _require(
            (size // self.blocks) % 2 == 0,
            f"s5: state_size / blocks must be even (conjugate pairs), got {size} / {self.blocks}",
        )
        _require(
            0 < self.dt_min <= self.dt_max,
            f"s5: need 0 < dt_min <= dt_max, got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}",
        )
        half = size // 2
        u = _to_width(self, x, width)
        lam, V = hippo_n_diagonalized(size, self.blocks)
        Lambda_re = self.param("Lambda_re", lambda _key: jnp.asarray(lam.real, jnp.float32))
        Lambda_im = self.param("Lambda_im", lambda _key: jnp.asarray(lam.imag, jnp.float32))
        log_step = self.param("log_step", _log_uniform(self.dt_min, self.dt_max), (half,))

        v = jnp.asarray(V, jnp.complex64)

        def b_tilde(key, shape):  # B~^T = (V^* B)^T with B ~ lecun normal [P, H]; stored as (re, im) pairs
            b = nn.initializers.lecun_normal()(key, (size, width))
            return _pairs((v.conj().T @ b.astype(jnp.complex64)).T)

        def c_tilde(key, shape):  # C~^T = (C V)^T with Re C, Im C ~ N(0, 1/P) [H, P]
            c = _complex(*(jax.random.normal(k, (width, size)) for k in jax.random.split(key))) / math.sqrt(
                size
            )
            return _pairs((c @ v).T)

        B = _unpair(self.param("B", b_tilde, (width, half, 2)))
        C = _unpair(self.param("C", c_tilde, (half, width, 2)))
        D = self.param("D", _normal(1.0), (width,))
        probe = probe_variable(self, jnp.zeros((x.shape[0], half), jnp.complex64), x.shape[1])
        return s5(
            u,
            Lambda_re,
            Lambda_im,
            log_step,
            B,
            C,
            D,
            max_real=-1e-4 if self.clip_eigs else None,
            mode=self.scan_mode,
            chunk_size=self.chunk_size,
            probe=probe,
        )


# ----------------------------------------------------------------------------------------------------------------
# Selective SSM: S6 in a Mamba block (Gu & Dao 2023)


def selective_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    mode: str = "associative",
    chunk_size: int = 64,
    probe: jax.Array | None = None,
) -> jax.Array:
    """The S6 recurrence (Mamba, Gu & Dao 2023, Algorithm 2 and eqs. 2a-2b, 4), per channel ``d`` and state ``n``:

    ``h_t[d, n] = exp(Delta_t[d] A[d, n]) h_{t-1}[d, n] + Delta_t[d] B_t[n] u_t[d]`` (zero-order hold for ``A``,
    the simplified Euler step ``B_bar = Delta B`` of the paper), ``y_t[d] = sum_n C_t[n] h_t[d, n] + D[d] u_t[d]``.
    The recurrence runs through :func:`lrd.scan.linear_scan` over ``[time, batch, d_inner, N]``.

    Args:
      u: ``float32[batch, time, d_inner]``; delta: ``float32[batch, time, d_inner]`` (positive);
      A: ``float32[d_inner, N]`` (negative); B, C: ``float32[batch, time, N]``; D: ``float32[d_inner]``;
      probe: ``None`` or ``float32[time, batch, d_inner, N]``.

    Returns:
      ``float32[batch, time, d_inner]``.
    """
    a = jnp.exp(delta[..., None] * A)  # [B, T, D, N]
    b = (delta * u)[..., None] * B[:, :, None, :]
    h = linear_scan(to_time_major(a), to_time_major(b), mode=mode, chunk_size=chunk_size, probe=probe)
    return jnp.einsum("tbdn,btn->btd", h, C) + D * u


def _inverse_softplus(y: jax.Array) -> jax.Array:
    """``x`` with ``softplus(x) = y`` (``y > 0``): ``y + log(-expm1(-y))``."""
    return y + jnp.log(-jnp.expm1(-y))


@register_mixer(
    "selective_ssm",
    family="ssm",
    description="selective SSM (S6) in a Mamba block: input-dependent Delta, B, C (Gu & Dao 2023)",
)
class SelectiveSSM(nn.Module):
    """Mamba block with the S6 selective SSM: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.

    With ``block=True`` (default), the Mamba block of Gu & Dao 2023 (Fig. 3, Sec. 3.4), ``E = expand``,
    ``d_inner = E * hidden_size``:

    1. ``[u, z] = x W_in`` (``in_proj_kernel: [d_in, 2 d_inner]``, no bias): main branch ``u``, gate branch ``z``;
    2. ``u = SiLU(causal_depthwise_conv(u))`` (kernel width ``conv_width``, with bias; skipped if 0);
    3. selection (Algorithm 2): ``[delta_low, B_t, C_t] = u W_x`` (``x_proj_kernel: [d_inner, R + 2N]``,
       ``R = dt_rank``), ``Delta_t = softplus(delta_low W_dt + b_dt)`` (the low-rank ``R -> d_inner``
       projection ``dt_proj_kernel``, ``dt_bias``);
    4. ``y = S6(u; Delta, A, B, C, D)`` with ``A = -exp(A_log)``, see :func:`selective_scan`;
    5. ``out = (y * SiLU(z)) W_out`` (``out_proj_kernel: [d_inner, hidden_size]``, no bias).

    With ``block=False``, the S6 layer alone: ``u`` is ``x`` (projected to ``hidden_size`` if ``d_in !=
    hidden_size``), ``d_inner = hidden_size``, steps 3-4 only, output ``y``.

    Initialisation as in the paper's code: ``A_log[d, n] = log(n + 1)`` (S4D-Real, ``A = -(n+1)``), ``D = 1``,
    ``dt_proj_kernel ~ U(+-R^{-1/2})``, ``dt_bias = softplus^{-1}(Delta_0)`` with ``Delta_0 = exp(U[log dt_min,
    log dt_max])`` floored at ``dt_init_floor``; dense kernels lecun normal; conv kernel ``U(+-1/sqrt(width))``,
    conv bias 0. Not included: the out-projection rescaling by depth, and the fused hardware-aware kernel (the
    recurrence is materialised as ``[time, batch, d_inner, N]``).

    Attributes:
      hidden_size: output width (``d_model``).
      state_size: ``N`` per channel.
      expand: ``E`` (block only).
      conv_width: temporal width of the depthwise convolution (block only; 0 disables it).
      dt_rank: ``R`` (``None``: ``ceil(hidden_size / 16)`` as in Mamba).
      dt_min, dt_max, dt_init_floor: initial range of ``Delta``.
      block: the full Mamba block (True) or the S6 layer alone (False).
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options.
    """

    hidden_size: int
    state_size: int = 16
    expand: int = 2
    conv_width: int = 4
    dt_rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    block: bool = True
    scan_mode: str = "associative"
    chunk_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _require(self.state_size >= 1, f"selective_ssm: state_size must be >= 1, got {self.state_size!r}")
        _require(self.expand >= 1, f"selective_ssm: expand must be >= 1, got {self.expand!r}")
        _require(self.conv_width >= 0, f"selective_ssm: conv_width must be >= 0, got {self.conv_width!r}")
        _require(
            0 < self.dt_min <= self.dt_max,
            f"selective_ssm: need 0 < dt_min <= dt_max, got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}",
        )
        n = self.state_size
        rank = self.dt_rank or math.ceil(self.hidden_size / 16)
        if self.block:
            inner = self.expand * self.hidden_size
            u, z = jnp.split(_dense(self, x, 2 * inner, "in_proj", bias=False), 2, axis=-1)
            if self.conv_width:
                u = causal_depthwise_conv(u, *_conv_params(self, inner, self.conv_width))
            u = jax.nn.silu(u)
        else:
            inner = self.hidden_size
            u = _to_width(self, x, inner)

        delta_low, B, C = jnp.split(
            _dense(self, u, rank + 2 * n, "x_proj", bias=False), [rank, rank + n], axis=-1
        )
        bound = rank**-0.5
        dt_kernel = self.param("dt_proj_kernel", _uniform(-bound, bound), (rank, inner))

        def dt_bias_init(key, shape, dtype=jnp.float32):
            dt = jnp.exp(_log_uniform(self.dt_min, self.dt_max)(key, shape, dtype))
            return _inverse_softplus(jnp.maximum(dt, self.dt_init_floor))

        dt_bias = self.param("dt_bias", dt_bias_init, (inner,))
        delta = jax.nn.softplus(delta_low @ dt_kernel + dt_bias)
        A_log = self.param(
            "A_log",
            lambda _key, shape: jnp.broadcast_to(jnp.log(jnp.arange(1, n + 1, dtype=jnp.float32)), shape),
            (inner, n),
        )
        D = self.param("D", nn.initializers.ones_init(), (inner,))
        probe = probe_variable(self, jnp.zeros((x.shape[0], inner, n), jnp.float32), x.shape[1])
        y = selective_scan(
            u, delta, -jnp.exp(A_log), B, C, D, mode=self.scan_mode, chunk_size=self.chunk_size, probe=probe
        )
        if not self.block:
            return y
        return _dense(self, y * jax.nn.silu(z), self.hidden_size, "out_proj", bias=False)


# ----------------------------------------------------------------------------------------------------------------
# RG-LRU (De et al. 2024, Griffin)


@jax.custom_jvp
def sqrt_bounded_derivative(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` whose derivative is capped at ``MAX_SQRT_GRADIENT`` (finite at ``x = 0``)."""
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_derivative_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = jnp.sqrt(x)
    return y, dx * 0.5 / jnp.maximum(y, 0.5 / MAX_SQRT_GRADIENT)


def rglru_lambda_init(
    key: jax.Array, shape: tuple[int, ...], c: float, a_min: float, a_max: float
) -> jax.Array:
    """``Lambda`` with ``a^c ~ U[a_min, a_max]`` for ``a = sigmoid(Lambda)`` (Griffin Sec. 2.4).

    ``log a = log(U) / c`` and ``Lambda = logit(a) = log a - log(1 - a)``, computed from ``log a`` with
    ``expm1`` so that ``a`` near 1 keeps its precision.
    """
    log_a = jnp.log(jax.random.uniform(key, shape, jnp.float32, a_min, a_max)) / c
    return log_a - jnp.log(-jnp.expm1(log_a))


def rglru(
    v: jax.Array,
    gate_a_kernel: jax.Array,
    gate_a_bias: jax.Array,
    gate_x_kernel: jax.Array,
    gate_x_bias: jax.Array,
    Lambda: jax.Array,
    *,
    c: float = 8.0,
    mode: str = "associative",
    chunk_size: int = 64,
    probe: jax.Array | None = None,
) -> jax.Array:
    """The Real-Gated Linear Recurrent Unit (Griffin, De et al. 2024, Sec. 2.4, eqs. 1-4):

    ``r_t = sigmoid(W_a v_t + b_a)`` (recurrence gate), ``i_t = sigmoid(W_x v_t + b_x)`` (input gate),
    ``a_t = a^{c r_t}`` with ``a = sigmoid(Lambda)``, ``h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * v_t)``.

    ``a_t`` is computed in log space, ``log a_t = c r_t log sigmoid(Lambda) = -c r_t softplus(-Lambda)``, and
    ``1 - a_t^2 = -expm1(2 log a_t)`` without cancellation; the square root's derivative is capped
    (:func:`sqrt_bounded_derivative`) since it is unbounded as ``a_t -> 1``.

    Args:
      v: ``float32[batch, time, H]``; gate kernels ``[H, H]`` and biases ``[H]``; Lambda: ``[H]``;
      probe: ``None`` or ``float32[time, batch, H]``.

    Returns:
      ``h: float32[batch, time, H]``.
    """
    r = jax.nn.sigmoid(v @ gate_a_kernel + gate_a_bias)
    i = jax.nn.sigmoid(v @ gate_x_kernel + gate_x_bias)
    log_a = -c * r * jax.nn.softplus(-Lambda)
    a = jnp.exp(log_a)
    b = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a)) * (i * v)
    h = linear_scan(to_time_major(a), to_time_major(b), mode=mode, chunk_size=chunk_size, probe=probe)
    return to_batch_major(h)


@register_mixer(
    "rglru",
    family="ssm",
    description="RG-LRU in Griffin's recurrent block: gated real diagonal recurrence (De et al. 2024)",
)
class RGLRU(nn.Module):
    """Griffin recurrent block around the RG-LRU: ``float32[batch, time, d_in] -> float32[batch, time, hidden]``.

    With ``block=True`` (default), the recurrent block of Griffin (De et al. 2024, Sec. 2.4, Fig. 2), RNN width
    ``H = hidden_size`` (the paper uses ``4/3 d_model``; here the width is the model's):

    ``g = GeLU(x W_g + b_g)`` (gate branch), ``v = conv(x W_v + b_v)`` (causal depthwise, width
    ``conv_width``, skipped if 0), ``h = RG-LRU(v)`` (:func:`rglru`), ``out = (h * g) W_o + b_o``.

    With ``block=False``, the RG-LRU alone: ``v`` is ``x`` (projected to ``H`` if ``d_in != H``), output ``h``.

    The gates ``W_a, W_x`` are dense ``[H, H]`` as in the paper's equations (the public RecurrentGemma code uses
    block-diagonal ones). ``Lambda`` is initialised so that ``a^c ~ U[a_min, a_max]`` (paper: [0.9, 0.999]).

    Attributes:
      hidden_size: ``H``.
      c: the scalar constant of ``a_t = a^{c r_t}`` (8 in the paper).
      a_min, a_max: initial range of ``a^c``.
      block: Griffin's recurrent block (True) or the RG-LRU alone (False).
      conv_width: temporal width of the block's convolution (4 in the paper).
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options.
    """

    hidden_size: int
    c: float = 8.0
    a_min: float = 0.9
    a_max: float = 0.999
    block: bool = True
    conv_width: int = 4
    scan_mode: str = "associative"
    chunk_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _require(
            0.0 < self.a_min < self.a_max < 1.0,
            f"rglru: need 0 < a_min < a_max < 1, got a_min={self.a_min!r}, a_max={self.a_max!r}",
        )
        _require(self.c > 0, f"rglru: c must be > 0, got {self.c!r}")
        _require(self.conv_width >= 0, f"rglru: conv_width must be >= 0, got {self.conv_width!r}")
        width = self.hidden_size
        if self.block:
            gate = jax.nn.gelu(_dense(self, x, width, "gate_proj", bias=True))
            v = _dense(self, x, width, "in_proj", bias=True)
            if self.conv_width:
                v = causal_depthwise_conv(v, *_conv_params(self, width, self.conv_width))
        else:
            v = _to_width(self, x, width)
        gate_a_kernel = self.param("gate_a_kernel", nn.initializers.lecun_normal(), (width, width))
        gate_a_bias = self.param("gate_a_bias", nn.initializers.zeros_init(), (width,))
        gate_x_kernel = self.param("gate_x_kernel", nn.initializers.lecun_normal(), (width, width))
        gate_x_bias = self.param("gate_x_bias", nn.initializers.zeros_init(), (width,))
        Lambda = self.param(
            "Lambda",
            functools.partial(rglru_lambda_init, c=self.c, a_min=self.a_min, a_max=self.a_max),
            (width,),
        )
        probe = probe_variable(self, jnp.zeros((x.shape[0], width), jnp.float32), x.shape[1])
        h = rglru(
            v,
            gate_a_kernel,
            gate_a_bias,
            gate_x_kernel,
            gate_x_bias,
            Lambda,
            c=self.c,
            mode=self.scan_mode,
            chunk_size=self.chunk_size,
            probe=probe,
        )
        if not self.block:
            return h
        return _dense(self, h * gate, self.hidden_size, "out_proj", bias=True)
