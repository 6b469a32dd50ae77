"""xLSTM cells (Beck et al. 2024) against the paper's equations written out in NumPy; the mLSTM's forms agree.

The references are the *unstabilised* equations in float64 (``i = exp(i~)``, no ``m``), so each comparison also
checks that the stabiliser ``m`` cancels as it should.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.xlstm import (
    MLSTM,
    MLSTM_SCAN_MODES,
    SLSTM,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_read_out,
    mlstm_recurrent,
    mlstm_step,
    slstm_scan,
    slstm_step,
)

BATCH, TIME, D_IN, HIDDEN, HEADS = 2, 6, 3, 8, 2


@contextlib.contextmanager
def enable_x64():
    """Float64 inside the block only (``jax.experimental.enable_x64`` is gone from recent JAX)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _x(num_steps: int = TIME, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (BATCH, num_steps, D_IN))


def _random_params(module, x, seed=1):
    """Random values (scale 0.5) of the module's parameter shapes, so zero biases don't hide mistakes."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(seed), x)["params"]
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


# ----------------------------------------------------------------------------------------------------------------
# sLSTM


def _full_recurrent_matrix(blocks: np.ndarray) -> np.ndarray:
    """``[heads, head_dim, 4, head_dim]`` blocks -> the dense block-diagonal ``[hidden, 4 * hidden]`` matrix."""
    heads, head_dim = blocks.shape[0], blocks.shape[1]
    hidden = heads * head_dim
    dense = np.zeros((hidden, 4 * hidden))
    for gate in range(4):
        for head in range(heads):
            rows = slice(head * head_dim, (head + 1) * head_dim)
            cols = slice(gate * hidden + head * head_dim, gate * hidden + (head + 1) * head_dim)
            dense[rows, cols] = blocks[head, :, gate, :]
    return dense


def ref_slstm_unstabilised(xw: np.ndarray, blocks: np.ndarray, forget_gate: str) -> np.ndarray:
    """Paper eqs. 8-14 without the stabiliser: ``xw: [time, batch, 4H]`` -> ``h: [time, batch, H]`` (float64)."""
    hidden = xw.shape[-1] // 4
    dense = _full_recurrent_matrix(blocks)
    c = n = h = np.zeros(xw.shape[1:-1] + (hidden,))
    out = []
    for xw_t in xw:
        pre = xw_t + h @ dense
        i_tilde, f_tilde, z_tilde, o_tilde = np.split(pre, 4, axis=-1)
        i = np.exp(i_tilde)
        f = _sigmoid(f_tilde) if forget_gate == "sigmoid" else np.exp(f_tilde)
        c = f * c + i * np.tanh(z_tilde)
        n = f * n + i
        h = _sigmoid(o_tilde) * c / n
        out.append(h)
    return np.stack(out)


def test_slstm_step_matches_stabilised_equations():
    # Given a state with non-trivial m and n, When one step runs, Then it follows eqs. 15-17 term by term.
    keys = jax.random.split(jax.random.PRNGKey(3), 6)
    head_dim = HIDDEN // HEADS
    c, h = (jax.random.normal(k, (BATCH, HIDDEN)) for k in keys[:2])
    n = jnp.exp(jax.random.normal(keys[2], (BATCH, HIDDEN)))
    m = 2.0 * jax.random.normal(keys[3], (BATCH, HIDDEN))
    xw = 2.0 * jax.random.normal(keys[4], (BATCH, 4 * HIDDEN))
    blocks = jax.random.normal(keys[5], (HEADS, head_dim, 4, head_dim)) / np.sqrt(head_dim)
    got = jax.jit(slstm_step)((c, n, m, h), xw, blocks)

    c0, n0, m0, h0, xw0 = _np((c, n, m, h, xw))
    pre = xw0 + h0 @ _full_recurrent_matrix(np.asarray(blocks, np.float64))
    i_tilde, f_tilde, z_tilde, o_tilde = np.split(pre, 4, axis=-1)
    log_f = np.log(_sigmoid(f_tilde))
    m1 = np.maximum(log_f + m0, i_tilde)
    i_prime, f_prime = np.exp(i_tilde - m1), np.exp(log_f + m0 - m1)
    c1 = f_prime * c0 + i_prime * np.tanh(z_tilde)
    n1 = f_prime * n0 + i_prime
    h1 = _sigmoid(o_tilde) * c1 / n1
    for name, g, want in zip("cnmh", got, (c1, n1, m1, h1), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(("num_heads", "forget_gate"), [(HEADS, "sigmoid"), (1, "exp")])
def test_slstm_module_matches_paper_equations(num_heads, forget_gate):
    # Given random parameters (block-diagonal R with num_heads blocks), Then the module's h sequence equals the
    # unstabilised paper equations in float64.
    module = SLSTM(HIDDEN, num_heads=num_heads, forget_gate=forget_gate)
    x = _x()
    params = _random_params(module, x)
    got = jax.jit(module.apply)({"params": params}, x)
    p = _np(params)
    xw = np.einsum("btd,dg->tbg", np.asarray(x, np.float64), p["input_kernel"]) + p["bias"]
    want = ref_slstm_unstabilised(xw, p["recurrent_kernel"], forget_gate)
    np.testing.assert_allclose(got, np.swapaxes(want, 0, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_slstm_stabilised_equals_unstabilised_in_float64(forget_gate):
    # Given large gate pre-activations (exp(i~) up to e^40, still finite in float64), When the stabilised scan runs
    # in float64, Then it equals the plain exponential equations to ~1e-10; and in float32, where exp(i~) itself
    # would overflow past i~ = 88, the stabilised scan stays finite and close.
    num_steps, head_dim = 24, HIDDEN // HEADS
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    xw = np.asarray(jax.random.normal(keys[0], (num_steps, BATCH, 4 * HIDDEN)), np.float64)
    xw[..., :HIDDEN] *= 15.0  # i~ spans about +-40
    xw[..., HIDDEN : 2 * HIDDEN] *= 0.5 if forget_gate == "exp" else 3.0
    blocks = np.asarray(jax.random.normal(keys[1], (HEADS, head_dim, 4, head_dim)), np.float64) / head_dim
    want = ref_slstm_unstabilised(xw, blocks, forget_gate)
    with enable_x64():
        got = slstm_scan(jnp.asarray(xw), jnp.asarray(blocks), forget_gate=forget_gate)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    xw_big = xw.copy()
    xw_big[..., :HIDDEN] *= 3.0  # i~ up to about 120: exp overflows float32
    want_big = ref_slstm_unstabilised(xw_big, blocks, forget_gate)
    got32 = slstm_scan(
        jnp.asarray(xw_big, jnp.float32), jnp.asarray(blocks, jnp.float32), forget_gate=forget_gate
    )
    assert bool(jnp.all(jnp.isfinite(got32)))
    np.testing.assert_allclose(got32, want_big, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# mLSTM


def ref_mlstm_unstabilised(q, k, v, i_tilde, log_f):
    """Paper eqs. 19-21 in float64 per step: ``q, k, v: [B, T, H, d]``, gates ``[B, T, H]`` -> ``h~ [B, T, H, d]``."""
    batch, num_steps, heads, dim = q.shape
    c = np.zeros((batch, heads, dim, dim))
    n = np.zeros((batch, heads, dim))
    out = np.zeros_like(v)
    for t in range(num_steps):
        f = np.exp(log_f[:, t])[..., None]
        i = np.exp(i_tilde[:, t])[..., None]
        c = f[..., None] * c + i[..., None] * np.einsum("bhv,bhk->bhvk", v[:, t], k[:, t])
        n = f * n + i * k[:, t]
        denominator = np.maximum(np.abs(np.einsum("bhk,bhk->bh", n, q[:, t])), 1.0)
        out[:, t] = np.einsum("bhvk,bhk->bhv", c, q[:, t]) / denominator[..., None]
    return out


def test_mlstm_step_matches_stabilised_equations():
    # Given a state with non-trivial m, When one update and read-out run, Then they follow eqs. 19-21,
    # stabilised as in eqs. 15-17.
    keys = jax.random.split(jax.random.PRNGKey(5), 8)
    dim = HIDDEN // HEADS
    c = jax.random.normal(keys[0], (BATCH, HEADS, dim, dim))
    n = jax.random.normal(keys[1], (BATCH, HEADS, dim))
    m = jax.random.normal(keys[2], (BATCH, HEADS))
    q, k, v = (jax.random.normal(key, (BATCH, HEADS, dim)) for key in keys[3:6])
    i_tilde = 3.0 * jax.random.normal(keys[6], (BATCH, HEADS))
    log_f = jax.nn.log_sigmoid(jax.random.normal(keys[7], (BATCH, HEADS)) + 2.0)

    @jax.jit
    def update_and_read(carry, inputs, q):
        new = mlstm_step(carry, inputs)
        return new, mlstm_read_out(new, q)

    new, h = update_and_read((c, n, m), (k, v, i_tilde, log_f), q)

    c0, n0, m0, q0, k0, v0, i0, f0 = _np((c, n, m, q, k, v, i_tilde, log_f))
    m1 = np.maximum(f0 + m0, i0)
    i_prime, f_prime = np.exp(i0 - m1), np.exp(f0 + m0 - m1)
    c1 = f_prime[..., None, None] * c0 + i_prime[..., None, None] * v0[..., :, None] * k0[..., None, :]
    n1 = f_prime[..., None] * n0 + i_prime[..., None] * k0
    denominator = np.maximum(np.abs(np.sum(n1 * q0, -1)), np.exp(-m1))
    h1 = np.einsum("bhvk,bhk->bhv", c1, q0) / denominator[..., None]
    for name, g, want in zip(("C", "n", "m", "h"), (*new, h), (c1, n1, m1, h1), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("scan_mode", MLSTM_SCAN_MODES)
def test_mlstm_module_matches_paper_equations(scan_mode):
    # Given random parameters, Then every scan mode of the module equals eqs. 19-27 (projections, gates, output
    # gate) computed step by step in float64. chunk_size=4 with 6 steps exercises a padded last chunk.
    chunk = {"chunk_size": 4} if scan_mode == "chunked" else {}
    module = MLSTM(HIDDEN, num_heads=HEADS, scan_mode=scan_mode, **chunk)
    x = _x()
    params = _random_params(module, x)
    got = jax.jit(module.apply)({"params": params}, x)
    p, x64 = _np(params), np.asarray(x, np.float64)
    q, k, v = (
        np.einsum("btd,dhk->bthk", x64, p[f"{name}_kernel"]) + p[f"{name}_bias"]
        for name in ("query", "key", "value")
    )
    k = k / np.sqrt(HIDDEN // HEADS)
    gates = np.einsum("btd,dgh->btgh", x64, p["gate_kernel"]) + p["gate_bias"]
    log_f = np.log(_sigmoid(gates[:, :, 1]))
    o = _sigmoid(x64 @ p["output_gate_kernel"] + p["output_gate_bias"])
    want = o * ref_mlstm_unstabilised(q, k, v, gates[:, :, 0], log_f).reshape(BATCH, TIME, HIDDEN)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _long_inputs(num_steps: int, dtype):
    """Long-memory mLSTM inputs: forget gates sigmoid(3..8) (0.95 to 0.9997), input gates i~ ~ N(0, 3^2)."""
    heads, dim = 2, 4
    keys = jax.random.split(jax.random.PRNGKey(11), 6)
    q, k, v = (jax.random.normal(key, (1, num_steps, heads, dim), dtype) for key in keys[:3])
    i_tilde = 3.0 * jax.random.normal(keys[3], (1, num_steps, heads), dtype)
    f_tilde = jax.random.uniform(keys[4], (1, num_steps, heads), dtype, 3.0, 8.0)
    readout = jax.random.normal(keys[5], (1, num_steps, heads, dim), dtype)
    return (q, k / np.sqrt(dim), v, i_tilde, f_tilde), readout


def _forms(chunk_size: int):
    return {
        "recurrent": mlstm_recurrent,
        "parallel": mlstm_parallel,
        "chunkwise": lambda *a: mlstm_chunkwise(*a, chunk_size=chunk_size),
    }


def _value_and_grads(fn, inputs, readout):

    def loss(inputs):
        q, k, v, i_tilde, f_tilde = inputs
        h = fn(q, k, v, i_tilde, jax.nn.log_sigmoid(f_tilde))
        return jnp.sum(h * readout), h

    (_, h), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(inputs)
    return h, grads


def _assert_forms_agree(results, rtol, atol):
    h_ref, grads_ref = results["recurrent"]
    for form, (h, grads) in results.items():
        np.testing.assert_allclose(h, h_ref, rtol=rtol, atol=atol, err_msg=f"{form}: outputs")
        for name, g, g_ref in zip(("q", "k", "v", "i~", "f~"), grads, grads_ref, strict=True):
            np.testing.assert_allclose(
                g,
                g_ref,
                rtol=rtol,
                atol=atol * float(jnp.max(jnp.abs(g_ref))),
                err_msg=f"{form}: d loss / d {name}",
            )


def test_mlstm_forms_agree_long_sequence_float32():
    # Given T = 1024 with forget gates near 1 (memory of hundreds of steps), Then the recurrent, parallel and
    # chunkwise forms (chunk 100, so the last chunk is padded) give the same outputs and gradients.
    inputs, readout = _long_inputs(1024, jnp.float32)
    results = {form: _value_and_grads(fn, inputs, readout) for form, fn in _forms(100).items()}
    _assert_forms_agree(results, rtol=2e-3, atol=2e-4)


def test_mlstm_forms_agree_float64():
    # The same in float64 (chunk 64, dividing T), where the three summation orders must agree to ~1e-10.
    with enable_x64():
        inputs, readout = _long_inputs(1024, jnp.float64)
        results = {form: _value_and_grads(fn, inputs, readout) for form, fn in _forms(64).items()}
        assert results["parallel"][0].dtype == jnp.float64
        _assert_forms_agree(results, rtol=1e-9, atol=1e-11)


def test_mlstm_forms_agree_with_huge_input_gates():
    # Given |i~| up to about 200 (exp(i~) overflows float32 past 88), Then every form stays finite in float32 and
    # matches the others: the stabiliser does its job. Log-space terms of size ~200 carry an absolute float32
    # error of ~1e-5 each, hence the looser tolerance.
    (q, k, v, i_tilde, f_tilde), _ = _long_inputs(48, jnp.float32)
    args = (q, k, v, 60.0 * i_tilde, jax.nn.log_sigmoid(f_tilde))
    recurrent, parallel, chunkwise = jax.jit(lambda a: [fn(*a) for fn in _forms(16).values()])(args)
    assert bool(jnp.all(jnp.isfinite(recurrent)))
    np.testing.assert_allclose(parallel, recurrent, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(chunkwise, recurrent, rtol=1e-3, atol=1e-4)


def test_mlstm_probe_uses_the_recurrent_state():
    # Given the default (chunkwise) module, When the probe is requested, Then it is the recurrent state
    # (C~, n~, m) with a leading time axis, and the output is unchanged.
    module = MLSTM(HIDDEN, num_heads=HEADS)
    x = _x()

    @jax.jit
    def run(x):
        variables = module.init(jax.random.PRNGKey(0), x)
        return module.apply(variables, x), module.apply(variables, x, mutable=["probes"])

    y, (y_probed, extra) = run(x)
    c, n, m = extra["probes"]["state"]
    dim = HIDDEN // HEADS
    assert (c.shape, n.shape, m.shape) == (
        (TIME, BATCH, HEADS, dim, dim),
        (TIME, BATCH, HEADS, dim),
        (TIME, BATCH, HEADS),
    )
    np.testing.assert_allclose(y_probed, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (MLSTM(HIDDEN, scan_mode="bogus"), r"scan_mode='bogus'.*sequential, parallel, chunked"),
        (MLSTM(HIDDEN, scan_mode="parallel", truncation=2), r"truncation=2: only scan_mode 'sequential'"),
        (MLSTM(HIDDEN, scan_mode="sequential", chunk_size=8), r"chunk_size=8: only scan_mode 'chunked'"),
        (MLSTM(HIDDEN, remat=True), r"remat=True: only scan_mode 'sequential'"),
        (MLSTM(HIDDEN, num_heads=3), "num_heads"),
        (SLSTM(HIDDEN, forget_gate="bogus"), r"forget_gate='bogus'.*sigmoid, exp"),
        (SLSTM(HIDDEN, num_heads=3), "num_heads"),
    ],
)
def test_bad_options_raise(module, match):
    with pytest.raises(ValueError, match=match):
        module.init(jax.random.PRNGKey(0), _x())
