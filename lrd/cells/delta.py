"""Delta-rule linear RNNs: DeltaNet (Schlag et al. 2021; Yang et al. 2024) and Gated DeltaNet (Yang et al. 2025).

Per head, a matrix memory ``S: [d_v, d_k]`` is corrected toward each new key-value pair instead of only added to
(the delta rule, one step of online least squares on ``||S k_t - v_t||^2`` with step size ``beta_t``)::

    DeltaNet:        S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    Gated DeltaNet:  S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T
    output:          o_t = S_t q_t

with ``q_t, k_t`` L2-normalised (as in both papers, so ``I - beta k k^T`` has eigenvalues ``1 - beta`` and 1),
``beta_t = sigmoid(w_beta . x_t + b_beta)`` in ``(0, 1)`` and, gated, ``alpha_t = sigmoid(w_alpha . x_t +
b_alpha)``, one scalar per head and step.

Two forms of the same function (``scan_mode``):

* ``"sequential"``: the recurrence above, one step at a time (``O(T d_k d_v)`` work, ``T`` sequential steps). The
  steps run in segments of :data:`RECURRENT_SEGMENT` under ``jax.checkpoint``: the backward pass keeps one state
  per segment and recomputes a segment's steps, instead of keeping every step's states (``[T, batch, heads, d_v,
  d_k]`` several times over). On CPU that is faster as well as smaller (fwd+bwd of the rule alone, T = 1024,
  batch 16, 4 heads of 16: 244 ms and 26 MiB of temp memory against 316 ms and 217 MiB, measured side by side).
* ``"chunked"``: the chunkwise-parallel form (Yang et al. 2024, Sec. 3, the UT transform). Inside a chunk
  starting from state ``S_0``, with ``g_t`` the cumulative ``log alpha`` and ``Gamma_ts = exp(g_t - g_s)`` for
  ``s <= t`` (all ones for DeltaNet), the pseudo-values ``u_t = beta_t (v_t - alpha_t S_{t-1} k_t)`` solve the
  unit lower-triangular system ``(I + diag(beta) (tril(K K^T, -1) o Gamma)) U = diag(beta) (V - diag(e^g) K
  S_0^T)``; then ``O = diag(e^g) Q S_0^T + (Q K^T o Gamma o M) U`` (``M`` causal, diagonal included) and the next
  chunk starts from ``S = e^{g_C} S_0 + (U o e^{g_C - g})^T K``. Matmuls of chunk size instead of ``T`` steps.

Not included from the papers' blocks: the short causal convolutions on q, k, v, the output norm and gate; the layer
here is projections -> delta rule -> output projection, like :mod:`lrd.cells.attention`'s linear attention.
The gradient probe (the state ``S`` at every step) runs the sequential form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.attention import _output, _qkv
from lrd.cells.base import DEFAULT_CHUNK_SIZE, Mixer, probe_variable, project, to_batch_major, to_time_major
from lrd.registry import register_mixer

__all__ = ["DeltaNet", "GatedDeltaNet", "delta_rule_recurrent", "delta_rule_chunked", "DELTA_SCAN_MODES"]

DELTA_SCAN_MODES = ("sequential", "chunked")
RECURRENT_SEGMENT = 32  # steps per jax.checkpoint segment of the sequential form (module docstring)


def _l2_normalise(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def delta_rule_recurrent(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    beta: jax.Array,
    log_alpha: jax.Array | None = None,
    *,
    probe: jax.Array | None = None,
    segment: int = RECURRENT_SEGMENT,
) -> jax.Array:
    """The (gated) delta rule step by step. ``q, k: [batch, time, heads, d_k]``, ``v: [batch, time, heads, d_v]``,
    ``beta, log_alpha: [batch, time, heads]`` (``None``: ``alpha = 1``), ``probe: None`` or ``[time, batch, heads,
    d_v, d_k]`` added to each ``S_t``. Returns ``o: [batch, time, heads, d_v]``. ``segment``: steps per
    ``jax.checkpoint`` segment (backward memory; no effect on the values). Steps padded at the end have ``k = 0,
    beta = 0, alpha = 1``: they leave the state unchanged."""
    batch, num_steps, heads, d_k = k.shape
    d_v = v.shape[-1]
    if log_alpha is None:
        log_alpha = jnp.zeros(beta.shape, beta.dtype)
    size = max(1, min(segment, num_steps))
    num_segments = -(-num_steps // size)
    pad = num_segments * size - num_steps

    def segments(x: jax.Array) -> jax.Array:  # [B, T, ...] -> [num_segments, size, B, ...]
        x = to_time_major(jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)))
        return x.reshape((num_segments, size) + x.shape[1:])

    xs = tuple(segments(a) for a in (q, k, v, beta, log_alpha))
    if probe is not None:
        probe = jnp.pad(probe, [(0, pad)] + [(0, 0)] * (probe.ndim - 1))
        probe = probe.reshape((num_segments, size) + probe.shape[1:])

    def step(state, inputs):
        (q_t, k_t, v_t, beta_t, log_alpha_t), probe_t = inputs
        state = jnp.exp(log_alpha_t)[..., None, None] * state
        error = v_t - jnp.einsum("bhvk,bhk->bhv", state, k_t)
        state = state + jnp.einsum("bhv,bhk->bhvk", beta_t[..., None] * error, k_t)
        if probe_t is not None:
            state = state + probe_t
        return state, jnp.einsum("bhvk,bhk->bhv", state, q_t)

    @jax.checkpoint
    def one_segment(state, inputs):
        return jax.lax.scan(step, state, inputs)

    state0 = jnp.zeros((batch, heads, d_v, d_k), v.dtype)
    _, o = jax.lax.scan(one_segment, state0, (xs, probe))
    return to_batch_major(o.reshape((num_segments * size,) + o.shape[2:])[:num_steps])


def delta_rule_chunked(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    beta: jax.Array,
    log_alpha: jax.Array | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
    """The chunkwise-parallel form of :func:`delta_rule_recurrent` (module docstring); same shapes and result.

    Steps padded at the end have ``k = 0, beta = 0, alpha = 1``: they leave the state unchanged."""
    batch, num_steps, heads, d_k = k.shape
    d_v = v.shape[-1]
    if log_alpha is None:
        log_alpha = jnp.zeros(beta.shape, beta.dtype)
    size = max(1, min(chunk_size, num_steps))
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps

    def chunks(x: jax.Array) -> jax.Array:  # [B, T, H, ...] -> [num_chunks, B, H, size, ...]
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        x = x.reshape((batch, num_chunks, size) + x.shape[2:])
        return jnp.moveaxis(jnp.moveaxis(x, 1, 0), 2, 3)  # [n, B, size, H, ...] -> [n, B, H, size, ...]

    causal = jnp.tril(jnp.ones((size, size), bool))
    strictly_lower = jnp.tril(jnp.ones((size, size), bool), -1)

    def one_chunk(state, inputs):
        q_c, k_c, v_c, beta_c, log_alpha_c = inputs  # [B, H, C, d] and [B, H, C]
        g = jnp.cumsum(log_alpha_c, axis=-1)
        diff = g[..., :, None] - g[..., None, :]
        decay = jnp.where(causal, jnp.exp(jnp.where(causal, diff, 0.0)), 0.0)  # Gamma_ts, s <= t
        kk = jnp.einsum("bhtk,bhsk->bhts", k_c, k_c)
        system = jnp.eye(size) + beta_c[..., None] * jnp.where(strictly_lower, kk * decay, 0.0)
        carried = jnp.exp(g)[..., None] * jnp.einsum("bhtk,bhvk->bhtv", k_c, state)
        rhs = beta_c[..., None] * (v_c - carried)
        u = jax.scipy.linalg.solve_triangular(system, rhs, lower=True, unit_diagonal=True)
        qk = jnp.einsum("bhtk,bhsk->bhts", q_c, k_c) * decay
        o = jnp.exp(g)[..., None] * jnp.einsum("bhtk,bhvk->bhtv", q_c, state) + qk @ u
        to_end = jnp.exp(g[..., -1:] - g)  # e^{g_C - g_s}
        state = jnp.exp(g[..., -1])[..., None, None] * state + jnp.einsum(
            "bhsv,bhsk->bhvk", u * to_end[..., None], k_c
        )
        return state, o

    state0 = jnp.zeros((batch, heads, d_v, d_k), v.dtype)
    _, o = jax.lax.scan(one_chunk, state0, tuple(chunks(x) for x in (q, k, v, beta, log_alpha)))
    o = jnp.moveaxis(o, 0, 1)  # [B, n, H, C, d_v]
    o = jnp.moveaxis(o, 2, 3).reshape(batch, num_chunks * size, heads, d_v)
    return o[:, :num_steps]


class _DeltaRule(Mixer):
    """What both delta-rule layers share: heads, the two forms, the projections and the output."""

    scan_mode: str = "auto"
    chunk_size: int | None = None
    num_heads: int = 4

    SCAN_MODES: ClassVar[tuple[str, ...]] = DELTA_SCAN_MODES
    # measured on CPU (T=1024, d_model 64, batch 16, fwd+bwd vs the LSTM): sequential 1.84x / 2.68x (gated), chunked
    # 4.57x / 5.45x; the chunkwise form's matmuls are for accelerators
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "sequential", "gpu": "chunked"}
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {"chunk_size": ("chunked",)}
    GATED: ClassVar[bool] = False

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_heads()
        self.require_int("chunk_size", optional=True)

    def _scalar_gate(self, x: jax.Array, name: str, bias_init: Any) -> jax.Array:
        """``w . x_t + b`` per head: ``[batch, time, heads]``."""
        kernel = self.weight(f"{name}_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.num_heads))
        bias = self.param(f"{name}_bias", bias_init, (self.num_heads,))
        return project(x, kernel, self.dtype) + bias

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        q, k, v = _qkv(self, x)
        q, k = _l2_normalise(q), _l2_normalise(k)
        beta = jax.nn.sigmoid(self._scalar_gate(x, "beta", nn.initializers.zeros_init()))
        log_alpha = None
        if self.GATED:
            # alpha = sigmoid(b) starts between 0.9 and 0.999 over the heads (memories of 10 to 1000 steps)
            def alpha_bias(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
                alpha = 1.0 - jnp.logspace(-1.0, -3.0, shape[0], dtype=dtype)
                return jnp.log(alpha) - jnp.log1p(-alpha)

            log_alpha = jax.nn.log_sigmoid(self._scalar_gate(x, "alpha", alpha_bias))
        batch, num_steps, heads, head_dim = q.shape
        probe = probe_variable(self, jnp.zeros((batch, heads, head_dim, head_dim), jnp.float32), num_steps)
        if self.effective_scan_mode() == "chunked" and probe is None:
            o = delta_rule_chunked(q, k, v, beta, log_alpha, chunk_size=self.chunk_size or DEFAULT_CHUNK_SIZE)
        else:
            o = delta_rule_recurrent(q, k, v, beta, log_alpha, probe=probe)
        return _output(self, o)


@register_mixer(
    "deltanet",
    family="delta",
    description="DeltaNet: matrix memory updated by the delta rule (Schlag et al. 2021; Yang et al. 2024)",
)
class DeltaNet(_DeltaRule):
    """DeltaNet (module docstring): ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; state
    ``head_dim x head_dim`` per head, ``head_dim = hidden_size // num_heads``."""


@register_mixer(
    "gated_deltanet",
    family="delta",
    description="Gated DeltaNet: the delta rule with a scalar decay per head and step (Yang et al. 2025)",
)
class GatedDeltaNet(_DeltaRule):
    """Gated DeltaNet (module docstring); ``alpha`` starts between 0.9 and 0.999 across heads."""

    GATED: ClassVar[bool] = True
