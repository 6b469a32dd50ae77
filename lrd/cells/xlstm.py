"""xLSTM cells: the scalar-memory sLSTM and the matrix-memory mLSTM.

Beck, Poeppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter & Hochreiter, "xLSTM: Extended Long
Short-Term Memory", NeurIPS 2024 (arXiv:2405.04517). Both cells replace the LSTM's sigmoid input gate by an
exponential one, ``i_t = exp(i~_t)``, and keep a normaliser state ``n_t`` (the running sum of gate weights) so that
the read-out ``c_t / n_t`` is a gate-weighted average of the stored values. The forget gate is
``f_t = sigmoid(f~_t)`` (or ``exp(f~_t)`` for the sLSTM); both are handled in log space as ``log f_t``.

Stabilisation (paper eqs. 15-17; the mLSTM uses the same scheme). ``exp(i~)`` overflows, so the state is kept
scaled by ``exp(-m_t)`` with the stabiliser ``m_t = max(log f_t + m_{t-1}, i~_t)``: the stored
``c~_t = c_t exp(-m_t)`` and ``n~_t = n_t exp(-m_t)`` follow ``c~_t = f'_t c~_{t-1} + i'_t z_t`` with
``i'_t = exp(i~_t - m_t) <= 1`` and ``f'_t = exp(log f_t + m_{t-1} - m_t) <= 1``. Every read-out is a ratio in
which ``exp(-m_t)`` cancels, so the outputs are *exactly* independent of ``m`` (for the mLSTM the lower bound 1 of
the normaliser becomes ``exp(-m_t)``). That is why ``m`` is passed through ``stop_gradient`` here: the total
derivative of any output with respect to ``m`` is zero, and cutting that path changes no gradient (tests check the
stabilised forms against the plain equations in float64). Initial states are zero: ``c_0 = n_0 = 0``, ``m_0 = 0``,
``h_0 = 0``.

sLSTM (section 2.2, eqs. 8-17), ``num_heads`` heads of ``head_dim = hidden_size / num_heads`` units::

    [i~, f~, z~, o~] = W x_t + R h_{t-1} + b        R block-diagonal: one [head_dim, head_dim] block per head/gate
    c_t = f_t c_{t-1} + i_t tanh(z~_t)               n_t = f_t n_{t-1} + i_t
    h_t = sigmoid(o~_t) * c_t / n_t

  State ``(c, n, m, h)``, each ``float32[batch, hidden_size]``. The recurrence through ``h`` is nonlinear, so it
  runs through :func:`lrd.scan.bptt_scan` (truncation, unroll, remat and the gradient probe on the whole state).

mLSTM (section 2.3, eqs. 19-27), ``num_heads`` heads of ``head_dim = hidden_size / num_heads``, per head::

    q_t = W_q x_t + b_q,  k_t = (W_k x_t + b_k) / sqrt(head_dim),  v_t = W_v x_t + b_v
    i~_t, f~_t = w_i^T x_t + b_i, w_f^T x_t + b_f    (scalars per head),   o_t = sigmoid(W_o x_t + b_o)
    C_t = f_t C_{t-1} + i_t v_t k_t^T                  C: [head_dim (value), head_dim (key)]
    n_t = f_t n_{t-1} + i_t k_t
    h_t = o_t * (C_t q_t) / max(|n_t^T q_t|, 1)

  There is no hidden-to-hidden recurrence, so the gates depend on ``x`` only and the same function has three forms
  (field ``scan_mode``):

  * ``"sequential"`` (the recurrent form): the stabilised recurrence on ``(C~, n~, m)`` through
    :func:`lrd.scan.bptt_scan` (``O(T)`` sequential steps, state ``head_dim^2`` per head); the only form that
    honours ``truncation``, ``unroll`` and ``remat``;
  * ``"parallel"`` (paper appendix, the "parallel formulation"): with ``F_t = sum_{r<=t} log f_r``, the log gate
    matrix ``D_ts = F_t - F_s + i~_s`` for ``s <= t`` (``-inf`` above the diagonal), the row stabiliser
    ``m_t = max_s D_ts`` and ``S = (Q K^T) o exp(D - m)``, the read-out is
    ``h~_t = sum_s S_ts v_s / max(|sum_s S_ts|, exp(-m_t))`` (``O(T^2)`` work and memory);
  * ``"chunked"`` (the chunkwise form): the parallel form inside chunks of ``chunk_size`` steps, and the
    stabilised state ``(C~, n~, m)`` passed from chunk to chunk by a sequential scan over ``T / chunk_size``
    chunks.

  Gradient probe: the probe is the recurrent state ``(C~_t, n~_t, m_t)`` (``[time, batch, heads, head_dim,
  head_dim]``, ``[time, batch, heads, head_dim]``, ``[time, batch, heads]``). Only the recurrent form has that
  state at every step, so when the ``"probes"`` collection is requested the module evaluates the recurrent form
  whatever ``scan_mode`` says (the same function, hence the same outputs and gradients; only the cost differs).

Deviations from the paper, all deliberate: only the cells are implemented (the xLSTM *blocks*, with their
up/down projections, causal convolution and group norm, are left to :class:`lrd.models.SequenceModel`'s generic
residual block); the mLSTM has no output projection after ``h_t`` (the cell's output ``o_t * h~_t`` already has
``hidden_size`` features); the sLSTM's recurrent weights are initialised orthogonal per head and gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import (
    DEFAULT_CHUNK_SIZE,
    RecurrentCell,
    add_probe,
    project,
    to_batch_major,
    to_time_major,
)
from lrd.registry import register_mixer
from lrd.scan import bptt_scan

FORGET_GATES = ("sigmoid", "exp")
MLSTM_SCAN_MODES = ("sequential", "parallel", "chunked")

__all__ = [
    "SLSTM",
    "MLSTM",
    "FORGET_GATES",
    "MLSTM_SCAN_MODES",
    "log_forget_gate",
    "slstm_step",
    "slstm_update",
    "slstm_scan",
    "mlstm_step",
    "mlstm_read_out",
    "mlstm_recurrent",
    "mlstm_parallel",
    "mlstm_chunkwise",
]


def _linspace_init(low: float, high: float):
    """Bias initialiser: ``linspace(low, high)`` over the (only) axis, so units get a spread of time scales."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        del key
        return jnp.linspace(low, high, shape[0], dtype=dtype)

    return init


def log_forget_gate(f_tilde: jax.Array, kind: str = "sigmoid") -> jax.Array:
    """``log f_t`` from the pre-activation: ``log sigmoid(f~)`` (``kind="sigmoid"``) or ``f~`` (``"exp"``)."""
    if kind == "sigmoid":
        return jax.nn.log_sigmoid(f_tilde)
    if kind == "exp":
        return f_tilde
    raise ValueError(f"forget_gate={kind!r} is unknown; allowed values: {', '.join(FORGET_GATES)}")


# ----------------------------------------------------------------------------------------------------------------
# sLSTM


def _block_diagonal_matmul(h: jax.Array, recurrent_kernel: jax.Array) -> jax.Array:
    """``h: [batch, hidden] x R: [heads, head_dim, 4, head_dim] -> [batch, 4 * hidden]``, gate-major.

    ``R[n, :, g, :]`` is the block of gate ``g`` for head ``n``; the result is laid out ``[i, f, z, o]``, each
    ``[heads * head_dim]``, matching the input projection.
    """
    heads, head_dim = recurrent_kernel.shape[0], recurrent_kernel.shape[1]
    h_heads = h.reshape(h.shape[:-1] + (heads, head_dim))
    out = jnp.einsum("bnk,nkgj->bgnj", h_heads, recurrent_kernel)
    return out.reshape(h.shape[:-1] + (4 * heads * head_dim,))


def slstm_update(
    carry: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    forget_gate: str = "sigmoid",
    probe: tuple[jax.Array, jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[tuple[jax.Array, jax.Array, jax.Array, jax.Array], dict[str, jax.Array]]:
    """:func:`slstm_step` and its forget gate ``{"forget_gate": f_t}`` (``sigmoid(f~)`` or ``exp(f~)``).

    A probe ``(p_c, p_n, p_m, p_h)`` is added to each state leaf where it is computed, before ``h_t`` is read from
    ``c~_t / n~_t``, so its gradient is the total derivative with respect to that leaf.
    """
    c, n, m, h = carry
    p_c, p_n, p_m, p_h = (None,) * 4 if probe is None else probe
    pre = xw + _block_diagonal_matmul(h, recurrent_kernel)
    i_tilde, f_tilde, z_tilde, o_tilde = jnp.split(pre, 4, axis=-1)
    log_f = log_forget_gate(f_tilde, forget_gate)
    # The outputs do not depend on m (it cancels in c~/n~), so no gradient needs to flow through it.
    m_new = jax.lax.stop_gradient(jnp.maximum(log_f + m, i_tilde))
    i_prime = jnp.exp(i_tilde - m_new)
    f_prime = jnp.exp(log_f + m - m_new)
    c = add_probe(f_prime * c + i_prime * jnp.tanh(z_tilde), p_c)
    n = add_probe(f_prime * n + i_prime, p_n)
    m_new = add_probe(m_new, p_m)
    h = add_probe(jax.nn.sigmoid(o_tilde) * c / n, p_h)
    return (c, n, m_new, h), {"forget_gate": jnp.exp(log_f)}


def slstm_step(
    carry: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    forget_gate: str = "sigmoid",
    probe: tuple[jax.Array, jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One stabilised sLSTM step (Beck et al. 2024, eqs. 8-17).

    Args:
      carry: ``(c, n, m, h)``, each ``float32[batch, hidden]``: scaled cell ``c~ = c exp(-m)``, scaled normaliser
        ``n~ = n exp(-m)``, stabiliser ``m`` and hidden state ``h``.
      xw: the projected input of this step, ``W x_t + b``: ``float32[batch, 4 * hidden]``, gates ``[i, f, z, o]``.
      recurrent_kernel: ``float32[heads, head_dim, 4, head_dim]``, the block-diagonal ``R`` (see
        :func:`_block_diagonal_matmul`).
      forget_gate: ``"sigmoid"`` or ``"exp"``.
      probe: ``None`` or the gradient probe of the four leaves (see :func:`slstm_update`).

    ``pre = xw + R h_{t-1}``; ``m_t = max(log f_t + m_{t-1}, i~_t)``; ``i' = exp(i~ - m_t)``,
    ``f' = exp(log f_t + m_{t-1} - m_t)``; ``c~_t = f' c~_{t-1} + i' tanh(z~)``; ``n~_t = f' n~_{t-1} + i'``;
    ``h_t = sigmoid(o~) c~_t / n~_t``.
    """
    return slstm_update(carry, xw, recurrent_kernel, forget_gate, probe)[0]


def slstm_scan(
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    *,
    forget_gate: str = "sigmoid",
    probe: Any | None = None,
    **scan_options: Any,
) -> jax.Array:
    """Run :func:`slstm_step` over ``xw: float32[time, batch, 4 * hidden]`` from zero state; returns ``h: [time,
    batch, hidden]``. ``probe`` (zeros ``[time, ...]`` for each of ``(c, n, m, h)``, added inside each step) and
    ``scan_options`` (``truncation``, ``unroll``, ``remat``) go to :func:`lrd.scan.bptt_scan`."""
    log_forget_gate(jnp.zeros(()), forget_gate)  # validate the name before tracing the scan
    _, hs = bptt_scan(
        lambda carry, inputs: slstm_step(carry, inputs[0], recurrent_kernel, forget_gate, inputs[1]),
        _slstm_zero_state(xw),
        (xw, probe),
        emit=lambda carry, _x: carry[3],
        **scan_options,
    )
    return hs


def _slstm_zero_state(xw: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    zeros = jnp.zeros(xw.shape[1:-1] + (xw.shape[-1] // 4,), xw.dtype)
    return zeros, zeros, zeros, zeros


def _slstm_recurrent_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """``[heads, head_dim, 4, head_dim]``: an independent orthogonal block per head and gate."""
    heads, head_dim, gates, _ = shape
    keys = jax.random.split(key, heads * gates)
    # One QR per block, not a vmapped (batched) one: see lrd.train.init_states on batched QR hanging XLA:CPU.
    blocks = jnp.stack([nn.initializers.orthogonal()(k, (head_dim, head_dim), dtype) for k in keys])
    return blocks.reshape(heads, gates, head_dim, head_dim).transpose(0, 2, 1, 3)


@register_mixer(
    "slstm",
    family="xlstm",
    description="sLSTM: exponential gating, normaliser, block-diagonal heads (Beck et al. 2024)",
)
class SLSTM(RecurrentCell):
    """sLSTM cell (Beck et al. 2024, eqs. 8-17): ``float32[batch, time, d_in] -> float32[batch, time, hidden]``.

    The input projection ``W x + b`` (``input_kernel: [d_in, 4 * hidden]``, gates ``[i, f, z, o]``) is computed for
    all steps at once; the recurrence ``R h_{t-1}`` with block-diagonal ``recurrent_kernel: [heads, head_dim, 4,
    head_dim]`` runs in :func:`slstm_step` through :func:`lrd.scan.bptt_scan`. The output is the ``h`` sequence.

    Attributes:
      num_heads: number of heads; ``R`` mixes units only within a head (``hidden_size % num_heads == 0``).
      forget_gate: ``"sigmoid"`` (``log f = log sigmoid(f~)``) or ``"exp"`` (``log f = f~``).
      forget_bias_min, forget_bias_max: forget-gate biases ``linspace(min, max)`` over the units, so
        ``sigmoid(b_f)`` starts between about 0.95 and 0.998 (memory of 20 to 400 steps). With
        ``forget_gate="exp"`` the bias is ``log sigmoid`` of these values, so both gates start at the same ``f``
        (an exponential forget gate starting at ``exp(3) > 1`` would weight old inputs above new ones).
      input_bias: initial input-gate bias.
    """

    STATE_NAMES: ClassVar[tuple[str, ...]] = ("c", "n", "m", "h")

    num_heads: int = 4
    forget_gate: str = "sigmoid"
    forget_bias_min: float = 3.0
    forget_bias_max: float = 6.0
    input_bias: float = 0.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_heads()
        self.require_choice("forget_gate", FORGET_GATES)
        for field in ("forget_bias_min", "forget_bias_max", "input_bias"):
            self.require_number(field)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        head_dim = h_size // self.num_heads
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 4 * h_size))
        forget = _linspace_init(self.forget_bias_min, self.forget_bias_max)

        def bias_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
            bias = jnp.zeros(shape, dtype).at[:h_size].set(self.input_bias)
            forget_bias = forget(key, (h_size,), dtype)
            if self.forget_gate == "exp":
                forget_bias = jax.nn.log_sigmoid(forget_bias)
            return bias.at[h_size : 2 * h_size].set(forget_bias)

        bias = self.param("bias", bias_init, (4 * h_size,))
        recurrent_kernel = self.weight(
            "recurrent_kernel", _slstm_recurrent_init, (self.num_heads, head_dim, 4, head_dim)
        )
        xs, project = self.project_inputs(x, input_kernel, bias)
        zeros = jnp.zeros((x.shape[0], h_size), x.dtype)
        hs = self.recur(
            lambda carry, x_t, p: slstm_update(carry, project(x_t), recurrent_kernel, self.forget_gate, p),
            (zeros, zeros, zeros, zeros),
            xs,
            emit=lambda carry: carry[3],
        )
        return to_batch_major(hs)


# ----------------------------------------------------------------------------------------------------------------
# mLSTM. Per-head arrays are batch-major: q, k, v ``[batch, time, heads, head_dim]``; i~, log f ``[batch, time,
# heads]``. ``k`` is already scaled by ``1 / sqrt(head_dim)``.


def mlstm_step(
    carry: tuple[jax.Array, jax.Array, jax.Array],
    inputs: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One stabilised mLSTM state update (Beck et al. 2024, eqs. 19-20, stabilised as in eqs. 15-17).

    Args:
      carry: ``(C~, n~, m)``: ``float32[batch, heads, head_dim (value), head_dim (key)]``,
        ``float32[batch, heads, head_dim]``, ``float32[batch, heads]``.
      inputs: ``(k_t, v_t, i~_t, log f_t)``: ``[batch, heads, head_dim]`` twice, ``[batch, heads]`` twice.

    ``m_t = max(log f_t + m_{t-1}, i~_t)``, ``C~_t = f' C~_{t-1} + i' v_t k_t^T``, ``n~_t = f' n~_{t-1} + i' k_t``
    with ``i' = exp(i~_t - m_t)``, ``f' = exp(log f_t + m_{t-1} - m_t)``.
    """
    c, n, m = carry
    k, v, i_tilde, log_f = inputs
    m_new = jax.lax.stop_gradient(jnp.maximum(log_f + m, i_tilde))  # outputs do not depend on m
    i_prime = jnp.exp(i_tilde - m_new)
    f_prime = jnp.exp(log_f + m - m_new)
    c = f_prime[..., None, None] * c + i_prime[..., None, None] * (v[..., :, None] * k[..., None, :])
    n = f_prime[..., None] * n + i_prime[..., None] * k
    return c, n, m_new


def mlstm_read_out(carry: tuple[jax.Array, jax.Array, jax.Array], q: jax.Array) -> jax.Array:
    """``h~_t = C~_t q_t / max(|n~_t^T q_t|, exp(-m_t))`` (eq. 21, stabilised); ``q: [batch, heads, head_dim]``.

    The reference implementation adds a small ``eps`` to this denominator; it is omitted here (the paper's eq. 21
    has none), since ``exp(-m_t) > 0`` already bounds it away from zero. Outputs differ from the reference by
    about ``eps / denominator`` relative."""
    c, n, m = carry
    numerator = jnp.einsum("bhvk,bhk->bhv", c, q)
    denominator = jnp.maximum(jnp.abs(jnp.einsum("bhk,bhk->bh", n, q)), jnp.exp(-m))
    return numerator / denominator[..., None]


def _mlstm_state_example(q: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    batch, _, heads, head_dim = q.shape
    return (
        jnp.zeros((batch, heads, head_dim, head_dim), q.dtype),
        jnp.zeros((batch, heads, head_dim), q.dtype),
        jnp.zeros((batch, heads), q.dtype),
    )


def mlstm_recurrent(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    i_tilde: jax.Array,
    log_f: jax.Array,
    *,
    probe: Any | None = None,
    **scan_options: Any,
) -> jax.Array:
    """Recurrent form: :func:`mlstm_step` and :func:`mlstm_read_out` through :func:`lrd.scan.bptt_scan`.

    ``q, k, v: float32[batch, time, heads, head_dim]``, ``i_tilde, log_f: float32[batch, time, heads]`` ->
    ``h~: float32[batch, time, heads, head_dim]``. ``probe``: ``None`` or zeros ``[time, ...]`` for each of
    ``(C~, n~, m)``, added to the state after every step. ``scan_options`` (``truncation``, ``unroll``,
    ``remat``) go to :func:`lrd.scan.bptt_scan`.
    """
    xs = tuple(to_time_major(a) for a in (q, k, v, i_tilde, log_f))
    _, hs = bptt_scan(
        lambda carry, x_t: mlstm_step(carry, x_t[1:]),
        _mlstm_state_example(q),
        xs,
        emit=lambda carry, x_t: mlstm_read_out(carry, x_t[0]),
        probe=probe,
        **scan_options,
    )
    return to_batch_major(hs)


def _causal_log_weights(i_tilde: jax.Array, log_f: jax.Array) -> jax.Array:
    """``D[b, h, t, s] = sum_{r=s+1}^{t} log f_r + i~_s`` for ``s <= t``, ``-inf`` otherwise.

    ``i_tilde, log_f: [..., time, heads]`` -> ``[..., heads, time, time]``. The segment sums are differences of
    the inclusive cumulative sum ``F``: ``F_t - F_s``.
    """
    num_steps = log_f.shape[-2]
    cum = jnp.cumsum(jnp.swapaxes(log_f, -1, -2), axis=-1)  # [..., heads, time]
    log_weights = cum[..., :, None] - cum[..., None, :] + jnp.swapaxes(i_tilde, -1, -2)[..., None, :]
    causal = jnp.tril(jnp.ones((num_steps, num_steps), bool))
    return jnp.where(causal, log_weights, -jnp.inf)


def mlstm_parallel(
    q: jax.Array, k: jax.Array, v: jax.Array, i_tilde: jax.Array, log_f: jax.Array
) -> jax.Array:
    """Parallel form (Beck et al. 2024, appendix, parallel mLSTM): shapes as in :func:`mlstm_recurrent`.

    ``D = _causal_log_weights``, ``m_t = max_s D_ts``, ``S = (q_t . k_s) exp(D_ts - m_t)``,
    ``h~_t = sum_s S_ts v_s / max(|sum_s S_ts|, exp(-m_t))``. Memory ``O(batch * heads * T^2)``.
    """
    log_weights = _causal_log_weights(i_tilde, log_f)  # [B, H, T, S]
    m = jax.lax.stop_gradient(jnp.max(log_weights, axis=-1))  # finite: the diagonal is always there
    scores = jnp.einsum("bthk,bshk->bhts", q, k) * jnp.exp(log_weights - m[..., None])
    denominator = jnp.maximum(jnp.abs(jnp.sum(scores, axis=-1)), jnp.exp(-m))  # [B, H, T]
    h = jnp.einsum("bhts,bshv->bthv", scores, v)
    return h / jnp.swapaxes(denominator, 1, 2)[..., None]


def mlstm_chunkwise(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    i_tilde: jax.Array,
    log_f: jax.Array,
    *,
    chunk_size: int = 64,
) -> jax.Array:
    """Chunkwise form: parallel inside chunks of ``L = chunk_size`` steps, state ``(C~, n~, m)`` across chunks.

    Shapes as in :func:`mlstm_recurrent`. With ``b_t`` the cumulative log forget gate *within* the chunk and
    ``(C~, n~, m)_prev`` the state before the chunk, a step ``t`` of the chunk reads

    ``num_t = exp(b_t + m_prev - m_t) C~_prev q_t + sum_{s<=t} exp(D_ts - m_t) (q_t . k_s) v_s``

    (likewise the denominator with ``n~_prev`` and ``1`` for ``v_s``), ``D_ts = b_t - b_s + i~_s`` and
    ``m_t = max(b_t + m_prev, max_s D_ts)``; ``h~_t = num_t / max(|den_t|, exp(-m_t))``. The state after the chunk,
    ``m_next = max(b_L + m_prev, a)`` with ``a = max_s (b_L - b_s + i~_s)``, is
    ``C~_next = exp(b_L + m_prev - m_next) C~_prev + exp(a - m_next) sum_s exp(b_L - b_s + i~_s - a) v_s k_s^T``:
    the chunk sums are computed for all chunks at once, and only this update runs sequentially over chunks.
    Memory ``O(batch * heads * (T L + T / L * head_dim^2))``.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"mlstm: chunk_size must be a positive int, got {chunk_size!r}")
    batch, num_steps, heads, head_dim = q.shape
    size = min(chunk_size, num_steps)
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps

    def chunk(a: jax.Array) -> jax.Array:
        # [B, T, ...] -> [B, N, L, ...]. Padded steps (zeros: f = 1, i~ = 0, k = v = 0) come last, so they add
        # nothing that a real step reads.
        a = jnp.pad(a, ((0, 0), (0, pad)) + ((0, 0),) * (a.ndim - 2))
        return a.reshape((batch, num_chunks, size) + a.shape[2:])

    q_c, k_c, v_c, i_c, f_c = (chunk(a) for a in (q, k, v, i_tilde, log_f))
    log_weights = _causal_log_weights(i_c, f_c)  # [B, N, H, L, L]
    cum = jnp.cumsum(jnp.swapaxes(f_c, -1, -2), axis=-1)  # b_t: [B, N, H, L]
    total = cum[..., -1]  # b_L: [B, N, H]

    # Each chunk's own contribution to the state at its end, with its own stabiliser a.
    to_end = total[..., None] - cum + jnp.swapaxes(i_c, -1, -2)  # b_L - b_s + i~_s: [B, N, H, L]
    a = jax.lax.stop_gradient(jnp.max(to_end, axis=-1))  # [B, N, H]
    weights_end = jnp.exp(to_end - a[..., None])
    chunk_c = jnp.einsum("bnhs,bnshv,bnshk->nbhvk", weights_end, v_c, k_c)
    chunk_n = jnp.einsum("bnhs,bnshk->nbhk", weights_end, k_c)

    def carry_across(state, inputs):
        c_prev, n_prev, m_prev = state
        c_add, n_add, a_chunk, total_chunk = inputs
        m_next = jax.lax.stop_gradient(jnp.maximum(total_chunk + m_prev, a_chunk))
        decay = jnp.exp(total_chunk + m_prev - m_next)
        scale = jnp.exp(a_chunk - m_next)
        c_next = decay[..., None, None] * c_prev + scale[..., None, None] * c_add
        n_next = decay[..., None] * n_prev + scale[..., None] * n_add
        return (c_next, n_next, m_next), state

    _, (c_start, n_start, m_start) = jax.lax.scan(
        carry_across,
        _mlstm_state_example(q),
        (chunk_c, chunk_n, jnp.moveaxis(a, 1, 0), jnp.moveaxis(total, 1, 0)),
    )  # states before each chunk: [N, B, H, ...]

    m_start = jnp.moveaxis(m_start, 0, 1)  # [B, N, H]
    inter_log = cum + m_start[..., None]  # b_t + m_prev: [B, N, H, L]
    m = jax.lax.stop_gradient(jnp.maximum(inter_log, jnp.max(log_weights, axis=-1)))  # [B, N, H, L]
    scores = jnp.einsum("bnthk,bnshk->bnhts", q_c, k_c) * jnp.exp(log_weights - m[..., None])
    inter = jnp.exp(inter_log - m)  # [B, N, H, L]
    numerator = jnp.einsum("bnhts,bnshv->bnthv", scores, v_c) + jnp.einsum(
        "bnht,nbhvk,bnthk->bnthv", inter, c_start, q_c
    )
    denominator = jnp.sum(scores, axis=-1) + jnp.einsum("bnht,nbhk,bnthk->bnht", inter, n_start, q_c)
    denominator = jnp.maximum(jnp.abs(denominator), jnp.exp(-m))
    h = numerator / jnp.swapaxes(denominator, -1, -2)[..., None]
    return h.reshape((batch, num_chunks * size, heads, head_dim))[:, :num_steps]


@register_mixer(
    "mlstm",
    family="xlstm",
    description="mLSTM: matrix memory, exponential gating, parallelisable (Beck et al. 2024)",
)
class MLSTM(RecurrentCell):
    """mLSTM cell (Beck et al. 2024, eqs. 19-27): ``float32[batch, time, d_in] -> float32[batch, time, hidden]``.

    Projections (hoisted, all steps at once): ``q, k, v`` kernels ``[d_in, heads, head_dim]`` with biases; the
    scalar gates ``i~, f~`` per head (``gate_kernel: [d_in, 2, heads]``, ``gate_bias: [2, heads]``); the output
    gate ``o = sigmoid(x W_o + b_o)`` per unit. Output ``o_t * h~_t`` with heads concatenated.

    Attributes:
      num_heads: number of heads (memory ``head_dim x head_dim`` each, ``hidden_size % num_heads == 0``).
      scan_mode: ``"sequential"`` (the recurrent form) | ``"parallel"`` | ``"chunked"`` (the chunkwise form);
        the same function, see the module docstring.
      chunk_size: chunk length of the chunkwise form (``None``: 64).
      forget_bias_min, forget_bias_max: forget-gate biases ``linspace(min, max)`` over the heads, so the forget
        gates start near 1 (``sigmoid(3) = 0.95`` to ``sigmoid(6) = 0.998``).
      input_bias: initial input-gate bias.
      truncation, unroll, remat: :func:`lrd.scan.bptt_scan` options of the recurrent form, so honoured only with
        ``scan_mode="sequential"``.
    """

    STATE_NAMES: ClassVar[tuple[str, ...]] = ("C", "n", "m")

    scan_mode: str = "auto"
    chunk_size: int | None = None
    num_heads: int = 4
    forget_bias_min: float = 3.0
    forget_bias_max: float = 6.0
    input_bias: float = 0.0

    SCAN_MODES: ClassVar[tuple[str, ...]] = MLSTM_SCAN_MODES
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "chunked", "gpu": "chunked"}
    OPTION_SCAN_MODES: ClassVar[dict[str, tuple[str, ...]]] = {
        "truncation": ("sequential",),
        "unroll": ("sequential",),
        "remat": ("sequential",),
        "chunk_size": ("chunked",),
    }

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("chunk_size", optional=True)
        self.require_heads()
        for field in ("forget_bias_min", "forget_bias_max", "input_bias"):
            self.require_number(field)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        head_dim = self.hidden_size // self.num_heads
        heads, d_in = self.num_heads, x.shape[-1]
        init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
        projected = []
        for name in ("query", "key", "value"):
            kernel = self.weight(f"{name}_kernel", init, (d_in, heads, head_dim))
            bias = self.param(f"{name}_bias", nn.initializers.zeros_init(), (heads, head_dim))
            projected.append(project(x, kernel, self.dtype, "btd,dhk->bthk") + bias)
        q, k, v = projected
        k = k / math.sqrt(head_dim)
        gate_kernel = self.weight("gate_kernel", init, (d_in, 2, heads))
        forget = _linspace_init(self.forget_bias_min, self.forget_bias_max)

        def gate_bias_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
            return jnp.stack([jnp.full((heads,), self.input_bias, dtype), forget(key, (heads,), dtype)])

        gate_bias = self.param("gate_bias", gate_bias_init, (2, heads))
        gates = project(x, gate_kernel, self.dtype, "btd,dgh->btgh") + gate_bias
        i_tilde, log_f = gates[:, :, 0], jax.nn.log_sigmoid(gates[:, :, 1])
        output_kernel = self.weight(
            "output_gate_kernel", nn.initializers.lecun_normal(), (d_in, self.hidden_size)
        )
        output_bias = self.param("output_gate_bias", nn.initializers.zeros_init(), (self.hidden_size,))
        o = jax.nn.sigmoid(project(x, output_kernel, self.dtype) + output_bias)

        self.record("forget_gate", lambda: jnp.exp(log_f))  # [batch, time, heads]
        probe = self.probe(_mlstm_state_example(q), x.shape[1])
        mode = self.effective_scan_mode()
        if probe is not None or mode == "sequential":
            h = mlstm_recurrent(q, k, v, i_tilde, log_f, probe=probe, **self.scan_options())
        elif mode == "parallel":
            h = mlstm_parallel(q, k, v, i_tilde, log_f)
        else:
            h = mlstm_chunkwise(q, k, v, i_tilde, log_f, chunk_size=self.chunk_size or DEFAULT_CHUNK_SIZE)
        return o * h.reshape(h.shape[:2] + (self.hidden_size,))
