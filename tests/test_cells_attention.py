"""Attention mixers against hand-written reference equations; linear attention's three forms agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.attention import (
    LINEAR_ATTENTION_SCAN_MODES,
    causal_softmax_attention,
    elu_feature_map,
    linear_attention_chunked,
    linear_attention_parallel,
    linear_attention_recurrent,
    rotary_embedding,
    sinusoidal_table,
)
from lrd.registry import build_mixer
from lrd.scan import SCAN_MODES

BATCH, D_IN, HIDDEN, HEADS = 2, 3, 8, 2


def _x(num_steps: int, batch: int = BATCH, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (batch, num_steps, D_IN))


def _np(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _rotate_reference(x: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """RoPE written with complex numbers: pair (x_2i, x_2i+1) -> (x_2i + i x_2i+1) * exp(i t theta_i)."""
    num_steps, dim = x.shape[1], x.shape[-1]
    theta = base ** (-np.arange(0, dim, 2) / dim)
    phase = np.exp(1j * np.arange(num_steps)[:, None] * theta[None, :])[None, :, None, :]
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * phase
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def _softmax_attention_reference(p: dict[str, np.ndarray], x: np.ndarray, positions: str) -> np.ndarray:
    """Vaswani et al. 2017 eq. 1 with a causal mask, one (batch, head, query) at a time, in float64."""
    q = np.einsum("btd,dhk->bthk", x, p["query_kernel"])
    k = np.einsum("btd,dhk->bthk", x, p["key_kernel"])
    v = np.einsum("btd,dhk->bthk", x, p["value_kernel"])
    batch, num_steps, heads, head_dim = q.shape
    if positions == "rotary":
        q, k = _rotate_reference(q), _rotate_reference(k)
    elif positions == "sinusoidal":
        table = np.zeros((num_steps, head_dim))
        for t in range(num_steps):
            for i in range(0, head_dim, 2):
                table[t, i] = np.sin(t / 10000.0 ** (i / head_dim))
                table[t, i + 1] = np.cos(t / 10000.0 ** (i / head_dim))
        q, k = q + table[None, :, None], k + table[None, :, None]
    y = np.zeros_like(v)
    for b in range(batch):
        for h in range(heads):
            for t in range(num_steps):
                logits = np.array([q[b, t, h] @ k[b, s, h] for s in range(t + 1)]) / np.sqrt(head_dim)
                weights = np.exp(logits - logits.max())
                weights /= weights.sum()
                y[b, t, h] = sum(weights[s] * v[b, s, h] for s in range(t + 1))
    return np.einsum("bthk,hko->bto", y, p["output_kernel"]) + p["output_bias"]


@pytest.mark.parametrize(
    "positions,scan_mode",
    [("rotary", "jax"), ("sinusoidal", "jax"), ("none", "jax"), ("rotary", "einsum"), ("rotary", "blocked")],
)
def test_softmax_attention_matches_reference(positions, scan_mode):
    # Given multi-head attention, When applied, Then it equals the float64 loop over heads and queries.
    x = _x(7)
    model = build_mixer("attention", HIDDEN, num_heads=HEADS, positions=positions, scan_mode=scan_mode)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    y = model.apply({"params": params}, x)
    assert y.shape == (BATCH, 7, HIDDEN) and y.dtype == jnp.float32
    np.testing.assert_allclose(
        y,
        _softmax_attention_reference(_np(params), np.asarray(x, np.float64), positions),
        rtol=1e-5,
        atol=1e-5,
    )


def test_blocked_attention_equals_the_full_score_matrix_in_values_and_gradients():
    # T = 300: two full blocks of ATTENTION_BLOCK = 128 queries and a partial one, each against its key prefix.
    from lrd.cells.attention import ATTENTION_BLOCK

    num_steps = 300
    assert num_steps % ATTENTION_BLOCK and num_steps > 2 * ATTENTION_BLOCK
    q, k, v = (
        jax.random.normal(key, (2, num_steps, 2, 4)) for key in jax.random.split(jax.random.PRNGKey(7), 3)
    )
    weights = jax.random.normal(jax.random.PRNGKey(8), (2, num_steps, 2, 4))

    def loss(q, k, v, mode):
        return jnp.sum(causal_softmax_attention(q, k, v, mode) * weights)

    full = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, "einsum")
    blocked = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, "blocked")
    for got, want in zip(jax.tree_util.tree_leaves(blocked), jax.tree_util.tree_leaves(full), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        causal_softmax_attention(q, k, v, "blocked"), causal_softmax_attention(q, k, v, "einsum"), atol=1e-6
    )


def test_softmax_attention_probe_is_key_value_gradient():
    # The probe of softmax attention is added to (k_t, v_t), so its gradient is dL/dk_t, dL/dv_t, computed here
    # directly through the pure functions.
    x = _x(6)
    model = build_mixer("attention", HIDDEN, num_heads=HEADS)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    probes = model.apply({"params": params}, x, mutable=["probes"])[1]["probes"]
    weights = jax.random.normal(jax.random.PRNGKey(3), (BATCH, 6, HIDDEN))
    probe_loss = lambda pr: jnp.sum(model.apply({"params": params, "probes": pr}, x) * weights)  # noqa: E731
    probe_grad = jax.jit(jax.grad(probe_loss))(probes)

    q = rotary_embedding(jnp.einsum("btd,dhk->bthk", x, params["query_kernel"]))
    k = rotary_embedding(jnp.einsum("btd,dhk->bthk", x, params["key_kernel"]))
    v = jnp.einsum("btd,dhk->bthk", x, params["value_kernel"])

    def loss(k, v):
        y = jnp.einsum("bthk,hko->bto", causal_softmax_attention(q, k, v), params["output_kernel"])
        return jnp.sum((y + params["output_bias"]) * weights)

    dk, dv = jax.jit(jax.grad(loss, argnums=(0, 1)))(k, v)
    key_grad, value_grad = probe_grad["state"]
    assert key_grad.shape == (6, BATCH, HEADS, HIDDEN // HEADS)  # time-major, like every probe
    np.testing.assert_allclose(key_grad, jnp.swapaxes(dk, 0, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value_grad, jnp.swapaxes(dv, 0, 1), rtol=1e-5, atol=1e-6)


def test_rotary_matches_complex_rotation_and_is_relative():
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 2, 6))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 9, 2, 6))
    rq = rotary_embedding(q)
    np.testing.assert_allclose(rq, _rotate_reference(np.asarray(q, np.float64)), rtol=1e-5, atol=1e-6)
    # The same vectors placed at steps (t, s) and (t + c, s + c) give the same rotated dot product.
    q_same = jnp.broadcast_to(q[:, :1], q.shape)
    k_same = jnp.broadcast_to(k[:, :1], k.shape)
    dots = jnp.einsum("bthk,bshk->bhts", rotary_embedding(q_same), rotary_embedding(k_same))[0, 0]
    for offset in range(-3, 4):
        diagonal = jnp.diagonal(dots, offset=offset)
        np.testing.assert_allclose(diagonal, jnp.full_like(diagonal, diagonal[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(rq, axis=-1), jnp.linalg.norm(q, axis=-1), rtol=1e-6)


def test_sinusoidal_table_formula():
    table = sinusoidal_table(5, 6)
    t, i = np.arange(5)[:, None], np.arange(0, 6, 2)[None, :]
    np.testing.assert_allclose(table[:, 0::2], np.sin(t / 10000.0 ** (i / 6)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table[:, 1::2], np.cos(t / 10000.0 ** (i / 6)), rtol=1e-6, atol=1e-6)


def _linear_attention_reference(phi_q: np.ndarray, phi_k: np.ndarray, v: np.ndarray, eps: float = 1e-6):
    """Katharopoulos et al. 2020 eqs. 18-20 as a float64 loop: S += phi(k) v^T, z += phi(k), y = q S / q z."""
    batch, num_steps, heads, key_dim = phi_q.shape
    y = np.zeros(v.shape)
    for b in range(batch):
        for h in range(heads):
            s, z = np.zeros((key_dim, v.shape[-1])), np.zeros(key_dim)
            for t in range(num_steps):
                s = s + np.outer(phi_k[b, t, h], v[b, t, h])
                z = z + phi_k[b, t, h]
                y[b, t, h] = phi_q[b, t, h] @ s / (phi_q[b, t, h] @ z + eps)
    return y


def _qkv(num_steps: int, batch: int = 2, heads: int = 2, head_dim: int = 3, seed: int = 0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k, v = (jax.random.normal(key, (batch, num_steps, heads, head_dim)) for key in keys)
    return elu_feature_map(q), elu_feature_map(k), v


def _all_forms():
    forms = {
        f"recurrent-{mode}": lambda q, k, v, mode=mode, **kw: linear_attention_recurrent(
            q, k, v, mode=mode, chunk_size=5, **kw
        )
        for mode in SCAN_MODES
    }
    forms["parallel"] = linear_attention_parallel
    for size in (1, 5, 13, 64):  # 13 = T in the short test, 1 = the recurrent extreme
        forms[f"chunked-{size}"] = lambda q, k, v, size=size, **kw: linear_attention_chunked(
            q, k, v, chunk_size=size, **kw
        )
    return forms


@pytest.mark.parametrize("form", list(_all_forms()))
def test_linear_attention_forms_match_reference_loop(form):
    # T = 13 is not a multiple of the chunk sizes 5 and 64, so padding is exercised.
    phi_q, phi_k, v = _qkv(13)
    y = _all_forms()[form](phi_q, phi_k, v)
    reference = _linear_attention_reference(*(np.asarray(a, np.float64) for a in (phi_q, phi_k, v)))
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-6)


def test_elu_feature_map_is_positive_and_matches_formula():
    x = jnp.linspace(-20.0, 5.0, 101)
    phi = elu_feature_map(x)
    np.testing.assert_allclose(phi, np.where(x > 0, x + 1.0, np.exp(np.asarray(x))), rtol=1e-6, atol=1e-7)
    assert bool(jnp.all(phi > 0))


def test_linear_attention_forms_agree_on_long_sequences():
    # Given T = 1024, When each form computes values and input gradients, Then all agree with the recurrent
    # sequential form. Sums of ~1000 positive float32 terms in different orders differ by ~sqrt(T) ulps,
    # hence rtol 2e-5 (values) and 5e-5 (gradients, which sum the same terms a second time).
    phi_q, phi_k, v = _qkv(1024, batch=1, heads=2, head_dim=2, seed=3)
    weights = jax.random.normal(jax.random.PRNGKey(9), v.shape)
    forms = _all_forms()

    def run(name):
        fn = forms[name]

        def loss(q, k, vv):
            y = fn(q, k, vv)
            return jnp.sum(y * weights), y

        (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(phi_q, phi_k, v)
        return y, grads

    y_ref, g_ref = run("recurrent-sequential")
    for name in forms:
        if name in ("recurrent-sequential", "chunked-1", "chunked-13"):  # the short test covers these sizes
            continue
        y, g = run(name)
        np.testing.assert_allclose(y, y_ref, rtol=2e-5, atol=2e-6, err_msg=name)
        for a, b in zip(g, g_ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=5e-5, atol=5e-6, err_msg=name)


@pytest.mark.parametrize("scan_mode", LINEAR_ATTENTION_SCAN_MODES)
def test_linear_attention_module_scan_modes_and_probes_agree(scan_mode):
    # Given the module in each scan mode, Then outputs, parameter grads and probe grads dL/d(S_t, z_t) agree.
    x = _x(11)
    reference = build_mixer("linear_attention", HIDDEN, num_heads=HEADS, scan_mode="sequential")
    chunk = {"chunk_size": 4} if scan_mode == "chunked" else {}
    model = build_mixer("linear_attention", HIDDEN, num_heads=HEADS, scan_mode=scan_mode, **chunk)
    params = reference.init(jax.random.PRNGKey(2), x)["params"]
    probes = reference.apply({"params": params}, x, mutable=["probes"])[1]["probes"]
    assert probes["state"].shape == (11, BATCH, HEADS * (4 * 4 + 4))

    def loss(module, p, pr):
        return jnp.sum(jnp.sin(module.apply({"params": p, "probes": pr}, x)))

    g_ref = jax.jit(jax.grad(lambda p, pr: loss(reference, p, pr), argnums=(0, 1)))(params, probes)
    g = jax.jit(jax.grad(lambda p, pr: loss(model, p, pr), argnums=(0, 1)))(params, probes)
    np.testing.assert_allclose(
        model.apply({"params": params}, x), reference.apply({"params": params}, x), rtol=1e-5, atol=1e-6
    )
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The probe gradient at the last step sees only the readout at that step: dy_T / dS_T = phi(q_T) / denom.
    assert float(jnp.abs(g[1]["state"][-1]).sum()) > 0


def test_linear_attention_probe_equals_state_gradient():
    # dL/dP_t computed through the parallel form equals the gradient w.r.t. an additive shift of S_t in the
    # explicit recurrence (finite differences on one entry, float32 central difference).
    phi_q, phi_k, v = _qkv(6, batch=1, heads=1, head_dim=2, seed=5)
    size = 1 * (2 * 2 + 2)
    probe = jnp.zeros((6, 1, size))
    weights = jax.random.normal(jax.random.PRNGKey(4), v.shape)

    def loss(p):
        return jnp.sum(linear_attention_parallel(phi_q, phi_k, v, probe=p) * weights)

    grad = jax.grad(loss)(probe)
    t, index, delta = 2, 1, 1e-2
    bump = jnp.zeros_like(probe).at[t, 0, index].set(delta)
    fd = (loss(bump) - loss(-bump)) / (2 * delta)
    np.testing.assert_allclose(grad[t, 0, index], fd, rtol=2e-3)  # central difference in float32


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("attention", {"positions": "alibi"}, "positions"),
        ("linear_attention", {"scan_mode": "kernel"}, "scan_mode='kernel'.*sequential, associative, chunked"),
        ("linear_attention", {"truncation": 3}, "truncation=3: only scan_mode 'sequential' or 'associative'"),
        ("attention", {"num_heads": 3}, "num_heads"),
        ("attention", {"scan_mode": "flash"}, "scan_mode='flash'.*allowed values: auto, jax, einsum"),
    ],
)
def test_bad_options_name_the_field(name, options, field):
    model = build_mixer(name, HIDDEN, **options)
    with pytest.raises(ValueError, match=field):
        model.init(jax.random.PRNGKey(0), _x(4))
