"""The Pallas kernel of ``linear_scan(mode="kernel")`` (:mod:`lrd.kernels`).

Its values and gradients against the float64 loop at long T with ``|a|`` near 1 are in ``test_scan_linear.py``
(with every other mode; off GPU the kernel runs in Pallas' interpret mode). Here: many blocks of columns with
padding, a time-invariant ``a`` kept at ``[1, C]``, and that the kernel lowers for a GPU (to Triton) on a machine
without one, so a shape or dtype Triton cannot compile fails in CI rather than on the first GPU run.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd import kernels
from lrd.scan import linear_scan


def _inputs(num_steps, shape, *, complex_, time_varying, seed=0):
    rng = np.random.default_rng(seed)
    a_shape = (num_steps, *shape) if time_varying else shape
    a = rng.uniform(0.95, 0.999, a_shape)
    b = rng.normal(size=(num_steps, *shape))
    h0 = rng.normal(size=shape)
    if complex_:
        a = a * np.exp(1j * rng.uniform(0, 2 * np.pi, a_shape))
        b = b + 1j * rng.normal(size=b.shape)
        h0 = h0 + 1j * rng.normal(size=shape)
        return a.astype(np.complex64), b.astype(np.complex64), h0.astype(np.complex64)
    return a.astype(np.float32), b.astype(np.float32), h0.astype(np.float32)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("time_varying", [True, False], ids=["varying", "constant"])
def test_many_blocks_match_the_sequential_scan(complex_, time_varying):
    # Given 2 x 150 = 300 channels (three blocks of 128, the last padded) and 97 steps,
    a, b, h0 = _inputs(97, (2, 150), complex_=complex_, time_varying=time_varying)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=b.shape), jnp.float32)

    def loss(mode):
        return lambda a, b, h0: jnp.sum(weights * jnp.real(linear_scan(a, b, h0, mode=mode)))

    # When the kernel and the sequential scan compute states and gradients,
    states = {
        m: jax.jit(lambda a, b, h0, m=m: linear_scan(a, b, h0, mode=m))(a, b, h0)
        for m in ("kernel", "sequential")
    }
    grads = {m: jax.jit(jax.grad(loss(m), argnums=(0, 1, 2)))(a, b, h0) for m in ("kernel", "sequential")}
    # Then they agree to float32 rounding, and the gradient of a time-invariant a keeps a's shape.
    np.testing.assert_allclose(states["kernel"], states["sequential"], rtol=2e-5, atol=2e-5)
    for got, want, x in zip(grads["kernel"], grads["sequential"], (a, b, h0), strict=True):
        assert got.shape == x.shape and got.dtype == x.dtype
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize(
    "num_steps,complex_,time_varying", [(50, False, True), (33, True, False), (1, False, True)]
)
def test_kernel_and_its_adjoint_lower_to_triton_without_a_gpu(monkeypatch, num_steps, complex_, time_varying):
    # Given the kernel forced out of interpret mode (what runs on a GPU),
    monkeypatch.setattr(kernels, "kernel_interpreted", lambda: False)
    a, b, h0 = _inputs(num_steps, (3, 70), complex_=complex_, time_varying=time_varying)

    def value_and_grad(a, b, h0):
        return jax.value_and_grad(
            lambda a, b, h0: jnp.sum(jnp.abs(linear_scan(a, b, h0, mode="kernel"))), (0, 1, 2)
        )(a, b, h0)

    # When value and gradient are lowered for CUDA here, on a CPU,
    text = jax.jit(value_and_grad).trace(a, b, h0).lower(lowering_platforms=("cuda",)).as_text()
    # Then both passes became Triton kernels: the forward recurrence and the adjoint one.
    assert len(re.findall(r"custom_call @__gpu", text)) == 2
    assert "lrd_diagonal_recurrence" in text


def _pallas_calls(jaxpr):
    """The ``pallas_call`` equations of a jaxpr, searched through nested jaxprs (custom VJP, jit)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "pallas_call":
            found.append(eqn)
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                found += _pallas_calls(inner)
    return found


def test_time_invariant_a_is_never_broadcast_over_time():
    # A constant-in-time a enters the kernel as one row [1, C], not [T, C]: besides it, the kernel reads b and h0.
    a, b, _ = _inputs(512, (4, 32), complex_=False, time_varying=False)
    (call,) = _pallas_calls(jax.make_jaxpr(lambda a, b: linear_scan(a, b, mode="kernel"))(a, b).jaxpr)
    assert [tuple(v.aval.shape) for v in call.invars] == [(1, 128), (512, 128), (1, 128)]
