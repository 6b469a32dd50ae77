"""LinOSS: linear oscillatory state-space models (Rusch & Rus, "Oscillatory State-Space Models", ICLR 2025).

The model is a system of ``P`` uncoupled forced harmonic oscillators, read out linearly::

    y''(t) = -A y(t) + B u(t),        x(t) = Re(C y(t)) + D u(t),

with ``A = diag(A_1..A_P)``, ``A_k >= 0``, complex ``B: [P, H]``, ``C: [H, P]`` and a real skip ``D: [H]``. With the
velocity ``z = y'`` and a time step ``dt_k`` per oscillator, the paper's two discretisations give a linear
recurrence whose transition is a 2x2 block per oscillator, acting on ``(z_n, y_n)``:

* **LinOSS-IM** (implicit Euler in both variables)::

      z_n = z_{n-1} + dt (-A y_n + B u_n),   y_n = y_{n-1} + dt z_n

  Substituting the second equation into the first and solving for ``z_n`` (``S = (1 + dt^2 A)^-1``)::

      [z_n]   [  S     -dt A S] [z_{n-1}]   [dt   S B u_n]
      [y_n] = [dt S       S   ] [y_{n-1}] + [dt^2 S B u_n]

  ``det M = S``, ``tr M = 2 S``, so the eigenvalues are ``lambda = S (1 +- i dt sqrt(A))`` with ``|lambda|^2 = S =
  1 / (1 + dt^2 A) <= 1`` for every ``A >= 0``, ``dt > 0`` (the paper's stability result): stable without any constraint
  beyond ``A >= 0``, dissipative (``|lambda| < 1``) unless ``A = 0``.
* **LinOSS-IMEX** (symplectic Euler: explicit in ``y`` for ``z``, then implicit)::

      z_n = z_{n-1} + dt (-A y_{n-1} + B u_n),   y_n = y_{n-1} + dt z_n

      [z_n]   [1       -dt A   ] [z_{n-1}]   [dt   B u_n]
      [y_n] = [dt   1 - dt^2 A ] [y_{n-1}] + [dt^2 B u_n]

  ``det M = 1``, ``tr M = 2 - dt^2 A``: for ``0 <= dt^2 A <= 4`` (the paper's condition) the
  eigenvalues are ``1 - dt^2 A / 2 +- i sqrt(dt^2 A (1 - dt^2 A / 4))``, all of modulus exactly 1 (the scheme is
  symplectic and time-reversible: no forgetting at all). For ``dt^2 A > 4`` they are real with product 1, so one
  exceeds 1 in modulus and the recurrence diverges. As in the paper's code, the condition is not enforced: with
  ``dt = sigmoid(.) < 1`` it holds whenever ``A <= 4`` (``A`` starts in ``[0, 1]``).

In both, ``y_n = y_{n-1} + dt z_n`` and the input term is ``F_n = (f_z, f_y) * (B u_n)`` with ``f_y = dt f_z``.

Why a 2x2 block scan, not a diagonalisation
-------------------------------------------
The per-oscillator transition ``M`` could be diagonalised into its conjugate pair of eigenvalues and run through
:func:`lrd.scan.linear_scan` as two complex diagonal recurrences. That is exact only where the two eigenvalues are
distinct, and this layer reaches the places where they are not:

* ``A = relu(A_diag)`` is exactly 0 whenever ``A_diag <= 0`` (the paper's parameterisation). IM at ``A = 0`` is
  ``M = [[1, 0], [dt, 1]]``, a Jordan block (double eigenvalue 1): no eigenbasis exists. IMEX has the same Jordan
  block at ``A = 0``, and a double eigenvalue -1 at ``dt^2 A = 4``.
* Near those points the eigenvectors ``(+-i sqrt(A), 1)`` (IM) become parallel: the condition number of the
  eigenvector matrix grows like ``1/sqrt(A)``, so ``y = w_1 + w_2`` loses ``log10(1/sqrt(A))`` digits to
  cancellation in float32, and the eigenvalues' derivative ``d lambda / dA ~ i dt / (2 sqrt(A))`` is infinite at
  ``A = 0``: back-propagation gives ``0 * inf = NaN`` through the ReLU, and garbage of size ``eps / sqrt(A)`` for
  tiny positive ``A`` (where weight decay drives an unused oscillator).

A unitary (Schur) triangularisation fixes the forward pass but not the gradient (it still needs ``sqrt(A)``). So
the recurrence runs in 2x2 block form, as in the paper's own associative scan: every step, every mode and every
gradient is a polynomial in the entries of ``M`` (rational in ``A``, ``dt``), exact and finite for every value the
parameters can take. Since ``M`` is real, the real and imaginary parts of the complex states evolve independently:
they run as ``2P`` real channels (real parts, then imaginary parts), which costs what the diagonalised complex form
costs (8 real products per oscillator and step either way; 6 in the sequential kick-drift loop below) with no
complex arithmetic at all.

:func:`block_linear_scan` is that engine: ``h_t = M h_{t-1} + b_t`` for a time-invariant 2x2-block ``M``, in the
modes of :func:`lrd.scan.linear_scan` (``"sequential"``, ``"associative"``, ``"chunked"``) with its ``chunk_size``
and ``truncation`` semantics, and ``"fft"`` (``M`` is constant in time, so ``h = (M^k)_k * b`` is a causal
convolution). Its ``"associative"`` mode is a parallel prefix scan specialised to a constant ``M``, with the adjoint
recurrence (a second such scan) as its gradient. :func:`oscillator_scan` runs LinOSS's special case, ``y_n = y_{n-1}
+ dt z_n`` after the velocity update, as those two lines in ``"sequential"`` mode and through
:func:`block_linear_scan` otherwise. The Pallas ``"kernel"`` mode of :func:`lrd.scan.linear_scan` is diagonal only,
so it is not offered. (Both engines would belong in :mod:`lrd.scan` if a second layer needs 2x2 blocks.)

Initialisation and parameterisation (the authors' code, github.com/tk-rusch/linoss, which the paper points to):
``A = relu(A_diag)``, ``A_diag ~ U[0, 1]``; ``dt = sigmoid(step_logit)``, ``step_logit ~ U[0, 1]`` (so ``dt`` starts in
``[0.5, 0.73]``; trainable, one per oscillator); ``Re B, Im B ~ U[-1/sqrt(H), 1/sqrt(H)]``; ``Re C, Im C ~
U[-1/sqrt(P), 1/sqrt(P)]``; ``D ~ N(0, 1)``. The paper's LinOSS *block* (batch norm, this layer, GELU and GLU,
dropout, residual) is not part of the mixer: lrd's ``block`` setting supplies the norm, residual and MLP around it,
as for the other SSM layers.

Shapes: ``x: float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import (
    LinearRecurrentLayer,
    affine,
    normal_initializer,
    project,
    to_batch_major,
    uniform_initializer,
)
from lrd.cells.ssm.common import to_width
from lrd.registry import register_mixer

__all__ = [
    "LinOSS",
    "linoss",
    "linoss_transition",
    "oscillator_scan",
    "block_linear_scan",
    "LINOSS_DISCRETISATIONS",
]

LINOSS_DISCRETISATIONS = ("im", "imex")
BLOCK_SCAN_MODES = ("sequential", "associative", "chunked", "fft")
TRUNCATION_SCAN_MODES = ("sequential", "associative", "chunked")

# A 2x2 block per channel, (m_zz, m_zy, m_yz, m_yy) of M = [[m_zz, m_zy], [m_yz, m_yy]], each [..., N]; and a pair
# (z, y) of states or inputs, each [..., N].
Block = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
Pair = tuple[jax.Array, jax.Array]


# ----------------------------------------------------------------------------------------------------------------
# The 2x2-block linear recurrence


def _apply(m: Block, h: Pair) -> Pair:
    """``M h`` for each channel."""
    m_zz, m_zy, m_yz, m_yy = m
    z, y = h
    return m_zz * z + m_zy * y, m_yz * z + m_yy * y


def _compose(m_after: Block, m_before: Block) -> Block:
    """``M_after M_before`` for each channel (the map ``h -> M_after (M_before h)``)."""
    a, b, c, d = m_after
    e, f, g, h = m_before
    return a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h


def _add(p: Pair, q: Pair) -> Pair:
    return p[0] + q[0], p[1] + q[1]


def _identity(m: Block) -> Block:
    one, zero = jnp.ones_like(m[0]), jnp.zeros_like(m[0])
    return one, zero, zero, one


def _map(fn: Callable[[jax.Array], jax.Array], tree: tuple) -> tuple:
    return tuple(fn(leaf) for leaf in tree)


def _sequential(m: Block, b: Pair, h0: Pair) -> Pair:
    """``lax.scan``; ``M`` is closed over."""

    def body(h, b_t):
        h = _add(_apply(m, h), b_t)
        return h, h

    _, hs = jax.lax.scan(body, h0, b)
    return hs


def _associative(m: Block, b: Pair, h0: Pair | None) -> Pair:
    """A parallel prefix scan over the affine maps ``h -> M h + b_t``: the work-efficient algorithm of
    ``lax.associative_scan`` (combine adjacent pairs, scan the half-length sequence, fill in the even positions),
    specialised to a constant ``M``. At level ``k`` every element stands for ``2^k`` steps, so its transition is
    the power ``M^(2^k)`` (squared once per level) rather than a scanned array: only the inputs ``b`` are carried
    through the levels, which halves the work and compiles 3x faster than ``lax.associative_scan`` over six
    leaves. A sequence of odd length gets one zero input appended at that level (steps after the last real one,
    dropped at the end). Depth ``2 log2 T``, work ``O(T)``."""
    if h0 is not None:  # fold h0 into the first input: h_1 = M h0 + b_1
        first = _apply(m, h0)
        b = (b[0].at[0].add(first[0]), b[1].at[0].add(first[1]))
    return _prefix_with_adjoint(m, b)


@jax.custom_vjp
def _prefix_with_adjoint(m: Block, b: Pair) -> Pair:
    """:func:`_prefix` whose gradient is the adjoint recurrence, itself a parallel prefix scan (backwards in time,
    with ``M^T``): ``lambda_t = g_t + M^T lambda_{t+1}``, ``dL/db_t = lambda_t``, ``dL/dM = sum_t lambda_t
    h_{t-1}^T``. Same values as differentiating :func:`_prefix`, with the backward pass a second scan (it compiled
    in a third of the time, and stores only the states)."""
    return _prefix(m, b)


def _prefix_forward(m: Block, b: Pair) -> tuple[Pair, tuple[Block, Pair]]:
    h = _prefix(m, b)
    return h, (m, h)


def _prefix_backward(residuals: tuple[Block, Pair], g: Pair) -> tuple[Block, Pair]:
    m, h = residuals
    m_zz, m_zy, m_yz, m_yy = m
    flip = functools.partial(jnp.flip, axis=0)
    lam = _map(flip, _prefix((m_zz, m_yz, m_zy, m_yy), _map(flip, g)))  # M^T, backwards in time
    before = _map(
        lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]], axis=0), h
    )  # h_{t-1}, h_{-1} = 0

    def reduce_to(
        x: jax.Array, like: jax.Array
    ) -> jax.Array:  # sum over time and the axes M broadcasts along
        x = jnp.sum(x, axis=0)
        axes = tuple(i for i, (n, k) in enumerate(zip(x.shape, like.shape, strict=True)) if k == 1 and n != 1)
        return jnp.sum(x, axis=axes, keepdims=True).astype(like.dtype)

    products = (lam[0] * before[0], lam[0] * before[1], lam[1] * before[0], lam[1] * before[1])
    return tuple(reduce_to(p, like) for p, like in zip(products, m, strict=True)), lam


_prefix_with_adjoint.defvjp(_prefix_forward, _prefix_backward)


def _prefix(m: Block, b: Pair) -> Pair:
    """All states of ``h_t = M h_{t-1} + b_t`` from ``h_0 = 0`` by recursive pairing (see :func:`_associative`)."""
    num_steps = b[0].shape[0]
    if num_steps == 1:
        return b
    if num_steps % 2:
        b = _map(lambda x: jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)], axis=0), b)
    pairs = _map(lambda x: x.reshape((x.shape[0] // 2, 2) + x.shape[1:]), b)
    even, odd = _map(lambda x: x[:, 0], pairs), _map(lambda x: x[:, 1], pairs)
    # States at the odd positions 1, 3, ...: the pair (2i, 2i+1) is one step of the map h -> M^2 h + (M b_2i + b_2i+1).
    at_odd = _prefix(_compose(m, m), _add(_apply(m, even), odd))
    # States at the even positions: h_2i = M h_2i-1 + b_2i, with h_-1 = 0.
    before = _map(lambda x: jnp.concatenate([jnp.zeros((1,) + x.shape[1:], x.dtype), x[:-1]], axis=0), at_odd)
    at_even = _add(_apply(m, before), even)
    return tuple(
        jnp.stack([e, o], axis=1).reshape((-1,) + e.shape[1:])[:num_steps]
        for e, o in zip(at_even, at_odd, strict=True)
    )


def _chunked(m: Block, b: Pair, h0: Pair | None, chunk_size: int) -> Pair:
    """All chunks of ``chunk_size`` steps at once, step by step (zero-start states ``B_i``), then the state
    carried across chunks sequentially: ``h_{c,i} = M^(i+1) h_{c-1,last} + B_{c,i}``; as ``lrd.scan``'s chunked
    mode, with the powers ``M^(i+1)`` shared by all chunks since ``M`` is constant."""
    num_steps = b[0].shape[0]
    num_chunks = -(-num_steps // chunk_size)
    pad = num_chunks * chunk_size - num_steps
    if pad:  # trailing zero inputs only move states after the last real step, which are dropped
        b = _map(lambda x: jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)], axis=0), b)

    def by_position(x: jax.Array) -> jax.Array:  # [T, ...] -> [C, num_chunks, ...]
        return jnp.swapaxes(x.reshape((num_chunks, chunk_size) + x.shape[1:]), 0, 1)

    def power_step(power, _):
        power = _compose(m, power)
        return power, power

    _, powers = jax.lax.scan(power_step, _identity(m), None, length=chunk_size)  # M^(i+1): [C, ...]

    def step(h, b_i):
        h = _add(_apply(m, h), b_i)
        return h, h

    zeros = jnp.zeros((num_chunks,) + b[0].shape[1:], b[0].dtype)
    _, b_cum = jax.lax.scan(step, (zeros, zeros), _map(by_position, b))  # [C, num_chunks, ...]
    last_power = _map(lambda x: x[-1], powers)

    def carry_across(h, b_last):
        return _add(_apply(last_power, h), b_last), h

    start = (zeros[0], zeros[0]) if h0 is None else h0
    _, h_starts = jax.lax.scan(carry_across, start, _map(lambda x: x[-1], b_cum))  # [num_chunks, ...]
    powers = _map(lambda x: x[:, None], powers)  # [C, 1, ...] against [C, num_chunks, ...]
    hs = _add(_apply(powers, _map(lambda x: x[None], h_starts)), b_cum)
    return _map(lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])[:num_steps], hs)


def _scan_powers(m: Block, count: int) -> Block:
    """``M^0 .. M^(count-1)`` by a loop of products (``M`` is one step's size: each iteration is tiny)."""

    def body(power, _):
        return _compose(m, power), power

    _, powers = jax.lax.scan(body, _identity(m), None, length=count)
    return powers


def block_powers(m: Block, num_steps: int) -> Block:
    """``M^0, M^1, ..., M^(T-1)`` stacked on a new leading axis, from products of ``M`` only (exact for any ``M``):
    ``M^(K i + j) = (M^K)^i M^j`` with ``K = ceil(sqrt(T))``, two loops of ``K`` tiny steps and one product. (An
    associative scan or repeated doubling has depth ``log T`` but took 7-8x longer to compile with its gradient,
    for a kernel that is a small part of the FFT path's work.)"""
    inner = math.isqrt(max(num_steps - 1, 0)) + 1
    outer = -(-num_steps // inner)
    low = _scan_powers(m, inner)  # M^j, j < K
    high = _scan_powers(_compose(m, _map(lambda x: x[-1], low)), outer)  # (M^K)^i
    powers = _compose(_map(lambda x: x[:, None], high), _map(lambda x: x[None], low))  # [outer, K, ...]
    return _map(lambda x: x.reshape((-1,) + x.shape[2:])[:num_steps], powers)


def _fft(m: Block, b: Pair) -> Pair:
    """``h_t = sum_{s <= t} M^(t-s) b_s``: four causal convolutions by FFT (zero-padded to at least ``2T``)."""
    num_steps = b[0].shape[0]
    size = 1 << (2 * num_steps - 1).bit_length()
    if jnp.iscomplexobj(b[0]):
        forward, inverse = jnp.fft.fft, lambda x: jnp.fft.ifft(x, size, axis=0)
    else:
        forward, inverse = jnp.fft.rfft, lambda x: jnp.fft.irfft(x, size, axis=0)
    kernel = _map(lambda k: forward(k, size, axis=0), block_powers(m, num_steps))
    h = _apply(kernel, _map(lambda x: forward(x, size, axis=0), b))
    return _map(lambda x: inverse(x)[:num_steps].astype(b[0].dtype), h)


def _truncated(run: Callable, b: Pair, k: int) -> Pair:
    """``run(b_chunk, h0)`` over consecutive chunks of ``k`` steps, the state entering each chunk through
    ``stop_gradient`` (the semantics of :func:`lrd.scan.linear_scan`'s ``truncation``)."""
    num_steps = b[0].shape[0]
    num_chunks, remainder = divmod(num_steps, k)
    full = num_chunks * k

    def chunk_body(h, b_chunk):
        hs = run(b_chunk, _map(jax.lax.stop_gradient, h))
        return _map(lambda x: x[-1], hs), hs

    zeros = jnp.zeros(b[0].shape[1:], b[0].dtype)
    chunks = _map(lambda x: x[:full].reshape((num_chunks, k) + x.shape[1:]), b)
    h_last, hs = jax.lax.scan(chunk_body, (zeros, zeros), chunks)
    hs = _map(lambda x: x.reshape((full,) + x.shape[2:]), hs)
    if remainder:
        rest = run(_map(lambda x: x[full:], b), _map(jax.lax.stop_gradient, h_last))
        hs = tuple(jnp.concatenate([x, r], axis=0) for x, r in zip(hs, rest, strict=True))
    return hs


def block_linear_scan(
    m: Block,
    b: Pair,
    *,
    mode: str = "sequential",
    chunk_size: int = 64,
    truncation: int | None = None,
) -> Pair:
    """All states of ``h_t = M h_{t-1} + b_t``, ``h_0 = 0``, with ``h = (z, y)`` and a time-invariant 2x2 block
    ``M = [[m_zz, m_zy], [m_yz, m_yy]]`` per channel.

    Args:
      m: ``(m_zz, m_zy, m_yz, m_yy)``, each ``[..., N]`` without a time axis, broadcastable to one step of ``b``.
      b: ``(b_z, b_y)``, each ``[time, ..., N]`` (real or complex).
      mode: ``"sequential"`` | ``"associative"`` | ``"chunked"`` | ``"fft"``, as in :func:`lrd.scan.linear_scan`
        (same function, different depth, work and memory).
      chunk_size: chunk length of ``mode="chunked"``.
      truncation: truncated BPTT, with the semantics of :func:`lrd.scan.linear_scan` (not with ``"fft"``).

    Returns:
      ``(z, y)``, each ``[time, ..., N]``: the state after every step.
    """
    if mode not in BLOCK_SCAN_MODES:
        raise ValueError(
            f"block_linear_scan: unknown mode={mode!r}; allowed values: {', '.join(BLOCK_SCAN_MODES)}"
        )
    if mode == "chunked" and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"block_linear_scan: chunk_size must be an int >= 1, got {chunk_size!r}")
    if truncation is not None and (not isinstance(truncation, int) or truncation < 1):
        raise ValueError(f"block_linear_scan: truncation must be a positive int or None, got {truncation!r}")
    dtype = jnp.result_type(*b)
    b = _map(lambda x: jnp.asarray(x, dtype), b)
    step_rank = b[0].ndim - 1
    m = _map(lambda x: jnp.reshape(jnp.asarray(x, dtype), (1,) * (step_rank - jnp.ndim(x)) + jnp.shape(x)), m)
    num_steps = b[0].shape[0]
    if mode == "fft":
        if truncation is not None:
            raise ValueError("block_linear_scan: mode='fft' takes no truncation")
        return _fft(m, b)

    def run(b_part: Pair, h0: Pair | None) -> Pair:
        if mode == "sequential":
            zeros = jnp.zeros(b_part[0].shape[1:], dtype)
            return _sequential(m, b_part, (zeros, zeros) if h0 is None else h0)
        if mode == "associative":
            return _associative(m, b_part, h0)
        return _chunked(m, b_part, h0, min(chunk_size, b_part[0].shape[0]))

    if truncation is None or truncation >= num_steps:
        return run(b, None)
    return _truncated(run, b, truncation)


def _kick_drift(kick: tuple[jax.Array, jax.Array], step: jax.Array, b: tuple, h0: Pair) -> Pair:
    """``lax.scan`` of ``z_n = m_zz z + m_zy y + b_z,n``, ``y_n = y + dt z_n (+ e_n)``; ``b = (b_z, e or None)``."""
    m_zz, m_zy = kick
    b_z, extra = b

    def body(h, inputs):
        z, y = h
        b_t, extra_t = inputs if extra is not None else (inputs, None)
        z = m_zz * z + m_zy * y + b_t
        y = y + step * z
        if extra_t is not None:
            y = y + extra_t
        return (z, y), (z, y)

    _, hs = jax.lax.scan(body, h0, b_z if extra is None else (b_z, extra))
    return hs


def oscillator_scan(
    kick: tuple[jax.Array, jax.Array],
    step: jax.Array,
    b_z: jax.Array,
    extra_y: jax.Array | None = None,
    *,
    mode: str = "sequential",
    chunk_size: int = 64,
    truncation: int | None = None,
) -> Pair:
    """All states of the kick-drift recurrence that both LinOSS discretisations are::

        z_n = m_zz z_{n-1} + m_zy y_{n-1} + b_z,n        (kick: the velocity update)
        y_n = y_{n-1} + dt z_n + e_n                     (drift: the position update, from the new velocity)

    i.e. :func:`block_linear_scan` with ``M = [[m_zz, m_zy], [dt m_zz, 1 + dt m_zy]]`` and ``b_y = dt b_z + e``.
    ``"sequential"`` runs the two lines as written (3 products a step instead of 4, and no ``b_y`` array: 2x faster
    fwd+bwd than the general block loop on CPU, T=1024, batch 16, 128 channels); the parallel modes run the block
    form. ``kick``: ``(m_zz, m_zy)``, ``step``: ``dt``, each ``[..., N]`` without a time axis; ``b_z``,
    ``extra_y`` (``e``, optional): ``[time, ..., N]``. Options and result as :func:`block_linear_scan`.
    """
    if mode != "sequential":
        m_zz, m_zy = kick
        b_y = step * b_z if extra_y is None else step * b_z + extra_y
        block = (m_zz, m_zy, step * m_zz, 1.0 + step * m_zy)
        return block_linear_scan(block, (b_z, b_y), mode=mode, chunk_size=chunk_size, truncation=truncation)
    if truncation is not None and (not isinstance(truncation, int) or truncation < 1):
        raise ValueError(f"oscillator_scan: truncation must be a positive int or None, got {truncation!r}")

    def run(b: tuple, h0: Pair | None) -> Pair:
        if h0 is None:
            zeros = jnp.zeros(b[0].shape[1:], b[0].dtype)
            h0 = (zeros, zeros)
        return _kick_drift(kick, step, b, h0)

    if truncation is None or truncation >= b_z.shape[0]:
        return run((b_z, extra_y), None)
    if extra_y is None:  # _truncated slices both inputs: carry zeros for the absent one
        extra_y = jnp.zeros_like(b_z)
    return _truncated(run, (b_z, extra_y), truncation)


# ----------------------------------------------------------------------------------------------------------------
# LinOSS


def linoss_transition(A: jax.Array, step: jax.Array, discretisation: str) -> tuple[Block, jax.Array]:
    """``(M, f_z)``: the 2x2 block transition of each oscillator and the input weight of ``z`` (module docstring);
    the input weight of ``y`` is ``f_y = step * f_z``. ``A``, ``step``: ``[P]``, ``A >= 0``, ``step > 0``."""
    if discretisation == "im":
        schur = 1.0 / (
            1.0 + step**2 * A
        )  # S = (1 + dt^2 A)^-1 (the paper's code writes M_11 = 1 - dt^2 A S = S)
        return (schur, -step * A * schur, step * schur, schur), step * schur
    if discretisation == "imex":
        one = np.ones_like(A) if isinstance(A, np.ndarray) else jnp.ones_like(A)
        return (one, -step * A, step, 1.0 - step**2 * A), step
    raise ValueError(
        f"linoss: unknown discretisation={discretisation!r}; allowed values: {', '.join(LINOSS_DISCRETISATIONS)}"
    )


def linoss(
    u: jax.Array,
    A_diag: jax.Array,
    step_logit: jax.Array,
    B_re: jax.Array,
    B_im: jax.Array,
    C_re: jax.Array,
    C_im: jax.Array,
    D: jax.Array,
    *,
    discretisation: str = "im",
    probe: Pair | None = None,
    dtype: str | None = None,
    **scan_options: Any,
) -> jax.Array:
    """A LinOSS layer (module docstring): ``x_n = Re(C y_n) + D u_n`` with ``(z_n, y_n) = M (z_{n-1}, y_{n-1}) +
    (f_z, f_y) B u_n``, ``A = relu(A_diag)``, ``dt = sigmoid(step_logit)``.

    The complex states run as real channels ``[Re | Im]`` (``2P``): ``B u`` is one real product with ``[Re B |
    Im B]`` and ``Re(C y) = Re y Re C - Im y Im C`` one with ``[Re C; -Im C]``.

    Args:
      u: ``float32[batch, time, H]``.
      A_diag, step_logit: ``float32[P]``.
      B_re, B_im: ``float32[H, P]`` (input-major ``B^T``); C_re, C_im: ``float32[P, H]`` (``C^T``); D: ``[H]``.
      discretisation: ``"im"`` or ``"imex"``.
      probe: ``None`` or ``(p_y, p_z)``, each ``float32[time, batch, 2P]`` (real parts, then imaginary parts). As in
        the oscillator cells, ``p_z`` is added to ``z_n`` before ``y_n = y_{n-1} + dt z_n`` is formed from it
        (which both discretisations share), and ``p_y`` to ``y_n``; so ``grad`` with respect to ``p_z`` is the
        total derivative ``dL/dz_n``, including the path ``z_n -> y_n`` of the same step.
      dtype: operand dtype of the two projections ``B u`` and ``C y`` (``None``: float32, as given).
      scan_options: keyword arguments of :func:`oscillator_scan` (``mode``, ``chunk_size``, ``truncation``).

    Returns:
      ``float32[batch, time, H]``.
    """
    A = jax.nn.relu(A_diag)
    step = jax.nn.sigmoid(step_logit)
    m, f_z = linoss_transition(A, step, discretisation)

    def channels(v: jax.Array) -> jax.Array:  # [P] -> [2P]: the same value for real and imaginary parts
        return jnp.concatenate([v, v])

    bu = affine(u, jnp.concatenate([B_re, B_im], axis=1), time_major=True, dtype=dtype)  # [T, batch, 2P]
    b_z, extra_y = channels(f_z) * bu, None
    if probe is not None:
        # p_z joins the velocity before the position is formed from it; p_y joins the position.
        p_y, p_z = probe
        b_z, extra_y = b_z + p_z, p_y
    kick = (channels(m[0]), channels(m[1]))
    _, y = oscillator_scan(kick, channels(step), b_z, extra_y, **scan_options)
    readout = jnp.concatenate([C_re, -C_im], axis=0)  # [2P, H]
    return project(to_batch_major(y), readout, dtype) + D * u


@register_mixer(
    "linoss",
    family="ssm",
    description="LinOSS: forced harmonic oscillators, implicit or symplectic (IMEX) 2x2 block scan (Rusch & Rus 2025)",
)
class LinOSS(LinearRecurrentLayer):
    """LinOSS layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`linoss` and the
    module docstring (equations, stability, why 2x2 blocks).

    Attributes:
      hidden_size: ``H``, the width of ``u`` and of the output (the input is projected to it if ``d_in != H``).
      state_size: ``P`` oscillators, each with a complex position ``y`` and velocity ``z`` (``None``: ``H``).
      discretisation: ``"im"`` (LinOSS-IM, dissipative, ``|lambda|^2 = 1 / (1 + dt^2 A)``) or ``"imex"``
        (LinOSS-IMEX, conservative, ``|lambda| = 1`` while ``dt^2 A <= 4``).
      scan_mode: ``"auto"`` | ``"sequential"`` | ``"associative"`` | ``"chunked"`` | ``"fft"`` (see
        :func:`block_linear_scan`; the paper uses the associative scan). ``"auto"`` is ``"sequential"`` on CPU,
        measured (``lrd bench``, T=1024, d_model 64, batch 16, fwd+bwd: sequential 182 ms, chunked 264, associative
        312, fft 444), and ``"associative"`` elsewhere (unmeasured). chunk_size, truncation: as in
        :class:`lrd.cells.base.LinearRecurrentLayer` (truncation is not available with ``"fft"``).

    Parameters (module docstring for the initialisation): ``A_diag``, ``step_logit: float32[P]`` (always float32:
    the recurrence's own parameters), ``B_re, B_im: [H, P]``, ``C_re, C_im: [P, H]`` (stored in ``param_dtype``),
    ``D: float32[H]``. The probe (``STATE_NAMES = ("y", "z")``) is ``float32[time, batch, 2P]`` per leaf.
    """

    SCAN_MODES: ClassVar[tuple[str, ...]] = BLOCK_SCAN_MODES
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked",),
        "truncation": TRUNCATION_SCAN_MODES,
    }
    STATE_NAMES: ClassVar[tuple[str, ...]] = ("y", "z")

    state_size: int | None = None
    discretisation: str = "im"

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("state_size", optional=True)
        self.require_choice("discretisation", LINOSS_DISCRETISATIONS)

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """The eigenvalues of every oscillator's 2x2 transition ``M``, complex ``[2P]`` (both of each pair)."""
        A = np.maximum(np.asarray(params["A_diag"], np.float64), 0.0)
        step = 1.0 / (1.0 + np.exp(-np.asarray(params["step_logit"], np.float64)))
        (m_zz, m_zy, m_yz, m_yy), _ = linoss_transition(A, step, self.discretisation)
        half_trace = (m_zz + m_yy) / 2.0
        root = np.sqrt(((m_zz - m_yy) / 2.0) ** 2 + m_zy * m_yz + 0j)
        return np.concatenate([half_trace + root, half_trace - root])

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        width = self.hidden_size
        size = self.state_size or width
        u = to_width(self, x, width)
        A_diag = self.param("A_diag", uniform_initializer(0.0, 1.0), (size,))
        step_logit = self.param("step_logit", uniform_initializer(0.0, 1.0), (size,))
        b_bound, c_bound = width**-0.5, size**-0.5
        B_re, B_im, C_re, C_im = (
            self.weight(name, uniform_initializer(-bound, bound), shape).astype(jnp.float32)
            for name, bound, shape in (
                ("B_re", b_bound, (width, size)),
                ("B_im", b_bound, (width, size)),
                ("C_re", c_bound, (size, width)),
                ("C_im", c_bound, (size, width)),
            )
        )
        D = self.param("D", normal_initializer(1.0), (width,))
        zeros = jnp.zeros((x.shape[0], 2 * size), jnp.float32)
        probe = self.probe((zeros, zeros), x.shape[1])
        return linoss(
            u,
            A_diag,
            step_logit,
            B_re,
            B_im,
            C_re,
            C_im,
            D,
            discretisation=self.discretisation,
            probe=probe,
            dtype=self.dtype,
            **self.scan_options(),
        )
