"""``lrd.scan.linear_scan``: every mode computes the same recurrence ``h_t = a_t h_{t-1} + b_t``, values and grads.

The hard regime for a linear recurrence in float32 is long sequences with decays on (or next to) the unit circle:
nothing forgets, so rounding errors are not damped. The cases below put ``|a|`` in ``[0.99, 0.9999]`` (and
exactly 0.999 in one channel), with random phases for complex ``a``, up to ``T = 4096``, with an initial state, and
with chunk sizes that do not divide ``T``.

Error measure: ``max |x - ref| / max |ref|`` over the whole array. float32 has eps = 1.2e-7; a recurrence of ``T``
steps with ``|a| ~ 1`` accumulates ~one rounding per step that is never damped, and the three modes round in
different orders (a left fold; a balanced tree of depth log2 T; trees inside chunks and a fold across them), so
relative errors of several ``sqrt(T) * eps`` are expected (measured: up to 5e-6 for states and 1.3e-5 for
gradients at T = 4096 with a constant complex ``a``). We allow 2e-5 for states and 5e-5 for gradients (the
backward pass is a second recurrence of the same length, run on the forward results, so its error adds to
theirs). Ground truth is float64 NumPy on the same float32-rounded inputs: the loop for states, the adjoint
(backward) recurrence for gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.scan import SCAN_MODES, linear_scan

VALUE_TOL, GRAD_TOL = 2e-5, 5e-5
SHAPE = (2, 3)  # [batch, width] of the state


def _inputs(kind: str, num_steps: int, *, time_varying: bool, seed: int = 0):
    """float32/complex64 ``(a, b, h0)`` with ``|a|`` in [0.99, 0.9999] (one channel exactly 0.999)."""
    rng = np.random.default_rng(seed)
    a_shape = (num_steps, *SHAPE) if time_varying else SHAPE
    modulus = rng.uniform(0.99, 0.9999, a_shape)
    modulus[..., 0, 0] = 0.999
    b = rng.normal(size=(num_steps, *SHAPE))
    h0 = rng.normal(size=SHAPE)
    if kind == "real":
        return modulus.astype(np.float32), b.astype(np.float32), h0.astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi, a_shape)
    a = (modulus * np.exp(1j * phase)).astype(np.complex64)
    b = (b + 1j * rng.normal(size=b.shape)).astype(np.complex64)
    h0 = (h0 + 1j * rng.normal(size=SHAPE)).astype(np.complex64)
    return a, b, h0


def _reference(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """The recurrence as a float64 (complex128) loop."""
    dtype = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
    a = np.broadcast_to(np.asarray(a, dtype), b.shape)
    h, out = np.asarray(h0, dtype), []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return np.stack(out)


def _loss(h: jax.Array, weights: jax.Array) -> jax.Array:
    """A scalar that depends on every state, linearly and quadratically (real for complex ``h`` too)."""
    return jnp.mean(weights * jnp.real(h)) + jnp.mean(jnp.abs(h) ** 2) / 100.0


def _relative_error(x, ref) -> float:
    x, ref = np.asarray(x), np.asarray(ref)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _all_modes(a, b, h0, weights, *, chunk_size):
    """Values and grads w.r.t. ``(a, b, h0)`` of every mode, in one compiled program."""
    out = {}
    for mode in SCAN_MODES:

        def loss(a, b, h0, mode=mode):
            return _loss(linear_scan(a, b, h0, mode=mode, chunk_size=chunk_size), weights)

        out[mode] = (
            linear_scan(a, b, h0, mode=mode, chunk_size=chunk_size),
            jax.grad(loss, argnums=(0, 1, 2))(a, b, h0),
        )
    return out


def _adjoint_grads(a, b, h0, weights, h):
    """float64 gradients of :func:`_loss` by the adjoint (backward) recurrence, in JAX's convention.

    With ``G = dL/dRe + i dL/dIm`` (for real arrays simply ``dL/dx``): ``G_{h_t} = direct_t + conj(a_{t+1})
    G_{h_{t+1}}``, ``G_{b_t} = G_{h_t}``, ``G_{a_t} = G_{h_t} conj(h_{t-1})``, ``G_{h0} = conj(a_1) G_{h_1}``;
    ``jax.grad`` returns ``conj(G)``. A constant-in-time ``a`` receives the sum over time.
    """
    a_full = np.broadcast_to(np.asarray(a, h.dtype), h.shape)
    direct = (np.asarray(weights, np.float64) + 2.0 * h / 100.0) / h.size
    lam = np.zeros_like(h)
    lam[-1] = direct[-1]
    for t in range(len(h) - 2, -1, -1):
        lam[t] = direct[t] + np.conj(a_full[t + 1]) * lam[t + 1]
    h_prev = np.concatenate([np.asarray(h0, h.dtype)[None], h[:-1]])
    grad_a = lam * np.conj(h_prev)
    if np.ndim(a) < h.ndim:
        grad_a = grad_a.sum(axis=0)
    return tuple(np.conj(g) for g in (grad_a, lam, np.conj(a_full[0]) * lam[0]))


@pytest.mark.parametrize(
    "kind,num_steps,chunk_size,time_varying",
    [
        ("real", 4096, 100, True),  # 100 does not divide 4096
        ("complex", 4096, 100, False),  # a constant in time, broadcast against b [time, ...]
        ("complex", 1000, 64, True),  # 64 does not divide 1000
    ],
)
def test_modes_match_float64_values_and_grads(kind, num_steps, chunk_size, time_varying):
    # Given a long recurrence with |a| near 1 and an initial state,
    a, b, h0 = _inputs(kind, num_steps, time_varying=time_varying)
    weights = np.random.default_rng(1).normal(size=b.shape).astype(np.float32)
    # When every mode runs it (values and gradients of a scalar loss),
    out = _all_modes(a, b, h0, jnp.asarray(weights), chunk_size=chunk_size)
    # Then every mode's states match the float64 loop, and its gradients the float64 adjoint recurrence.
    ref = _reference(a, b, h0)
    ref_grads = _adjoint_grads(a, b, h0, weights, ref)
    for mode in SCAN_MODES:
        values, grads = out[mode]
        assert values.shape == b.shape and values.dtype == b.dtype
        assert _relative_error(values, ref) < VALUE_TOL, f"{mode}: states differ from the float64 loop"
        for name, grad, expected in zip(("a", "b", "h0"), grads, ref_grads, strict=True):
            assert grad.shape == expected.shape and grad.dtype == b.dtype
            assert _relative_error(grad, expected) < GRAD_TOL, f"{mode}: d loss / d {name} is off"


def test_chunks_of_one_step():
    # Given chunk_size=1 (every chunk a single step), Then chunked equals sequential exactly in structure.
    a, b, h0 = _inputs("real", 300, time_varying=False, seed=2)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=b.shape), jnp.float32)
    out = _all_modes(a, b, h0, weights, chunk_size=1)
    np.testing.assert_allclose(out["chunked"][0], out["sequential"][0], rtol=1e-6, atol=1e-6)
    for grad, seq in zip(out["chunked"][1], out["sequential"][1], strict=True):
        np.testing.assert_allclose(grad, seq, rtol=1e-5, atol=1e-8)


def _explicit_probe_grads(a, b, h0, weights):
    """``dL/dh_t`` for every t without a probe: for each t, L as a function of the state ``h_t`` itself.

    The states before ``t`` are fixed numbers; the states after ``t`` are recomputed from ``h_t`` by a Python loop.
    """
    num_steps = b.shape[0]
    states = [h0]
    for t in range(num_steps):
        states.append(a[t] * states[-1] + b[t])
    states = states[1:]
    grads = []
    for t in range(num_steps):

        def loss_from(h_t, t=t):
            hs = list(states[:t]) + [h_t]
            for s in range(t + 1, num_steps):
                hs.append(a[s] * hs[-1] + b[s])
            return _loss(jnp.stack(hs), weights)

        grads.append(jax.grad(loss_from)(states[t]))
    return jnp.stack(grads)


@jax.jit
def _probe_case(a, b, h0, weights):
    expected = _explicit_probe_grads(a, b, h0, weights)
    probe = jnp.zeros_like(b)
    got, probed, plain = {}, {}, {}
    for mode in SCAN_MODES:

        def loss(probe, mode=mode):
            return _loss(linear_scan(a, b, h0, mode=mode, probe=probe, chunk_size=4), weights)

        got[mode] = jax.grad(loss)(probe)
        probed[mode] = linear_scan(a, b, h0, mode=mode, probe=probe, chunk_size=4)
        plain[mode] = linear_scan(a, b, h0, mode=mode, chunk_size=4)
    return expected, got, probed, plain


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_probe_gradient_is_dloss_dstate(kind):
    # Given a zero probe added to every state, When differentiating w.r.t. it, Then for every mode the result
    # equals dL/dh_t computed by cutting the graph at h_t (the total derivative through all later steps).
    a, b, h0 = _inputs(kind, 9, time_varying=True, seed=7)
    weights = np.random.default_rng(8).normal(size=b.shape).astype(np.float32)
    expected, got, probed, plain = _probe_case(a, b, h0, weights)
    assert float(jnp.max(jnp.abs(expected))) > 0
    for mode in SCAN_MODES:
        assert got[mode].shape == b.shape and got[mode].dtype == b.dtype
        np.testing.assert_allclose(got[mode], expected, rtol=1e-5, atol=1e-7, err_msg=mode)
        # The probe is zeros, so it leaves the states unchanged.
        np.testing.assert_array_equal(probed[mode], plain[mode])


def test_h0_defaults_to_zeros_and_broadcasts():
    # (chunk_size 64 > T = 33: the chunked mode runs one chunk, shortened to the sequence.)
    a, b, _ = _inputs("complex", 33, time_varying=False, seed=9)

    @jax.jit
    def run(a, b):
        return {
            mode: (
                linear_scan(a, b, mode=mode, chunk_size=64),
                linear_scan(a, b, jnp.zeros(SHAPE, b.dtype), mode=mode, chunk_size=64),
                linear_scan(a, b, 2.0, mode=mode, chunk_size=64),  # a scalar h0 broadcasts
            )
            for mode in SCAN_MODES
        }

    ref = _reference(a, b, np.full(SHAPE, 2.0))
    for mode, (no_h0, zero_h0, two_h0) in run(a, b).items():
        np.testing.assert_array_equal(no_h0, zero_h0)
        assert _relative_error(two_h0, ref) < VALUE_TOL, mode


def test_bad_mode_raises_naming_allowed_values():
    a, b, _ = _inputs("real", 4, time_varying=False)
    with pytest.raises(ValueError, match="mode") as info:
        linear_scan(a, b, mode="parallel")
    for allowed in SCAN_MODES:
        assert allowed in str(info.value)


def test_bad_chunk_size_raises():
    a, b, _ = _inputs("real", 4, time_varying=False)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_scan(a, b, mode="chunked", chunk_size=0)


# ----------------------------------------------------------------------------------------------------------------
# Truncated BPTT through a linear scan


@pytest.mark.parametrize("mode", SCAN_MODES)
@pytest.mark.parametrize("kind", ["real", "complex"])
def test_truncation_changes_gradients_exactly_as_bptt_scan_does(mode, kind):
    # Given T = 23 and k = 5 (a partial last chunk), When linear_scan truncates in any mode, Then the values are the
    # untruncated ones and the gradients w.r.t. a, b and h0 equal those of bptt_scan running the same affine step
    # with the same truncation: an independent implementation of the same semantics.
    from lrd.scan import bptt_scan

    a, b, h0 = _inputs(kind, 23, time_varying=True, seed=3)
    weights = jnp.asarray(np.random.default_rng(4).normal(size=b.shape), b.dtype)

    def loss_linear(a, b, h0):
        hs = linear_scan(a, b, h0, mode=mode, chunk_size=3, truncation=5)
        return jnp.sum(jnp.real(hs * weights)), hs

    def loss_bptt(a, b, h0):
        _, hs = bptt_scan(lambda h, ab: ab[0] * h + ab[1], h0, (a, b), truncation=5)
        return jnp.sum(jnp.real(hs * weights)), hs

    grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2), has_aux=True)
    (_, hs), grads = jax.jit(grad(loss_linear))(a, b, h0)
    (_, hs_ref), grads_ref = jax.jit(grad(loss_bptt))(a, b, h0)
    np.testing.assert_allclose(hs, _reference(a, b, h0), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The probe view of the same fact: dL/dh_s from a loss at t = 22 vanishes for s in earlier chunks (< 20).
    probe = jnp.zeros(b.shape, b.dtype)
    d_probe = jax.grad(lambda p: jnp.real(linear_scan(a, b, h0, mode=mode, probe=p, truncation=5)[-1]).sum())(
        probe
    )
    assert float(jnp.abs(d_probe[:20]).max()) == 0.0 and float(jnp.abs(d_probe[20:]).min()) > 0.0


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_bad_truncation_raises(bad):
    a, b, _ = _inputs("real", 4, time_varying=False)
    with pytest.raises(ValueError, match="truncation"):
        linear_scan(a, b, truncation=bad)


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_fft_mode_matches_float64_values_and_grads_for_a_time_invariant_a(kind):
    # Given a constant-in-time a with |a| in [0.99, 0.9999] (random phases when complex), T = 4096, no h0,
    # When mode="fft" computes h = (a^k)_k * b as a causal convolution, Then states and gradients match the float64
    # loop and adjoint recurrence to the tolerances of the other modes.
    a, b, _ = _inputs(kind, 4096, time_varying=False, seed=5)
    h0 = np.zeros(SHAPE, b.dtype)
    weights = np.random.default_rng(6).normal(size=b.shape).astype(np.float32)

    def loss(a, b):
        return _loss(linear_scan(a, b, mode="fft"), jnp.asarray(weights))

    values = jax.jit(lambda a, b: linear_scan(a, b, mode="fft"))(a, b)
    grad_a, grad_b = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, b)
    ref = _reference(a, b, h0)
    ref_a, ref_b, _ = _adjoint_grads(a, b, h0, weights, ref)
    assert values.dtype == b.dtype and _relative_error(values, ref) < VALUE_TOL
    assert _relative_error(grad_a, ref_a) < GRAD_TOL and _relative_error(grad_b, ref_b) < GRAD_TOL


def test_fft_mode_refuses_what_it_cannot_compute():
    a, b, h0 = _inputs("real", 8, time_varying=True)
    with pytest.raises(ValueError, match="time-invariant a"):
        linear_scan(a, b, mode="fft")
    a, b, h0 = _inputs("real", 8, time_varying=False)
    with pytest.raises(ValueError, match="no h0 and no truncation"):
        linear_scan(a, b, h0, mode="fft")
    with pytest.raises(ValueError, match="no h0 and no truncation"):
        linear_scan(a, b, mode="fft", truncation=4)
