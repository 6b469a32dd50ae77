"""The selective SSM (S6) in a Mamba block (Gu & Dao 2023)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import (
    LinearRecurrentLayer,
    dense,
    project,
    to_batch_major,
    to_time_major,
    uniform_initializer,
)
from lrd.cells.ssm.common import (
    causal_depthwise_conv,
    check_time_scales,
    conv_params,
    inverse_softplus,
    log_uniform_initializer,
    to_width,
)
from lrd.registry import register_mixer
from lrd.scan import SCAN_MODES as LINEAR_SCAN_MODES
from lrd.scan import linear_scan

__all__ = ["FUSED_CHUNK_SIZE", "SelectiveSSM", "selective_scan", "selective_scan_fused"]

# Steps per checkpoint of the fused scan when chunk_size is not given: 8 measured fastest of 2-64 on XLA:CPU
# (fwd+bwd at B = 16, T = 1024, D = 128, N = 16: 2: 301 ms, 4: 261, 8: 270, 16: 280, 64: 332), and T / 8 saved
# states are a fraction of the memory a materialising scan needs.
FUSED_CHUNK_SIZE = 8


def selective_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    probe: jax.Array | None = None,
    **scan_options: Any,
) -> jax.Array:
    """The S6 recurrence (Mamba, Gu & Dao 2023, Algorithm 2 and eqs. 2a-2b, 4), per channel ``d`` and state ``n``:

    ``h_t[d, n] = exp(Delta_t[d] A[d, n]) h_{t-1}[d, n] + Delta_t[d] B_t[n] u_t[d]`` (zero-order hold for ``A``,
    the simplified Euler step ``B_bar = Delta B`` of the paper), ``y_t[d] = sum_n C_t[n] h_t[d, n] + D[d] u_t[d]``.
    The recurrence runs through :func:`lrd.scan.linear_scan` over ``[time, batch, d_inner, N]``.

    Args:
      u: ``float32[batch, time, d_inner]``; delta: ``float32[batch, time, d_inner]`` (positive);
      A: ``float32[d_inner, N]`` (negative); B, C: ``float32[batch, time, N]``; D: ``float32[d_inner]``;
      probe: ``None`` or ``float32[time, batch, d_inner, N]``.
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan`.

    Returns:
      ``float32[batch, time, d_inner]``.
    """
    if scan_options.get("mode") == "fused" and probe is None:
        if scan_options.get("truncation") is not None:
            raise ValueError("selective_scan: mode='fused' takes no truncation")
        chunk_size = scan_options.get("chunk_size")
        chunk_size = FUSED_CHUNK_SIZE if chunk_size is None else chunk_size
        return selective_scan_fused(u, delta, A, B, C, chunk_size=chunk_size) + D * u
    if scan_options.get("mode") == "fused":  # the probe needs every state: materialise them
        scan_options = {**scan_options, "mode": "sequential"}
    a = jnp.exp(delta[..., None] * A)  # [B, T, D, N]
    b = (delta * u)[..., None] * B[:, :, None, :]
    h = linear_scan(to_time_major(a), to_time_major(b), probe=probe, **scan_options)
    return jnp.einsum("tbdn,btn->btd", h, C) + D * u


def selective_scan_fused(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    *,
    chunk_size: int = FUSED_CHUNK_SIZE,
) -> jax.Array:
    """``sum_n C_t[n] h_t[d, n]`` of :func:`selective_scan` without ever forming ``[T, B, D, N]``.

    One ``lax.scan`` step computes ``a_t = exp(Delta_t A)`` and ``b_t = Delta_t u_t B_t`` from the step's inputs,
    updates the state and emits only ``y_t: [B, D]``. For the backward pass the steps are grouped in chunks of
    ``chunk_size`` under ``jax.checkpoint``: only each chunk's starting state is kept (``T / chunk_size`` states),
    and a chunk's steps are recomputed when its gradient is needed (the hardware-aware recomputation of Gu & Dao
    2023, Sec. 3.3, as a plain JAX program). Steps padded at the end have ``Delta = 0`` (``a = 1``, ``b = 0``),
    which leaves the state unchanged.

    Three choices, measured on XLA:CPU at ``B = 16, T = 1024, D = 128, N = 16`` (fwd+bwd of this function 553 ->
    189 ms with all three and chunks of 8 instead of 64, forward 92 -> 44 ms):

    * the state is ``[B, N, D]``: the channel axis, the widest, is the contiguous one, so the sums over ``N`` (the
      readout, and the gradient of ``Delta`` and of ``Delta u``) add whole rows rather than reduce 16-wide vectors;
    * ``A`` enters the loop broadcast over the batch, ``[B, N, D]``: the cotangent of a loop-invariant operand is
      accumulated in the loop's carry with the operand's shape, so ``A``'s gradient is summed over the batch once,
      after the loop, instead of at every step;
    * the input term and the readout are written as contractions (``einsum``), so their gradients (of ``B_t``,
      ``C_t``, ``Delta_t u_t``) are batched dot products too; as broadcast-multiply-sums they were reductions over
      the channel axis at 3.5x the time (a loop of 1024 ``[16, 16, 128] -> [16, 16]`` steps: 45 ms vs 13 ms).
    """
    if chunk_size < 1:
        raise ValueError(f"selective_scan_fused: chunk_size must be >= 1, got {chunk_size}")
    batch, num_steps, inner = u.shape
    size = max(1, min(chunk_size, num_steps))
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps

    def chunks(x: jax.Array) -> jax.Array:  # [B, T, ...] -> [num_chunks, size, B, ...]
        x = to_time_major(x)
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
        return x.reshape((num_chunks, size) + x.shape[1:])

    A_nd = jnp.broadcast_to(A.T, (batch,) + A.T.shape)  # [B, N, D]

    def step(h, inputs):
        delta_t, u_t, B_t, C_t = inputs
        # float32 products on every backend (no TF32 / bf16 passes for the state on accelerators)
        b_t = jnp.einsum("bn,bd->bnd", B_t, delta_t * u_t, precision="highest")
        h = jnp.exp(delta_t[:, None, :] * A_nd) * h + b_t
        return h, jnp.einsum("bnd,bn->bd", h, C_t, precision="highest")

    @jax.checkpoint
    def chunk(h, inputs):
        return jax.lax.scan(step, h, inputs)

    h0 = jnp.zeros((batch, A.shape[-1], inner), u.dtype)
    _, ys = jax.lax.scan(chunk, h0, tuple(chunks(x) for x in (delta, u, B, C)))
    return to_batch_major(ys.reshape((num_chunks * size, batch, inner))[:num_steps])


@register_mixer(
    "selective_ssm",
    family="ssm",
    description="selective SSM (S6) in a Mamba block: input-dependent Delta, B, C (Gu & Dao 2023)",
)
class SelectiveSSM(LinearRecurrentLayer):
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
    conv bias 0. Not included: the out-projection rescaling by depth. The fused hardware-aware kernel of the paper
    has a plain-JAX counterpart in ``scan_mode="fused"``; the other scan modes materialise
    ``[time, batch, d_inner, N]``.

    Attributes:
      hidden_size: output width (``d_model``).
      state_size: ``N`` per channel.
      expand: ``E`` (block only).
      conv_width: temporal width of the depthwise convolution (block only; 0 disables it).
      dt_rank: ``R`` (``None``: ``ceil(hidden_size / 16)`` as in Mamba).
      dt_min, dt_max, dt_init_floor: initial range of ``Delta``.
      block: the full Mamba block (True) or the S6 layer alone (False).
      scan_mode, chunk_size, truncation: see :class:`lrd.cells.base.LinearRecurrentLayer`; ``scan_mode="fused"``
        runs :func:`selective_scan_fused` (no ``[T, B, D, N]`` state kept; ``chunk_size`` steps per checkpoint,
        ``None``: ``FUSED_CHUNK_SIZE``).
    """

    SCAN_MODES: ClassVar[tuple[str, ...]] = (*LINEAR_SCAN_MODES, "fused")
    # fused measured 2.1x faster than the sequential scan with 9x less memory on CPU (T=1024, d_model 64, batch 16),
    # before its layout work; since, 3.04x the LSTM (bench_selective_fused_T1024_d64_cpu2.json)
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "fused", "gpu": "associative"}
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked", "fused"),
        "truncation": LINEAR_SCAN_MODES,
    }

    state_size: int = 16
    expand: int = 2
    conv_width: int = 4
    dt_rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    block: bool = True

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("state_size")
        self.require_int("expand")
        self.require_int("conv_width", 0)
        self.require_int("dt_rank", optional=True)
        check_time_scales(self)
        self.require_number("dt_init_floor", low=0.0)
        self.require_bool("block")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        n = self.state_size
        rank = self.dt_rank or math.ceil(self.hidden_size / 16)
        if self.block:
            inner = self.expand * self.hidden_size
            u, z = jnp.split(dense(self, x, 2 * inner, "in_proj", bias=False), 2, axis=-1)
            if self.conv_width:
                u = causal_depthwise_conv(u, *conv_params(self, inner, self.conv_width))
            u = jax.nn.silu(u)
        else:
            inner = self.hidden_size
            u = to_width(self, x, inner)

        delta_low, B, C = jnp.split(
            dense(self, u, rank + 2 * n, "x_proj", bias=False), [rank, rank + n], axis=-1
        )
        bound = rank**-0.5
        dt_kernel = self.weight("dt_proj_kernel", uniform_initializer(-bound, bound), (rank, inner))

        def dt_bias_init(key, shape, dtype=jnp.float32):
            dt = jnp.exp(log_uniform_initializer(self.dt_min, self.dt_max)(key, shape, dtype))
            return inverse_softplus(jnp.maximum(dt, self.dt_init_floor))

        dt_bias = self.param("dt_bias", dt_bias_init, (inner,))
        delta = jax.nn.softplus(project(delta_low, dt_kernel, self.dtype) + dt_bias)
        A_log = self.param(
            "A_log",
            lambda _key, shape: jnp.broadcast_to(jnp.log(jnp.arange(1, n + 1, dtype=jnp.float32)), shape),
            (inner, n),
        )
        D = self.param("D", nn.initializers.ones_init(), (inner,))
        probe = self.probe(jnp.zeros((x.shape[0], inner, n), jnp.float32), x.shape[1])
        # decay: the slowest of the N per-channel decays exp(Delta_t A[d, n]) (A < 0, so n = argmax A), [B, T, D]
        self.record("decay", lambda: jnp.exp(delta * jnp.max(-jnp.exp(A_log), axis=-1)))
        options = self.scan_options()
        if (
            options["mode"] == "fused"
        ):  # None: the fused scan's own default (selective_scan), not the chunked one's
            options["chunk_size"] = self.chunk_size
        y = selective_scan(u, delta, -jnp.exp(A_log), B, C, D, probe=probe, **options)
        if not self.block:
            return y
        return dense(self, y * jax.nn.silu(z), self.hidden_size, "out_proj", bias=False)
