"""bptt_scan against the math: a Python for-loop, truncation semantics, the gradient probe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.scan import bptt_scan

HIDDEN, INPUTS = 5, 3


def _params(seed: int = 0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    w = jax.random.normal(k1, (INPUTS, HIDDEN)) / np.sqrt(INPUTS)
    u = jax.random.normal(k2, (HIDDEN, HIDDEN)) * (1.2 / np.sqrt(HIDDEN))  # slightly expansive
    return w, u


def _step(params):
    w, u = params
    return lambda h, x: jnp.tanh(x @ w + h @ u)


def _xs(num_steps: int, seed: int = 1):
    return jax.random.normal(jax.random.PRNGKey(seed), (num_steps, 2, INPUTS))


def _loop(params, h0, xs):
    """The reference: a plain Python loop over time."""
    step = _step(params)
    h, hs = h0, []
    for t in range(xs.shape[0]):
        h = step(h, xs[t])
        hs.append(h)
    return h, jnp.stack(hs)


@pytest.mark.parametrize("num_steps", [1, 7, 33])
@pytest.mark.parametrize("unroll", [1, 4])
def test_equals_python_loop(num_steps, unroll):
    # Given a tanh recurrence, When run by bptt_scan and by a for-loop, Then all states agree.
    params, xs = _params(), _xs(num_steps)
    h0 = jnp.zeros((2, HIDDEN))
    final, hs = bptt_scan(_step(params), h0, xs, unroll=unroll)
    ref_final, ref_hs = _loop(params, h0, xs)
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final, ref_final, rtol=1e-6, atol=1e-6)


def test_emit_sees_carry_and_input():
    params, xs = _params(), _xs(6)
    h0 = jnp.zeros((2, HIDDEN))
    _, ys = bptt_scan(_step(params), h0, xs, emit=lambda h, x: jnp.sum(h, -1) + jnp.sum(x, -1))
    _, ref_hs = _loop(params, h0, xs)
    np.testing.assert_allclose(ys, ref_hs.sum(-1) + xs.sum(-1), rtol=1e-6, atol=1e-6)


def _loss(params, xs, **kwargs):
    _, hs = bptt_scan(_step(params), jnp.zeros((2, HIDDEN)), xs, **kwargs)
    return jnp.sum(jnp.sin(hs))  # every step contributes


@pytest.mark.parametrize("num_steps", [8, 13])
def test_truncation_at_length_equals_full_bptt(num_steps):
    params, xs = _params(), _xs(num_steps)
    full = jax.grad(_loss)(params, xs)
    for k in (num_steps, num_steps + 5):
        truncated = jax.grad(lambda p, k=k: _loss(p, xs, truncation=k))(params)
        for g_full, g_trunc in zip(full, truncated, strict=True):
            np.testing.assert_allclose(g_trunc, g_full, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("num_steps,k", [(12, 4), (10, 3), (9, 1), (7, 5)])
def test_truncation_blocks_gradients_across_chunks(num_steps, k):
    # Given truncation k, Then d h_t / d x_s is non-zero iff s <= t and s, t lie in the same k-chunk;
    # in particular it vanishes whenever t - s >= k (T need not be divisible by k).
    params, xs = _params(), _xs(num_steps)

    def states(xs):
        _, hs = bptt_scan(_step(params), jnp.zeros((2, HIDDEN)), xs, truncation=k)
        return hs

    jac = jax.jacrev(states)(xs)  # [t, batch, hidden, s, batch, inputs]
    norms = np.asarray(jnp.sqrt(jnp.sum(jnp.square(jac), axis=(1, 2, 4, 5))))  # [t, s]
    for t in range(num_steps):
        for s in range(num_steps):
            connected = s <= t and s // k == t // k
            if connected:
                assert norms[t, s] > 0, (t, s)
            else:
                assert norms[t, s] == 0.0, (t, s)
    # Forward values do not depend on truncation.
    np.testing.assert_allclose(states(xs), _loop(params, jnp.zeros((2, HIDDEN)), xs)[1], rtol=1e-6, atol=1e-6)


def test_truncated_gradient_matches_manual_chunks():
    # The reference: restart the graph at each chunk boundary by hand.
    params, xs, k = _params(), _xs(11), 4

    def manual_loss(params):
        step = _step(params)
        h, total = jnp.zeros((2, HIDDEN)), 0.0
        for t in range(xs.shape[0]):
            if t % k == 0:
                h = jax.lax.stop_gradient(h)
            h = step(h, xs[t])
            total = total + jnp.sum(jnp.sin(h))
        return total

    expected = jax.grad(manual_loss)(params)
    got = jax.grad(lambda p: _loss(p, xs, truncation=k))(params)
    for g_ref, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def test_remat_and_unroll_do_not_change_gradients():
    params, xs = _params(), _xs(20)
    reference = jax.grad(_loss)(params, xs)
    for kwargs in ({"remat": True}, {"unroll": 5}, {"remat": True, "truncation": 6}):
        got = jax.grad(lambda p, kw=kwargs: _loss(p, xs, **kw))(params)
        expected = (
            reference
            if "truncation" not in kwargs
            else jax.grad(lambda p: _loss(p, xs, truncation=6))(params)
        )
        for g_ref, g in zip(expected, got, strict=True):
            # Unrolling/remat lets XLA fuse and reassociate float32 sums over 20 steps differently, so elements
            # near zero differ by a few ulps of the gradient's scale: compare relative to that scale.
            scale = float(jnp.max(jnp.abs(g_ref)))
            np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("truncation", [None, 3])
def test_probe_gradient_is_dloss_dstate(truncation):
    # Given the loss L = sum_t sum(sin(h_t)) * weight_t, the probe gradient at t must equal the derivative of L with
    # respect to h_t computed through explicit intermediates: re-run the suffix of the recurrence from a free h_t.
    params, xs = _params(), _xs(9)
    num_steps = xs.shape[0]
    weights = jnp.linspace(0.5, 1.5, num_steps)
    step = _step(params)
    h0 = jnp.zeros((2, HIDDEN))

    def loss_with_probe(probe):
        _, hs = bptt_scan(step, h0, xs, probe=probe, truncation=truncation)
        return jnp.sum(jnp.sin(hs) * weights[:, None, None])

    probe_grads = jax.grad(loss_with_probe)(jnp.zeros((num_steps, 2, HIDDEN)))
    _, hs = _loop(params, h0, xs)

    def suffix_loss(h_t, t):
        # Loss terms from step t onwards as a function of the state h_t (earlier terms do not depend on it).
        total = jnp.sum(jnp.sin(h_t)) * weights[t]
        h = h_t
        for s in range(t + 1, num_steps):
            if truncation is not None and s % truncation == 0:
                h = jax.lax.stop_gradient(h)
            h = step(h, xs[s])
            total = total + jnp.sum(jnp.sin(h)) * weights[s]
        return total

    for t in range(num_steps):
        expected = jax.grad(suffix_loss)(hs[t], t)
        np.testing.assert_allclose(probe_grads[t], expected, rtol=1e-5, atol=1e-6)


def test_probe_does_not_change_forward_values():
    params, xs = _params(), _xs(5)
    h0 = jnp.zeros((2, HIDDEN))
    _, plain = bptt_scan(_step(params), h0, xs)
    _, probed = bptt_scan(_step(params), h0, xs, probe=jnp.zeros((5, 2, HIDDEN)))
    np.testing.assert_array_equal(plain, probed)


def test_pytree_carry_and_inputs():
    # An LSTM-like (c, h) carry and a dict of inputs.
    def step(carry, x):
        c, h = carry
        c = 0.9 * c + jnp.tanh(x["a"] + h)
        return c, jnp.tanh(c) * x["b"]

    xs = {"a": jnp.ones((6, 3)), "b": jnp.full((6, 3), 0.5)}
    carry0 = (jnp.zeros(3), jnp.zeros(3))
    final, ys = bptt_scan(step, carry0, xs, emit=lambda c, _x: c[1], truncation=4)
    c, h = carry0
    for t in range(6):
        c, h = step((c, h), {"a": xs["a"][t], "b": xs["b"][t]})
        np.testing.assert_allclose(ys[t], h, rtol=1e-6)
    np.testing.assert_allclose(final[0], c, rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_truncation_is_rejected(bad):
    with pytest.raises(ValueError, match="truncation"):
        bptt_scan(lambda h, x: h + x, jnp.zeros(2), jnp.ones((4, 2)), truncation=bad)


def test_inconsistent_time_lengths_are_rejected():
    with pytest.raises(ValueError, match="leading"):
        bptt_scan(lambda h, x: h + x["a"], jnp.zeros(2), {"a": jnp.ones((4, 2)), "b": jnp.ones((3, 2))})
