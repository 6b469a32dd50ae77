"""Pallas kernels: the diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` as one GPU kernel.

:func:`diagonal_recurrence` is ``linear_scan(..., mode="kernel")``. The state's channels (every axis after time,
flattened) are split into blocks of ``block`` columns; one program per block walks the time axis in order, keeping
its ``h`` in registers and reading ``a_t``, ``b_t`` / writing ``h_t`` one row at a time, so each byte of the inputs
and of the output crosses memory exactly once: the memory floor of the recurrence, with no ``O(T log T)`` work and
no intermediate arrays (unlike ``lax.associative_scan``).

The gradient is a custom VJP whose backward pass is the adjoint recurrence, run by the same kernel backwards in
time: with ``g_t = dL/dh_t`` (the output's cotangent),

    lambda_t = g_t + a_{t+1} lambda_{t+1}      (lambda_{T-1} = g_{T-1}),
    dL/db_t = lambda_t,   dL/da_t = lambda_t * h_{t-1},   dL/dh0 = a_0 * lambda_0,

(JAX's convention for complex values: the transpose of the linear map, no conjugation), and a time-invariant
``a`` gets ``sum_t lambda_t * h_{t-1}``. Complex values enter the kernel as their real and imaginary parts (Triton
has no complex type); the state is carried in float32 (or float64 with x64) whatever the storage dtype.

Off GPU the kernel runs in Pallas' interpret mode: the same program, evaluated by XLA, correct but slow. That is
how CI tests it on a CPU; for speed on a CPU use ``mode="sequential"``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pl_triton

__all__ = ["diagonal_recurrence", "kernel_interpreted"]

BLOCK = 128  # columns per program: a power of two (Triton's block sizes are)
NUM_WARPS = 4  # 128 threads per program: one column each


def kernel_interpreted() -> bool:
    """Whether :func:`diagonal_recurrence` runs in Pallas' interpret mode here (everywhere but a GPU)."""
    return jax.default_backend() != "gpu"


def _multiply_add(a, h, b):
    """``a * h + b`` on tuples of parts: ``(x,)`` for real values, ``(re, im)`` for complex ones."""
    if len(h) == 1:
        return (a[0] * h[0] + b[0],)
    (ar, ai), (hr, hi), (br, bi) = a, h, b
    return (ar * hr - ai * hi + br, ar * hi + ai * hr + bi)


def _recurrence_kernel(*refs, num_parts: int, num_steps: int, constant_a: bool, reverse: bool, compute_dtype):
    """One block of columns: ``h_t = a_t h_{t-1} + b_t`` forward from ``h0``, or with ``reverse`` the adjoint
    ``h_t = a_{t+1} h_{t+1} + b_t`` backward from zero. Refs: a parts, b parts, h0 parts, out parts."""
    a_refs = refs[:num_parts]
    b_refs = refs[num_parts : 2 * num_parts]
    h0_refs = refs[2 * num_parts : 3 * num_parts]
    out_refs = refs[3 * num_parts :]

    def row(ref, t):
        return ref[pl.ds(t, 1), :].astype(compute_dtype)

    a_fixed = tuple(row(r, 0) for r in a_refs) if constant_a else None

    def body(i, h):
        t = num_steps - 1 - i if reverse else i
        if constant_a:
            a_t = a_fixed
        else:
            # The adjoint multiplies by the *next* step's a; at t = T-1 the state is still zero, any a will do.
            index = jnp.minimum(t + 1, num_steps - 1) if reverse else t
            a_t = tuple(row(r, index) for r in a_refs)
        h = _multiply_add(a_t, h, tuple(row(r, t) for r in b_refs))
        for ref, value in zip(out_refs, h, strict=True):
            ref[pl.ds(t, 1), :] = value.astype(ref.dtype)
        return h

    h0 = tuple(r[...].astype(compute_dtype) for r in h0_refs)
    if reverse:
        h0 = tuple(jnp.zeros_like(x) for x in h0)
    jax.lax.fori_loop(0, num_steps, body, h0)


def _parts(x: jax.Array) -> tuple[jax.Array, ...]:
    return (jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else (x,)


def _run_kernel(a: jax.Array, b: jax.Array, h0: jax.Array, *, reverse: bool) -> jax.Array:
    """The kernel on 2-D arrays: ``a`` ``[T, C]`` or ``[1, C]`` (time-invariant), ``b`` ``[T, C]``, ``h0`` ``[1, C]``."""
    num_steps, columns = b.shape
    block = min(BLOCK, 1 << max(columns - 1, 0).bit_length())
    padded = -(-columns // block) * block
    if padded != columns:  # zero columns: a = b = h0 = 0 keeps them zero
        pad = ((0, 0), (0, padded - columns))
        a, b, h0 = jnp.pad(a, pad), jnp.pad(b, pad), jnp.pad(h0, pad)
    constant_a = a.shape[0] == 1 and num_steps > 1
    complex_ = jnp.iscomplexobj(b)
    part_dtype = jnp.real(jnp.zeros((), b.dtype)).dtype
    compute_dtype = jnp.promote_types(part_dtype, jnp.float32)
    num_parts = 2 if complex_ else 1
    a_parts = _parts(a.astype(b.dtype)) if complex_ else (a.astype(b.dtype),)
    time_spec = pl.BlockSpec((num_steps, block), lambda j: (0, j))
    row_spec = pl.BlockSpec((1, block), lambda j: (0, j))
    kernel = functools.partial(
        _recurrence_kernel,
        num_parts=num_parts,
        num_steps=num_steps,
        constant_a=constant_a,
        reverse=reverse,
        compute_dtype=compute_dtype,
    )
    outs = pl.pallas_call(
        kernel,
        out_shape=tuple(jax.ShapeDtypeStruct((num_steps, padded), part_dtype) for _ in range(num_parts)),
        grid=(padded // block,),
        in_specs=[row_spec if constant_a else time_spec] * num_parts
        + [time_spec] * num_parts
        + [row_spec] * num_parts,
        out_specs=tuple(time_spec for _ in range(num_parts)),
        interpret=kernel_interpreted(),
        compiler_params=pl_triton.CompilerParams(num_warps=NUM_WARPS),
        name="lrd_diagonal_recurrence",
    )(*a_parts, *_parts(b), *_parts(h0.astype(b.dtype)))
    h = jax.lax.complex(*outs) if complex_ else outs[0]
    return h[:, :columns]


@jax.custom_vjp
def _recurrence_2d(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    return _run_kernel(a, b, h0, reverse=False)


def _recurrence_fwd(a, b, h0):
    h = _run_kernel(a, b, h0, reverse=False)
    return h, (a, h, h0)


def _recurrence_bwd(residuals, g):
    a, h, h0 = residuals
    lam = _run_kernel(a, g, jnp.zeros_like(h0), reverse=True)
    h_prev = jnp.concatenate([h0, h[:-1]], axis=0)
    da = lam * h_prev
    if a.shape[0] != da.shape[0]:  # time-invariant a: its gradient sums over time
        da = jnp.sum(da, axis=0, keepdims=True)
    dh0 = (a[:1] * lam[:1]).astype(h0.dtype)
    return da.astype(a.dtype), lam.astype(g.dtype), dh0


_recurrence_2d.defvjp(_recurrence_fwd, _recurrence_bwd)


def diagonal_recurrence(a: jax.Array, b: jax.Array, h0: jax.Array | None = None) -> jax.Array:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` by the Pallas kernel, with its adjoint as the gradient.

    Args:
      a: ``[T, ...]`` time-varying or ``[1, ...]`` time-invariant decay, broadcastable to ``b`` on the axes after
        time (size-1 axes of a time-varying ``a`` are broadcast here; a time-invariant one stays ``[1, C]``).
      b: ``[T, ...]`` inputs, real or complex, the dtype of the result.
      h0: ``[...]`` initial state (zeros when ``None``).
    """
    num_steps, rest = b.shape[0], b.shape[1:]
    columns = 1
    for size in rest:
        columns *= size
    time_axis = 1 if a.shape[0] == 1 and num_steps > 1 else num_steps
    a2 = jnp.broadcast_to(a, (time_axis, *rest)).reshape(time_axis, columns)
    h0 = jnp.zeros(rest, b.dtype) if h0 is None else jnp.broadcast_to(h0, rest)
    h = _recurrence_2d(
        a2.astype(b.dtype), b.reshape(num_steps, columns), h0.reshape(1, columns).astype(b.dtype)
    )
    return h.reshape(b.shape)
