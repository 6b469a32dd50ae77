"""Mamba-2: the SSD (state space duality) layer of Dao & Gu 2024, "Transformers are SSMs" (ICML 2024).

Per head ``h`` (``H = expand * hidden_size / head_dim`` heads), the state is a matrix ``S: [head_dim, N]`` and the
transition is a *scalar* times the identity (SSD restricts Mamba's diagonal, input-dependent ``A`` to that, which
makes the whole sequence map a semiseparable matrix with an attention-like quadratic form)::

    dt_t = softplus(dt_raw_t + dt_bias_h)                        step size, one per head and step
    a_t  = exp(dt_t A_h),  A_h = -exp(A_log_h) < 0               scalar decay in (0, 1)
    S_t  = a_t S_{t-1} + dt_t x_t B_t^T                          x_t: [head_dim], B_t: [N]
    y_t  = S_t C_t + D_h x_t                                     C_t: [N]

``B_t, C_t`` are shared by the heads of a group (``num_groups`` groups, the multi-value / grouped-value attention
analogue of the paper's Sec. 7.2; one group by default, as in the paper's models). The block around it (paper
Sec. 7.1, the "parallel" Mamba-2 block): one input projection gives ``(z, x, B, C, dt_raw)`` at once;
``(x, B, C)`` pass through a short causal depthwise convolution and SiLU; after the SSD, ``y`` is gated and
normalised, ``RMSNorm(y * SiLU(z))`` (the extra normalisation of Sec. 7.1, per group of channels), then projected
to ``hidden_size``.

Two forms of the same function (``scan_mode``):

* ``"sequential"`` (:func:`ssd_recurrent`): the recurrence step by step, ``T`` sequential steps of
  ``O(B H P N)`` work. Steps are grouped in chunks of ``chunk_size`` under ``jax.checkpoint``, so the backward
  pass keeps one state ``[batch, heads, head_dim, N]`` per chunk (and recomputes a chunk's steps when it needs
  them) instead of one per step: the ``[time, batch, heads, head_dim, N]`` array of all states is never formed.
* ``"chunked"`` (:func:`ssd_chunked`): the SSD algorithm of the paper (Sec. 6, the block decomposition of the
  semiseparable matrix), matmuls over chunks of ``chunk_size`` steps. Within chunk ``k``, with ``l_s = dt_s A``
  and the segment sums ``seg(t, s) = sum_{s < r <= t} l_r`` (``t >= s``),

  - diagonal block (the quadratic, attention-like form):
    ``y_t += sum_{s <= t} exp(seg(t, s)) (C_t . B_s) dt_s x_s``;
  - chunk state: ``S^chunk_k = sum_s exp(seg(end, s)) dt_s x_s B_s^T`` and chunk decay ``exp(seg(end, start-1))``;
  - state passing: ``S_k = exp(seg(end, start-1)) S_{k-1} + S^chunk_k`` (a linear recurrence over the ``T / C``
    chunks, run by :func:`lrd.scan.linear_scan`);
  - off-diagonal blocks: ``y_t += exp(seg(t, start-1)) S_{k-1} C_t``.

  The segment sums are never plain differences of two float32 cumulative sums: over a chunk the cumulative log
  decay can reach ``-10^3``, where the difference of two such numbers would lose every digit of a ``seg(t, s)``
  near 0. They are differences of a *compensated* cumulative sum (a high and a low float32 part), exact to the
  rounding of the segment itself (:func:`segment_sums`; the paper's stable ``segsum`` reaches the same accuracy
  with a cumulative sum over the masked ``[L, L]`` terms, which costs ``O(L^3)`` per chunk on XLA:CPU).

The gradient probe is the state ``S_t``, ``[time, batch, heads, head_dim, N]`` (heads flattened group-major),
and runs the sequential form (it is the one place all states exist, and only when the probe is asked for).

Initialisation as in the paper's code: ``A_h ~ -U[A_init_min, A_init_max]`` (``A_log = log(-A)``), ``dt_bias =
softplus^{-1}(dt_0)`` with ``dt_0 = exp(U[log dt_min, log dt_max])`` floored at ``dt_init_floor``, ``D = 1``,
norm scale 1, conv kernel ``U(+-1/sqrt(conv_width))`` with bias 0, projection kernels LeCun normal, no biases.

Deviations from the paper's code, all deliberate: ``head_dim`` defaults to 16 (the paper's 64 would leave two heads
at ``hidden_size`` 64 and none below 32, the widths this project studies); ``chunk_size`` defaults to 64 (the
paper's 256 is tuned for GPUs and long sequences); no ``dt`` clamp (the default range ``(0, inf)`` of the paper's
code is none either); no out-projection rescaling by depth; ``D`` per head only (not the per-channel option).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import DEFAULT_CHUNK_SIZE, Mixer, dense, probe_variable, to_batch_major, to_time_major
from lrd.cells.ssm.common import (
    causal_depthwise_conv,
    check_time_scales,
    conv_params,
    inverse_softplus,
    log_uniform_initializer,
)
from lrd.registry import register_mixer
from lrd.scan import linear_scan

__all__ = ["Mamba2", "ssd_recurrent", "ssd_chunked", "segment_sums", "gated_rms_norm", "MAMBA2_SCAN_MODES"]

MAMBA2_SCAN_MODES = ("sequential", "chunked")
NORM_EPS = 1e-5  # epsilon of the gated RMSNorm (the paper's code)


def _grouped(x: jax.Array, groups: int) -> jax.Array:
    """``[batch, time, heads, *rest] -> [batch, time, groups, heads // groups, *rest]`` (heads group-major)."""
    return x.reshape(x.shape[:2] + (groups, x.shape[2] // groups) + x.shape[3:])


def _heads_major(a: jax.Array) -> jax.Array:
    """``[b, c, l, g, r, ...] -> [b, c, g, r, l, ...]``: a chunk's time axis moved inside each head."""
    return jnp.moveaxis(a, 2, 4)


def _pad_time(x: jax.Array, pad: int) -> jax.Array:
    """Zeros appended to axis 1 (time of a batch-major array)."""
    return jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)) if pad else x


def _skip(x: jax.Array, D: jax.Array) -> jax.Array:
    """``D_h x_t``: ``x: [batch, time, heads, head_dim]``, ``D: [heads]``."""
    return D[:, None] * x


def ssd_recurrent(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    probe: jax.Array | None = None,
) -> jax.Array:
    """The SSD recurrence step by step (module docstring), ``S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T``, ``y_t =
    S_t C_t + D x_t``, from ``S_{-1} = 0``.

    Args:
      x: ``float32[batch, time, heads, head_dim]``; dt: ``float32[batch, time, heads]`` (positive);
      A: ``float32[heads]`` (negative); B, C: ``float32[batch, time, groups, N]``, group ``g`` serving heads
        ``g * heads / groups`` to ``(g + 1) * heads / groups - 1``; D: ``float32[heads]``.
      chunk_size: steps per ``jax.checkpoint`` segment (backward memory: one state per segment plus one segment's
        states); no effect on the values.
      probe: ``None`` or ``float32[time, batch, heads, head_dim, N]`` added to each ``S_t``.

    Returns:
      ``y: float32[batch, time, heads, head_dim]``.
    """
    batch, num_steps, heads, head_dim = x.shape
    groups, state_size = B.shape[2], B.shape[3]
    size = max(1, min(chunk_size, num_steps))
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps
    A_grouped = A.reshape(groups, heads // groups)

    def chunks(a: jax.Array) -> jax.Array:  # [B, T, ...] -> [num_chunks, size, B, ...]; padding has dt = 0
        a = to_time_major(_pad_time(a, pad))
        return a.reshape((num_chunks, size) + a.shape[1:])

    xs = tuple(chunks(a) for a in (_grouped(x, groups), _grouped(dt, groups), B, C))
    if probe is not None:
        probe = jnp.pad(probe, [(0, pad)] + [(0, 0)] * (probe.ndim - 1))
        probe = probe.reshape((num_chunks, size, batch, groups, heads // groups, head_dim, state_size))

    def step(state, inputs):  # state: [B, G, R, P, N]
        (x_t, dt_t, B_t, C_t), probe_t = inputs
        decay = jnp.exp(dt_t * A_grouped)[..., None, None]
        state = decay * state + (dt_t[..., None] * x_t)[..., None] * B_t[:, :, None, None, :]
        if probe_t is not None:
            state = state + probe_t
        return state, jnp.einsum("bgrpn,bgn->bgrp", state, C_t)

    @jax.checkpoint
    def chunk(state, inputs):
        return jax.lax.scan(step, state, inputs)

    state0 = jnp.zeros((batch, groups, heads // groups, head_dim, state_size), x.dtype)
    _, y = jax.lax.scan(chunk, state0, (xs, probe))
    y = to_batch_major(y.reshape((num_chunks * size, batch, heads, head_dim))[:num_steps])
    return y + _skip(x, D)


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth's branch-free TwoSum; IEEE rounding,
    which XLA keeps: it does not reassociate floating-point adds)."""
    s = a + b
    b_part = s - a
    a_part = s - b_part
    return s, (a - a_part) + (b - b_part)


def _compensated_cumsum(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inclusive cumulative sum along the last axis as a pair ``(hi, lo)`` of float32 arrays whose sum is the
    exact prefix sum up to ``O(L eps^2)`` relative to its magnitude: a parallel prefix scan whose combine step adds
    the high parts with :func:`_two_sum` and accumulates the rounding errors in the low parts."""

    def combine(left, right):
        hi, error = _two_sum(left[0], right[0])
        return hi, error + (left[1] + right[1])

    return jax.lax.associative_scan(combine, (x, jnp.zeros_like(x)), axis=-1)


def segment_sums(log_decay: jax.Array) -> jax.Array:
    """``seg[..., t, s] = sum_{s < r <= t} log_decay[..., r]`` (0 where ``t <= s``), accurate to float32 rounding of
    each *segment*, not of the cumulative sum it is taken from (module docstring).

    ``log_decay: [..., L] -> [..., L, L]``; ``exp(seg)`` masked to ``t >= s`` is the decay matrix of SSD. Computed
    as differences of a compensated cumulative sum (:func:`_compensated_cumsum`): ``(hi_t - hi_s) + (lo_t - lo_s)``
    has the rounding of the segment only, because ``hi + lo`` carries the prefix sums to ``O(eps^2)``. The paper's
    stable ``segsum`` instead takes a cumulative sum of the masked terms along one axis of the ``[L, L]`` matrix; on
    XLA:CPU a cumulative sum lowers to a windowed reduction (``O(L)`` work per element, ``O(L^3)`` per chunk), which
    made it a third of the chunked SSD's fwd+bwd time (T = 1024, d_model 64, batch 16); this form does ``O(L^2)``
    elementwise work and ``O(L log L)`` scan work per chunk, with the same accuracy (tested to float32 rounding
    where the cumulative sum reaches -1.6e4).
    """
    return _segments(*_compensated_cumsum(log_decay))


def _segments(hi: jax.Array, lo: jax.Array) -> jax.Array:
    """:func:`segment_sums` from the compensated prefix sums ``(hi, lo)``, ``[..., L] -> [..., L, L]``."""
    size = hi.shape[-1]
    seg = (hi[..., :, None] - hi[..., None, :]) + (lo[..., :, None] - lo[..., None, :])
    return jnp.where(jnp.tril(jnp.ones((size, size), bool), -1), seg, 0.0)


def ssd_chunked(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
    """The chunked SSD algorithm (module docstring; Dao & Gu 2024, Sec. 6): same arguments and result as
    :func:`ssd_recurrent` (no probe). Steps padded at the end have ``dt = 0``: no input, decay 1."""
    batch, num_steps, heads, head_dim = x.shape
    groups = B.shape[2]
    size = max(1, min(chunk_size, num_steps))
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps

    def chunks(a: jax.Array) -> jax.Array:  # [B, T, ...] -> [B, num_chunks, size, ...]
        a = _pad_time(a, pad)
        return a.reshape((batch, num_chunks, size) + a.shape[2:])

    # Heads-major layout throughout ([b, c, g, r, l, ...]: time inside each head's block), so every contraction
    # is a batched GEMM over leading axes with contiguous operands and result; XLA:CPU ran the same contractions
    # written time-major ([b, c, l, h, p] results) several times slower.
    x_dt = _heads_major(chunks(_grouped(x * dt[..., None], groups)))  # dt_s x_s: [b, c, g, r, l, p]
    per_head_A = A.reshape(groups, heads // groups, 1)
    log_decay = _heads_major(chunks(_grouped(dt, groups))) * per_head_A  # [b, c, g, r, l]
    B_c, C_c = chunks(B), chunks(C)  # [b, c, l, g, n]

    # 1. diagonal blocks: y_t = sum_{s <= t} exp(seg(t, s)) (C_t . B_s) dt_s x_s
    # prefix sums of the log decays within each chunk, [b, c, g, r, l], as a high and a low part
    hi, lo = _compensated_cumsum(log_decay)
    seg = _segments(hi, lo)  # segment_sums(log_decay): [b, c, g, r, l, s]
    causal = jnp.tril(jnp.ones((size, size), bool))
    # (C_t . B_s) is shared by a group's heads; it is repeated onto the heads axis before the product. The
    # broadcast form, `scores[:, :, :, None] * decay` over `[groups, heads // groups]`, has a gradient that crashes
    # XLA:CPU (jax 0.10.2: a segmentation fault after the computation, a corrupted heap) when vmapped (several seeds
    # or rates) with one group, several heads and two chunks or more; the repeated form computes the same numbers.
    scores = jnp.repeat(jnp.einsum("bclgn,bcsgn->bcgls", C_c, B_c)[:, :, :, None], heads // groups, axis=3)
    # seg is 0 where t < s, so exp stays finite there before the mask (one pass over the [l, s] arrays)
    weights = jnp.where(causal, scores * jnp.exp(seg), 0.0)  # [b, c, g, r, l, s]
    y = jnp.einsum("bcgrls,bcgrsp->bcgrlp", weights, x_dt)

    # 2. chunk states: S^chunk = sum_s exp(seg(end, s)) dt_s x_s B_s^T, seg(end, s) from the prefix sums directly
    to_end = jnp.exp((hi[..., -1:] - hi) + (lo[..., -1:] - lo))  # [b, c, g, r, s]
    chunk_states = jnp.einsum("bcgrsp,bcsgn->bcgrpn", x_dt * to_end[..., None], B_c)

    # 3. state passing across chunks: S_k = exp(sum of the chunk's log decays) S_{k-1} + S^chunk_k
    # seg(t, start - 1), the log decay from the chunk's start to t: the prefix sum, [b, c, g, r, l]
    cumulative = hi + lo
    chunk_decay = jnp.exp(cumulative[..., -1])[..., None, None]  # [b, c, g, r, 1, 1]
    states = linear_scan(jnp.moveaxis(chunk_decay, 1, 0), jnp.moveaxis(chunk_states, 1, 0), mode="sequential")
    entering = jnp.moveaxis(jnp.concatenate([jnp.zeros_like(states[:1]), states[:-1]]), 0, 1)  # S_{k-1}

    # 4. off-diagonal blocks: y_t += exp(seg(t, start - 1)) S_{k-1} C_t
    y = y + jnp.exp(cumulative)[..., None] * jnp.einsum("bclgn,bcgrpn->bcgrlp", C_c, entering)
    y = jnp.moveaxis(y, 4, 2)  # [b, c, l, g, r, p]
    y = y.reshape(batch, num_chunks * size, heads, head_dim)[:, :num_steps]
    return y + _skip(x, D)


def gated_rms_norm(
    y: jax.Array, z: jax.Array, scale: jax.Array, *, groups: int = 1, eps: float = NORM_EPS
) -> jax.Array:
    """``RMSNorm(y * SiLU(z)) * scale``, the root mean square taken over each of ``groups`` equal groups of
    channels (Dao & Gu 2024, Sec. 7.1). ``y, z: float32[batch, time, d_inner]``, ``scale: float32[d_inner]``."""
    gated = y * jax.nn.silu(z)
    grouped = gated.reshape(gated.shape[:-1] + (groups, gated.shape[-1] // groups))
    normed = grouped * jax.lax.rsqrt(jnp.mean(grouped * grouped, axis=-1, keepdims=True) + eps)
    return normed.reshape(gated.shape) * scale


@register_mixer(
    "mamba2",
    family="ssm",
    description="Mamba-2 (SSD): scalar-decay matrix-state SSM heads, chunked matmul form (Dao & Gu 2024)",
)
class Mamba2(Mixer):
    """The Mamba-2 layer (module docstring): ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.

    With ``E = expand``, ``d_inner = E * hidden_size``, ``P = head_dim``, ``H = d_inner / P`` heads, ``G =
    num_groups``, ``N = state_size``:

    1. ``[z, x, B, C, dt_raw] = x W_in`` (``in_proj_kernel: [d_in, 2 d_inner + 2 G N + H]``, no bias);
    2. ``[x, B, C] = SiLU(causal_depthwise_conv([x, B, C]))`` (width ``conv_width``, with bias; 0 skips the
       convolution, not the SiLU);
    3. ``dt = softplus(dt_raw + dt_bias)``, ``A = -exp(A_log)`` (one each per head);
    4. ``y = SSD(x; dt, A, B, C, D)`` per head, ``x`` split into ``H`` heads of ``P`` (:func:`ssd_recurrent` /
       :func:`ssd_chunked`);
    5. ``out = gated_rms_norm(y, z) W_out`` (``norm_scale: [d_inner]``, ``out_proj_kernel: [d_inner,
       hidden_size]``, no bias).

    Parameters: ``in_proj_kernel``, ``out_proj_kernel`` (``param_dtype``); ``conv_kernel``, ``conv_bias``,
    ``dt_bias``, ``A_log``, ``D``, ``norm_scale`` (float32). The state is ``H x P x N`` per example (``d_inner N``
    numbers).

    Attributes:
      hidden_size: output width (``d_model``).
      state_size: ``N``, the state width per channel (64: the paper's models use 64 to 128, which SSD's matmul
        form makes affordable, against Mamba-1's 16).
      head_dim: ``P``, channels per head (must divide ``d_inner``).
      expand: ``E``.
      num_groups: ``G``, groups of heads sharing ``B`` and ``C`` (must divide ``H``).
      conv_width: temporal width of the depthwise convolution (0 disables it).
      dt_min, dt_max, dt_init_floor: initial range of ``dt`` (log-uniform, floored).
      A_init_min, A_init_max: initial range of ``-A`` (uniform).
      scan_mode: ``"auto"`` (default; see ``AUTO_SCAN_MODES``) | ``"sequential"`` | ``"chunked"``.
      chunk_size: steps per chunk (``None``: 64): the block size of ``"chunked"``, the checkpoint segment of
        ``"sequential"``; both forms honour it and neither changes the function.
    """

    state_size: int = 64
    head_dim: int = 16
    expand: int = 2
    num_groups: int = 1
    conv_width: int = 4
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    A_init_min: float = 1.0
    A_init_max: float = 16.0
    scan_mode: str = "auto"
    chunk_size: int | None = None

    SCAN_MODES: ClassVar[tuple[str, ...]] = MAMBA2_SCAN_MODES
    # CPU (2 cores), fwd+bwd / fwd vs the LSTM in one process, T=1024, d_model 64, batch 16 (experiments/results/
    # bench_mamba2_T1024_d64_cpu2.json): chunked 4.9x / 13.6x, sequential 8.7x / 6.1x; chunked 4.4x fwd+bwd since
    # the compensated segment sums and the heads-major layout (bench_mamba2_chunked_T1024_d64_cpu2.json; old and
    # new side by side in one process: 5.1x -> 4.2x fwd+bwd, forward 1.3x faster); in the atlas's setting
    # (block, hidden 32, batch 192 ~ 6 members x 32) chunked trains 2.1-2.6x faster at T = 100 and 300. The CPU
    # default was sequential until ssd_chunked stopped using the construct whose gradient crashed XLA:CPU (jax
    # 0.10.2) when vmapped over members with two chunks or more (see there); every lag search vmaps members.
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "chunked", "gpu": "chunked"}
    STATE_NAMES: ClassVar[tuple[str, ...]] = ("S",)

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("state_size")
        self.require_int("expand")
        self.require_int("head_dim")
        inner = self.expand * self.hidden_size if isinstance(self.expand, int) else 0
        self.require(
            inner % self.head_dim == 0,
            "head_dim",
            f"must divide d_inner = expand * hidden_size = {inner}",
        )
        self.require_int("num_groups")
        self.require(
            (inner // self.head_dim) % self.num_groups == 0,
            "num_groups",
            f"must divide the number of heads d_inner / head_dim = {inner // self.head_dim}",
        )
        self.require_int("conv_width", 0)
        check_time_scales(self)
        self.require_number("dt_init_floor", low=0.0)
        check_time_scales(self, "A_init_min", "A_init_max")
        self.require_int("chunk_size", optional=True)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        batch, num_steps = x.shape[:2]
        inner, n, groups = self.expand * self.hidden_size, self.state_size, self.num_groups
        heads = inner // self.head_dim
        projected = dense(self, x, 2 * inner + 2 * groups * n + heads, "in_proj", bias=False)
        z, xbc, dt_raw = jnp.split(projected, [inner, 2 * inner + 2 * groups * n], axis=-1)
        if self.conv_width:
            xbc = causal_depthwise_conv(xbc, *conv_params(self, xbc.shape[-1], self.conv_width))
        u, B, C = jnp.split(jax.nn.silu(xbc), [inner, inner + groups * n], axis=-1)

        def dt_bias_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
            dt = jnp.exp(log_uniform_initializer(self.dt_min, self.dt_max)(key, shape, dtype))
            return inverse_softplus(jnp.maximum(dt, self.dt_init_floor))

        def A_log_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
            return jnp.log(jax.random.uniform(key, shape, dtype, self.A_init_min, self.A_init_max))

        dt = jax.nn.softplus(dt_raw + self.param("dt_bias", dt_bias_init, (heads,)))
        A = -jnp.exp(self.param("A_log", A_log_init, (heads,)))
        D = self.param("D", nn.initializers.ones_init(), (heads,))
        u = u.reshape(batch, num_steps, heads, self.head_dim)
        B = B.reshape(batch, num_steps, groups, n)
        C = C.reshape(batch, num_steps, groups, n)

        self.record("decay", lambda: jnp.exp(dt * A))  # [batch, time, heads]
        state = jnp.zeros((batch, heads, self.head_dim, n), jnp.float32)
        probe = probe_variable(self, state, num_steps)
        chunk_size = self.chunk_size or DEFAULT_CHUNK_SIZE
        if self.effective_scan_mode() == "chunked" and probe is None:
            y = ssd_chunked(u, dt, A, B, C, D, chunk_size=chunk_size)
        else:
            y = ssd_recurrent(u, dt, A, B, C, D, chunk_size=chunk_size, probe=probe)
        scale = self.param("norm_scale", nn.initializers.ones_init(), (inner,))
        y = gated_rms_norm(y.reshape(batch, num_steps, inner), z, scale, groups=groups)
        return dense(self, y, self.hidden_size, "out_proj", bias=False)
