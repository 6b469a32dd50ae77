"""DeltaNet and Gated DeltaNet: both forms against a float64 loop of the papers' update, and against each other in
values and gradients at long T with decays near 1 and a length that is not a multiple of the chunk."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.delta import delta_rule_chunked, delta_rule_recurrent
from lrd.registry import build_mixer

B, H, DK, DV = 2, 3, 4, 5


def _inputs(num_steps, gated, seed=0, alpha_low=0.9):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    q = jax.random.normal(keys[0], (B, num_steps, H, DK))
    k = jax.random.normal(keys[1], (B, num_steps, H, DK))
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    v = jax.random.normal(keys[2], (B, num_steps, H, DV))
    beta = jax.random.uniform(keys[3], (B, num_steps, H), minval=0.05, maxval=0.95)
    log_alpha = None
    if gated:
        log_alpha = jnp.log(jax.random.uniform(keys[4], (B, num_steps, H), minval=alpha_low, maxval=1.0))
    return q, k, v, beta, log_alpha


def reference(q, k, v, beta, log_alpha):
    """S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T, o_t = S_t q_t, in float64."""
    q, k, v, beta = (np.asarray(a, np.float64) for a in (q, k, v, beta))
    alpha = np.ones_like(beta) if log_alpha is None else np.exp(np.asarray(log_alpha, np.float64))
    out = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            state = np.zeros((DV, DK))
            for t in range(q.shape[1]):
                kt = k[b, t, h]
                state = state @ (alpha[b, t, h] * (np.eye(DK) - beta[b, t, h] * np.outer(kt, kt)))
                state = state + beta[b, t, h] * np.outer(v[b, t, h], kt)
                out[b, t, h] = state @ q[b, t, h]
    return out


@pytest.mark.parametrize("gated", [False, True], ids=["deltanet", "gated"])
def test_both_forms_match_the_float64_update(gated):
    inputs = _inputs(150, gated)
    expected = reference(*inputs)
    assert np.max(np.abs(expected)) > 0.1
    for form in (delta_rule_recurrent, lambda *a: delta_rule_chunked(*a, chunk_size=32)):
        got = np.asarray(jax.jit(form)(*inputs))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.max(np.abs(expected)))


def plain_scan(q, k, v, beta, log_alpha, probe):
    """The gated delta rule as one plain lax.scan over time, no segments, no checkpoint (written out here)."""

    def step(state, inputs):
        q_t, k_t, v_t, beta_t, log_alpha_t, probe_t = inputs  # [B, H, ...]
        state = jnp.exp(log_alpha_t)[..., None, None] * state
        state = (
            state
            + (beta_t[..., None] * (v_t - jnp.einsum("bhvk,bhk->bhv", state, k_t)))[..., None]
            * k_t[..., None, :]
        )
        state = state + probe_t
        return state, jnp.einsum("bhvk,bhk->bhv", state, q_t)

    time_major = [jnp.moveaxis(a, 1, 0) for a in (q, k, v, beta, log_alpha)]
    _, o = jax.lax.scan(step, jnp.zeros((B, H, DV, DK)), (*time_major, probe))
    return jnp.moveaxis(o, 0, 1)


def test_checkpoint_segments_change_neither_values_nor_gradients():
    # The sequential form runs its steps in jax.checkpoint segments, here of 7 (50 = 7 x 7 + 1: a padded last
    # segment), against a plain scan of the same update: values and the gradients of every input, probe included.
    q, k, v, beta, log_alpha = _inputs(50, True, seed=2)
    probe = 0.1 * jax.random.normal(jax.random.PRNGKey(5), (50, B, H, DV, DK))
    weights = jax.random.normal(jax.random.PRNGKey(6), (B, 50, H, DV))
    args = (q, k, v, beta, log_alpha, probe)
    argnums = tuple(range(6))

    def segmented(*a):
        return jnp.sum(weights * delta_rule_recurrent(*a[:5], probe=a[5], segment=7))

    def plain(*a):
        return jnp.sum(weights * plain_scan(*a))

    value_seg, grads_seg = jax.jit(jax.value_and_grad(segmented, argnums=argnums))(*args)
    value_plain, grads_plain = jax.jit(jax.value_and_grad(plain, argnums=argnums))(*args)
    np.testing.assert_allclose(value_seg, value_plain, rtol=1e-6)
    for got, expected in zip(grads_seg, grads_plain, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(expected))))


@pytest.mark.parametrize("gated", [False, True], ids=["deltanet", "gated"])
def test_chunked_equals_sequential_in_values_and_gradients_at_long_t(gated, chunk_size=64):
    inputs = _inputs(1000, gated, seed=1, alpha_low=0.99)  # 1000 = 15 chunks of 64 + 40: a padded last chunk
    weights = jax.random.normal(jax.random.PRNGKey(9), (B, 1000, H, DV))

    def loss(form, *args):
        return jnp.sum(weights * form(*args))

    chunked = lambda *a: delta_rule_chunked(*a, chunk_size=chunk_size)  # noqa: E731
    diff = [i for i, a in enumerate(inputs) if a is not None]
    seq_out, chunk_out = (jax.jit(f)(*inputs) for f in (delta_rule_recurrent, chunked))
    scale = float(jnp.max(jnp.abs(seq_out)))
    np.testing.assert_allclose(chunk_out, seq_out, atol=2e-5 * scale)
    seq_grads = jax.jit(jax.grad(lambda *a: loss(delta_rule_recurrent, *a), argnums=diff))(*inputs)
    chunk_grads = jax.jit(jax.grad(lambda *a: loss(chunked, *a), argnums=diff))(*inputs)
    for g_seq, g_chunk in zip(seq_grads, chunk_grads, strict=True):
        np.testing.assert_allclose(g_chunk, g_seq, atol=1e-4 * float(jnp.max(jnp.abs(g_seq))))


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet"])
def test_module_forms_agree(name):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 70, 6))
    sequential = build_mixer(name, 16, scan_mode="sequential")
    chunked = build_mixer(name, 16, scan_mode="chunked", chunk_size=16)
    params = sequential.init(jax.random.PRNGKey(1), x)
    np.testing.assert_allclose(chunked.apply(params, x), sequential.apply(params, x), atol=1e-5)
