"""Attention mixers: causal multi-head softmax attention and causal linear attention.

Softmax attention (Vaswani et al. 2017, eq. 1) per head, with the causal mask:
``y_t = sum_{s <= t} softmax_s(q_t . k_s / sqrt(d)) v_s``. It runs through ``jax.nn.dot_product_attention``
with ``is_causal=True``. Positions are one of

* ``"rotary"`` (Su et al. 2021, RoFormer eq. 34): rotate each pair ``(x_{2i}, x_{2i+1})`` of queries and keys
  by the angle ``t * theta_i``, ``theta_i = base^(-2i/d)``, so ``q_t . k_s`` sees only ``t - s``;
* ``"sinusoidal"`` (Vaswani et al. 2017, sec. 3.5): the table ``PE(t, 2i) = sin(t / 10000^(2i/d))``,
  ``PE(t, 2i+1) = cos(t / 10000^(2i/d))`` added to the queries and keys of every head (``d = head_dim``; added
  inside the mixer rather than to the embeddings, so every attention layer of a hybrid sees positions);
* ``"none"``: no position information beyond what the causal mask implies.

Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs", eqs. 4-9 and 16-20) replaces
``exp(q . k)`` by ``phi(q) . phi(k)`` with ``phi(x) = elu(x) + 1``, so causal attention becomes a linear
recurrence on the state ``S_t = S_{t-1} + phi(k_t) v_t^T`` and normaliser ``z_t = z_{t-1} + phi(k_t)``, read
out as ``y_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)``. Four algorithms (field ``scan_mode``) compute the same
function:

* ``"sequential"``, ``"associative"``: the recurrent form, the flattened ``(S, z)`` through
  :func:`lrd.scan.linear_scan` with ``a = 1`` in that mode (the only ones that honour ``truncation``);
* ``"parallel"``: the masked quadratic form ``Y = (M o phi(Q) phi(K)^T) V`` over its row sums (eq. 9);
* ``"chunked"``: quadratic inside chunks of ``chunk_size`` steps plus the chunk-boundary states, which are
  passed sequentially across chunks through :func:`lrd.scan.linear_scan` (memory ``O(T C + T/C * d^2)``).

Softmax attention has three (field ``scan_mode``): ``"jax"`` (``jax.nn.dot_product_attention``, fused kernels
where a backend has them), ``"einsum"`` (the same computation written out) and ``"blocked"`` (only the causal
triangle, in blocks of queries; see :func:`causal_softmax_attention`).

Both modules map ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]`` for any ``d_in``:
queries, keys and values are projected from ``x`` (``heads x head_dim``, ``head_dim = hidden_size //
num_heads``), heads are concatenated and projected to ``hidden_size``.

Gradient probe (see :mod:`lrd.scan`): softmax attention has no recurrent state; its memory of step ``t`` is
the key/value pair ``(k_t, v_t)`` that every later query reads, so the probe is the pair of
``[time, batch, heads, head_dim]`` arrays added to ``k_t`` (after positions) and ``v_t``, and its gradient is
``dL/d(k_t, v_t)``. Linear attention probes its state ``(S_t, z_t)`` in every scan mode
(``[time, batch, heads * (head_dim^2 + head_dim)]``, the flattened layout of the recurrent form), so the probe
gradients of all its scan modes are equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import (
    DEFAULT_CHUNK_SIZE,
    LinearRecurrentLayer,
    Mixer,
    operand_dtype,
    probe_variable,
    project,
    to_batch_major,
    to_time_major,
)
from lrd.registry import register_mixer
from lrd.scan import linear_scan

POSITIONS = ("rotary", "sinusoidal", "none")
ATTENTION_SCAN_MODES = ("jax", "einsum", "blocked")
ATTENTION_BLOCK = 128  # query steps per block of the "blocked" form (64-128 measured best on CPU at T=1000)
LINEAR_ATTENTION_SCAN_MODES = ("sequential", "associative", "chunked", "parallel")

__all__ = [
    "Attention",
    "LinearAttention",
    "POSITIONS",
    "ATTENTION_SCAN_MODES",
    "LINEAR_ATTENTION_SCAN_MODES",
    "rotary_embedding",
    "sinusoidal_table",
    "causal_softmax_attention",
    "elu_feature_map",
    "linear_attention_recurrent",
    "linear_attention_parallel",
    "linear_attention_chunked",
]


# ----------------------------------------------------------------------------------------------------
# Pure functions. Per-head arrays are batch-major ``[batch, time, heads, head_dim]``.


def rotary_embedding(x: jax.Array, base: float = 10000.0) -> jax.Array:
    """RoPE (Su et al. 2021, eq. 34) on ``x: float32[batch, time, heads, head_dim]`` (``head_dim`` even).

    The pair ``(x_{2i}, x_{2i+1})`` at step ``t`` is rotated by ``t * theta_i``, ``theta_i = base^(-2i/d)``.
    """
    num_steps, dim = x.shape[1], x.shape[-1]
    if dim % 2:
        raise ValueError(f"rotary positions need an even head_dim, got {dim}")
    theta = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [d/2]
    angle = jnp.arange(num_steps, dtype=jnp.float32)[:, None] * theta[None, :]  # [time, d/2]
    cos = jnp.cos(angle)[None, :, None, :]
    sin = jnp.sin(angle)[None, :, None, :]
    pairs = x.reshape(x.shape[:-1] + (dim // 2, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)


def sinusoidal_table(num_steps: int, dim: int, base: float = 10000.0) -> jax.Array:
    """``float32[time, dim]``: ``PE(t, 2i) = sin(t / base^(2i/dim))``, ``PE(t, 2i+1) = cos(...)``."""
    freqs = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [ceil(dim/2)]
    angle = jnp.arange(num_steps, dtype=jnp.float32)[:, None] * freqs[None, :]
    table = jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(num_steps, -1)
    return table[:, :dim]


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, first: int, out_dtype: Any) -> jax.Array:
    """Queries ``first .. first + len(q) - 1`` attend causally to keys ``0 .. len(k) - 1`` (two einsums and a
    masked softmax); ``[batch, time, heads, head_dim]`` each."""
    logits = jnp.einsum("bthk,bshk->bhts", q, k, preferred_element_type=out_dtype)
    logits = logits / jnp.sqrt(jnp.asarray(q.shape[-1], out_dtype))
    causal = jnp.arange(first, first + q.shape[1])[:, None] >= jnp.arange(k.shape[1])[None, :]
    logits = jnp.where(causal, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshk->bthk", weights, v, preferred_element_type=out_dtype)


def causal_softmax_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, scan_mode: str = "jax", dtype: str | None = None
) -> jax.Array:
    """``softmax(q k^T / sqrt(d) + causal mask) v`` per head; ``float32[batch, time, heads, head_dim]``.

    ``scan_mode="jax"`` calls ``jax.nn.dot_product_attention(..., is_causal=True)`` (XLA; fused kernels
    where a backend has them); ``"einsum"`` writes the same computation out (two einsums and a masked softmax over
    the whole ``T x T`` score matrix), which measured about 2x faster on CPU in float32 at T=1024 with jax 0.10.2;
    ``"blocked"`` computes only the causal triangle: queries in blocks of ``ATTENTION_BLOCK`` steps, each block
    against the keys up to its last step (about half the scores, each block's in one piece; the softmax of a row
    sees the same keys, so the result is the same up to rounding). Measured on CPU against ``"einsum"`` (fwd+bwd,
    4 heads): 0.52x the time and 0.61x the memory at T=1024 (batch 16, head_dim 16), 0.57x and 0.59x at T=1000
    (batch 96, head_dim 8). ``dtype`` (``None``: as given): the operand dtype of both products; the softmax and the
    result are float32.
    """
    out_dtype = jnp.promote_types(q.dtype, jnp.float32)
    if operand_dtype(dtype) is not None:
        q, k, v = (x.astype(operand_dtype(dtype)) for x in (q, k, v))
    if scan_mode == "jax":
        return jax.nn.dot_product_attention(q, k, v, is_causal=True).astype(out_dtype)
    if scan_mode == "einsum":
        return _attend(q, k, v, 0, out_dtype)
    if scan_mode != "blocked":
        raise ValueError(
            f"attention: scan_mode={scan_mode!r} is unknown; allowed values: {', '.join(ATTENTION_SCAN_MODES)}"
        )
    num_steps = q.shape[1]
    blocks = []
    for first in range(0, num_steps, ATTENTION_BLOCK):
        last = min(first + ATTENTION_BLOCK, num_steps)
        blocks.append(_attend(q[:, first:last], k[:, :last], v[:, :last], first, out_dtype))
    return jnp.concatenate(blocks, axis=1)


def elu_feature_map(x: jax.Array) -> jax.Array:
    """``phi(x) = elu(x) + 1 > 0`` (Katharopoulos et al. 2020, eq. 7).

    Written as ``x + 1`` for ``x > 0`` and ``exp(x)`` otherwise: ``(exp(x) - 1) + 1`` rounds to exactly 0 in
    float32 for ``x < -17``, which would break the positivity the normaliser relies on.
    """
    return jnp.where(x > 0, x + 1.0, jnp.exp(jnp.minimum(x, 0.0)))


def _state_size(heads: int, key_dim: int, value_dim: int) -> int:
    return heads * (key_dim * value_dim + key_dim)


def _flatten_state(s: jax.Array, z: jax.Array) -> jax.Array:
    """``S: [..., heads, dk, dv]`` and ``z: [..., heads, dk]`` -> ``[..., heads * (dk*dv + dk)]``."""
    lead = s.shape[:-3]
    return jnp.concatenate([s.reshape(lead + (-1,)), z.reshape(lead + (-1,))], axis=-1)


def _unflatten_state(flat: jax.Array, heads: int, key_dim: int, value_dim: int):
    lead = flat.shape[:-1]
    split = heads * key_dim * value_dim
    s = flat[..., :split].reshape(lead + (heads, key_dim, value_dim))
    z = flat[..., split:].reshape(lead + (heads, key_dim))
    return s, z


def _read_out(numerator: jax.Array, denominator: jax.Array, eps: float) -> jax.Array:
    """``numerator: [B, T, H, dv] / (denominator: [B, T, H] + eps)``."""
    return numerator / (denominator + eps)[..., None]


def _probe_terms(phi_q: jax.Array, probe: jax.Array | None, value_dim: int):
    """The readout of the cumulated probe: ``phi(q_t)^T sum_{s<=t} P_s`` for ``S`` and ``z`` (zeros if none).

    ``probe: [time, batch, heads * (dk*dv + dk)]`` is added to ``(S_t, z_t)`` after step ``t``; since
    the state is a running sum, it shifts every later state by the same amount, as in the recurrent form.
    """
    if probe is None:
        return 0.0, 0.0
    heads, key_dim = phi_q.shape[2], phi_q.shape[3]
    p_s, p_z = _unflatten_state(jnp.cumsum(probe, axis=0), heads, key_dim, value_dim)  # [T, B, H, dk(, dv)]
    num = jnp.einsum("bthk,tbhkv->bthv", phi_q, p_s)
    den = jnp.einsum("bthk,tbhk->bth", phi_q, p_z)
    return num, den


def linear_attention_recurrent(
    phi_q: jax.Array,
    phi_k: jax.Array,
    v: jax.Array,
    *,
    eps: float = 1e-6,
    probe: jax.Array | None = None,
    **scan_options: Any,
) -> jax.Array:
    """Recurrent form (Katharopoulos et al. 2020, eqs. 18-20) through :func:`lrd.scan.linear_scan`.

    ``S_t = S_{t-1} + phi(k_t) v_t^T``, ``z_t = z_{t-1} + phi(k_t)`` (``h_t = 1 * h_{t-1} + b_t``
    on the flattened state), ``y_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)``.

    Args:
      phi_q, phi_k: ``float32[batch, time, heads, key_dim]`` feature-mapped queries and keys.
      v: ``float32[batch, time, heads, value_dim]``.
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan` (``mode``, ``truncation``...).
      probe: ``None`` or zeros ``[time, batch, heads * (key_dim * value_dim + key_dim)]``.

    Returns:
      ``float32[batch, time, heads, value_dim]``.
    """
    heads, key_dim, value_dim = phi_q.shape[2], phi_q.shape[3], v.shape[3]
    kv = jnp.einsum("bthk,bthv->tbhkv", phi_k, v)
    b = _flatten_state(kv, to_time_major(phi_k))  # [T, B, state]
    ones = jnp.ones((), b.dtype)
    states = linear_scan(ones, b, probe=probe, **scan_options)
    s, z = _unflatten_state(states, heads, key_dim, value_dim)  # [T, B, H, dk, dv], [T, B, H, dk]
    numerator = jnp.einsum("bthk,tbhkv->bthv", phi_q, s)
    denominator = jnp.einsum("bthk,tbhk->bth", phi_q, z)
    return _read_out(numerator, denominator, eps)


def linear_attention_parallel(
    phi_q: jax.Array, phi_k: jax.Array, v: jax.Array, *, eps: float = 1e-6, probe: jax.Array | None = None
) -> jax.Array:
    """Parallel (masked quadratic) form (Katharopoulos et al. 2020, eq. 9 with the causal mask).

    ``A = M o (phi(Q) phi(K)^T)`` with ``M_ts = [s <= t]``; ``y = A V / (A 1 + eps)``. Shapes as in
    :func:`linear_attention_recurrent`.
    """
    num_steps = phi_q.shape[1]
    mask = jnp.tril(jnp.ones((num_steps, num_steps), phi_q.dtype))
    scores = jnp.einsum("bthk,bshk->bhts", phi_q, phi_k) * mask
    numerator = jnp.einsum("bhts,bshv->bthv", scores, v)
    denominator = jnp.einsum("bhts->bth", scores)
    probe_num, probe_den = _probe_terms(phi_q, probe, v.shape[-1])
    return _read_out(numerator + probe_num, denominator + probe_den, eps)


def linear_attention_chunked(
    phi_q: jax.Array,
    phi_k: jax.Array,
    v: jax.Array,
    *,
    chunk_size: int = 64,
    eps: float = 1e-6,
    probe: jax.Array | None = None,
) -> jax.Array:
    """Chunkwise form: quadratic within chunks of ``C`` steps, chunk-boundary states passed sequentially.

    For step ``t`` in chunk ``c``:
    ``y_t ~ phi(q_t)^T S_{c-1} + sum_{s in c, s <= t} (phi(q_t) . phi(k_s)) v_s``, where
    ``S_c = S_{c-1} + sum_{s in c} phi(k_s) v_s^T`` runs through :func:`linear_scan` (sequential mode) over
    chunks; likewise for ``z``. Shapes as in :func:`linear_attention_recurrent`.
    """
    if chunk_size < 1:
        raise ValueError(f"linear attention: chunk_size must be >= 1, got {chunk_size!r}")
    batch, num_steps, heads, key_dim = phi_q.shape
    value_dim = v.shape[-1]
    size = min(chunk_size, num_steps)
    num_chunks = -(-num_steps // size)
    pad = num_chunks * size - num_steps

    def chunk(x):  # [B, T, H, D] -> [B, N, C, H, D]; padded steps come last, so they never reach a real step
        x = jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))
        return x.reshape((batch, num_chunks, size) + x.shape[2:])

    q_c, k_c, v_c = chunk(phi_q), chunk(phi_k), chunk(v)
    mask = jnp.tril(jnp.ones((size, size), phi_q.dtype))
    scores = jnp.einsum("bnthk,bnshk->bnhts", q_c, k_c) * mask
    intra_num = jnp.einsum("bnhts,bnshv->bnthv", scores, v_c)
    intra_den = jnp.einsum("bnhts->bnth", scores)
    # Per-chunk sums, then states *before* each chunk: exclusive prefix sums across chunks.
    chunk_kv = jnp.einsum("bnshk,bnshv->nbhkv", k_c, v_c)
    chunk_k = jnp.einsum("bnshk->nbhk", k_c)
    ends = linear_scan(jnp.ones((), phi_q.dtype), _flatten_state(chunk_kv, chunk_k), mode="sequential")
    starts = jnp.concatenate([jnp.zeros_like(ends[:1]), ends[:-1]], axis=0)  # [N, B, state]
    s_start, z_start = _unflatten_state(starts, heads, key_dim, value_dim)
    inter_num = jnp.einsum("bnthk,nbhkv->bnthv", q_c, s_start)
    inter_den = jnp.einsum("bnthk,nbhk->bnth", q_c, z_start)
    numerator = (intra_num + inter_num).reshape(batch, num_chunks * size, heads, value_dim)[:, :num_steps]
    denominator = (intra_den + inter_den).reshape(batch, num_chunks * size, heads)[:, :num_steps]
    probe_num, probe_den = _probe_terms(phi_q, probe, value_dim)
    return _read_out(numerator + probe_num, denominator + probe_den, eps)


# ----------------------------------------------------------------------------------------------------
# Modules


def _qkv(module: nn.Module, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x: float32[batch, time, d_in] -> q, k, v: float32[batch, time, heads, head_dim]`` (no bias).

    Kernels ``{query,key,value}_kernel: [d_in, heads, head_dim]``, ``head_dim = hidden_size // num_heads``.
    """
    shape = (x.shape[-1], module.num_heads, module.hidden_size // module.num_heads)
    init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
    projections = []
    for name in ("query", "key", "value"):
        kernel = module.weight(f"{name}_kernel", init, shape)
        projections.append(project(x, kernel, module.dtype, "btd,dhk->bthk"))
    return tuple(projections)


def _output(module: nn.Module, y: jax.Array) -> jax.Array:
    """``float32[batch, time, heads, head_dim] -> float32[batch, time, hidden_size]``: ``output_kernel [heads,
    head_dim, hidden_size]`` and ``output_bias``."""
    heads, head_dim = y.shape[2], y.shape[3]
    init = nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
    kernel = module.weight("output_kernel", init, (heads, head_dim, module.hidden_size))
    bias = module.param("output_bias", nn.initializers.zeros_init(), (module.hidden_size,))
    return project(y, kernel, module.dtype, "bthk,hko->bto") + bias


@register_mixer(
    "attention",
    family="attention",
    description="causal multi-head softmax attention, rotary positions (Vaswani et al. 2017; Su et al. 2021)",
)
class Attention(Mixer):
    """Causal multi-head softmax attention: ``float32[batch, time, d_in] -> float32[batch, time, hidden]``.

    Attributes:
      hidden_size: output width; ``heads * head_dim`` with ``head_dim = hidden_size // num_heads``.
      num_heads: number of heads.
      positions: ``"rotary"`` | ``"sinusoidal"`` | ``"none"`` (see the module docstring).
      position_base: the base ``10000`` of the rotary / sinusoidal frequencies.
      scan_mode: ``"jax"`` (``jax.nn.dot_product_attention``), ``"einsum"`` or ``"blocked"`` (see
        :func:`causal_softmax_attention`); the same function.
    """

    STATE_NAMES: ClassVar[tuple[str, ...]] = ("k", "v")
    STATE_PER_POSITION: ClassVar[bool] = True

    scan_mode: str = "auto"
    num_heads: int = 4
    positions: str = "rotary"
    position_base: float = 10000.0

    SCAN_MODES: ClassVar[tuple[str, ...]] = ATTENTION_SCAN_MODES
    # CPU, T=1024: einsum measured 2.1x faster than jax.nn.dot_product_attention, blocked 1.9x faster than einsum
    # (causal_softmax_attention); fused kernels elsewhere.
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "blocked", "gpu": "jax"}

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_heads()
        self.require_choice("positions", POSITIONS)
        self.require_number("position_base", low=0.0)
        if self.positions == "rotary":
            self.require(
                (self.hidden_size // self.num_heads) % 2 == 0,
                "num_heads",
                f"rotary positions need an even head_dim = hidden_size / num_heads, got "
                f"{self.hidden_size} / {self.num_heads}",
            )

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        q, k, v = _qkv(self, x)
        if self.positions == "rotary":
            q = rotary_embedding(q, self.position_base)
            k = rotary_embedding(k, self.position_base)
        elif self.positions == "sinusoidal":
            table = sinusoidal_table(x.shape[1], q.shape[-1], self.position_base)[None, :, None, :]
            q, k = q + table, k + table
        # The "state" softmax attention keeps of step t is its key/value pair (the KV cache): probe that.
        probe = probe_variable(self, (k[:, 0], v[:, 0]), x.shape[1])
        if probe is not None:
            k = k + to_batch_major(probe[0])
            v = v + to_batch_major(probe[1])
        return _output(self, causal_softmax_attention(q, k, v, self.effective_scan_mode(), self.dtype))


@register_mixer(
    "linear_attention",
    family="attention",
    description="causal linear attention, elu+1 features (Katharopoulos et al. 2020)",
)
class LinearAttention(LinearRecurrentLayer):
    """Causal linear attention: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.

    Attributes:
      hidden_size: output width; ``heads * head_dim`` with ``head_dim = hidden_size // num_heads``.
      num_heads: number of heads (state ``head_dim x head_dim`` per head).
      scan_mode: ``"sequential"`` | ``"associative"`` (the recurrent form through that linear scan) |
        ``"chunked"`` (the chunkwise form) | ``"parallel"`` (the quadratic form); the same function, see the
        module docstring.
      chunk_size: chunk length of the chunkwise form (``None``: 64).
      truncation: truncated BPTT of the recurrent form (``scan_mode`` ``"sequential"`` or ``"associative"``).
      eps: added to the normaliser ``phi(q_t)^T z_t``.
    """

    scan_mode: str = "auto"
    num_heads: int = 4
    eps: float = 1e-6

    SCAN_MODES: ClassVar[tuple[str, ...]] = LINEAR_ATTENTION_SCAN_MODES
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "chunked", "gpu": "chunked"}
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked",),
        "truncation": ("sequential", "associative"),
    }

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_heads()
        self.require_number("eps", low=0.0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        q, k, v = _qkv(self, x)
        phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)
        batch, num_steps, heads, head_dim = q.shape
        state_example = jnp.zeros((batch, _state_size(heads, head_dim, head_dim)), x.dtype)
        probe = self.probe(state_example, num_steps)
        mode = self.effective_scan_mode()
        if mode == "parallel":
            y = linear_attention_parallel(phi_q, phi_k, v, eps=self.eps, probe=probe)
        elif mode == "chunked":
            chunk_size = self.chunk_size or DEFAULT_CHUNK_SIZE
            y = linear_attention_chunked(phi_q, phi_k, v, chunk_size=chunk_size, eps=self.eps, probe=probe)
        else:
            y = linear_attention_recurrent(phi_q, phi_k, v, eps=self.eps, probe=probe, **self.scan_options())
        return _output(self, y)
