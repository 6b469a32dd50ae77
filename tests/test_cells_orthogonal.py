"""expRNN against a float64 loop of its equations (with SciPy's matrix exponential), its recurrent matrix
orthogonal at initialisation and after 100 optimizer steps, and the two initialisations of the paper."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from lrd.cells.orthogonal import (
    URNN,
    ExpRNN,
    complex_modrelu,
    modrelu,
    orthogonal_from_skew,
    skew_symmetric_init,
    urnn_transition,
)

BATCH, D_IN, HIDDEN = 3, 2, 6


def _params(module, x, seed=1):
    params = module.init(jax.random.PRNGKey(seed), x)["params"]
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    return {
        "input_kernel": jax.random.normal(keys[0], params["input_kernel"].shape),
        "skew": jax.random.normal(keys[1], params["skew"].shape),
        "modrelu_bias": 0.3 * jax.random.normal(keys[2], params["modrelu_bias"].shape),
    }


def ref_exprnn(p, u):
    upper = np.triu(p["skew"], 1)
    recurrent = scipy.linalg.expm(upper - upper.T)
    h = np.zeros((u.shape[0], HIDDEN))
    out = []
    for t in range(u.shape[1]):
        z = u[:, t] @ p["input_kernel"] + h @ recurrent
        h = np.sign(z) * np.maximum(np.abs(z) + p["modrelu_bias"], 0.0)
        out.append(h)
    return np.stack(out, 1)


def test_matches_float64_reference_over_300_steps():
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, 300, D_IN))
    module = ExpRNN(HIDDEN)
    params = _params(module, x)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    expected = ref_exprnn(p, np.asarray(x, np.float64))
    assert np.max(np.abs(expected)) > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.max(np.abs(expected)))


def test_modrelu_is_the_papers():
    z = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(modrelu(z, jnp.full(5, -1.0)), [-1.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(modrelu(z, jnp.full(5, 0.5)), [-2.5, -1.0, 0.0, 1.0, 2.5])


@pytest.mark.parametrize("kind", ["henaff", "cayley"])
def test_initialisations_are_block_rotations_of_the_papers_angles(kind):
    a = np.asarray(skew_symmetric_init(kind)(jax.random.PRNGKey(0), (64, 64)))
    angles = a[np.arange(0, 64, 2), np.arange(1, 64, 2)]
    a_without = a.copy()
    a_without[np.arange(0, 64, 2), np.arange(1, 64, 2)] = 0.0
    assert np.all(a_without == 0.0)  # only the 2x2 blocks' superdiagonal entries are set
    if kind == "henaff":
        assert np.all(np.abs(angles) <= np.pi) and angles.min() < -1.0 and angles.max() > 1.0
    else:  # s = -sqrt((1 - cos u) / (1 + cos u)) = -tan(u/2), u in [0, pi/2]: s in [-1, 0]
        assert np.all((angles <= 0.0) & (angles >= -1.0))
    b = np.asarray(orthogonal_from_skew(jnp.asarray(a)), np.float64)
    np.testing.assert_allclose(b @ b.T, np.eye(64), atol=1e-5)


def test_recurrent_matrix_stays_orthogonal_after_100_adam_steps():
    # Given a model trained for 100 Adam steps on a regression target (large steps, so A moves far),
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 30, D_IN))
    target = jax.random.normal(jax.random.PRNGKey(1), (8, 30, HIDDEN))
    module = ExpRNN(HIDDEN)
    params = module.init(jax.random.PRNGKey(2), x)["params"]
    optimizer = optax.adam(3e-2)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((module.apply({"params": p}, x) - target) ** 2))(
            params
        )
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    first = None
    for _ in range(100):
        params, state, loss = step(params, state)
        first = loss if first is None else first
    # Then the loss went down, the skew parameters moved, and B = expm(A - A^T) is orthogonal to 1e-5.
    assert float(loss) < float(first)
    b = np.asarray(orthogonal_from_skew(params["skew"]), np.float64)
    np.testing.assert_allclose(b @ b.T, np.eye(HIDDEN), atol=1e-5)
    np.testing.assert_allclose(np.abs(module.spectrum(params)), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# uRNN (Arjovsky et al. 2016)


def _urnn_matrix(thetas, reflections, permutation):
    """W = D3 R2 F^-1 D2 P R1 F D1 (the paper's eq. 6) as an explicit complex128 matrix."""
    n = thetas.shape[1]
    d = [np.diag(np.exp(1j * theta)) for theta in thetas]
    r = [np.eye(n) - 2.0 * np.outer(v, v.conj()) / np.vdot(v, v).real for v in reflections]
    f = np.fft.fft(np.eye(n), norm="ortho")
    p = np.eye(n)[permutation]
    return d[2] @ r[1] @ np.linalg.inv(f) @ d[1] @ p @ r[0] @ f @ d[0]


def _urnn_parts(params, seed=0):
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    reflections = p["reflections"][..., 0] + 1j * p["reflections"][..., 1]
    permutation = np.random.default_rng(seed).permutation(p["thetas"].shape[1])
    return p, reflections, permutation


def test_urnn_transition_is_the_papers_product_and_unitary():
    module = URNN(16)
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, 3, 2)))["params"]
    p, reflections, permutation = _urnn_parts(params)
    w = _urnn_matrix(p["thetas"], reflections, permutation)
    np.testing.assert_allclose(w @ w.conj().T, np.eye(8), atol=1e-12)
    rows = urnn_transition(
        jnp.eye(8, dtype=jnp.complex64),
        params["thetas"],
        jnp.asarray(reflections, jnp.complex64),
        permutation,
    )
    np.testing.assert_allclose(np.asarray(rows), w.T, atol=2e-6)  # row e_j maps to (W e_j)^T


def test_urnn_matches_float64_reference_over_200_steps():
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, 200, D_IN))
    module = URNN(12)
    params = module.init(jax.random.PRNGKey(1), x)["params"]
    params = {**params, "modrelu_bias": -0.1 * jnp.ones_like(params["modrelu_bias"])}  # some units cut off
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    p, reflections, permutation = _urnn_parts(params)
    w = _urnn_matrix(p["thetas"], reflections, permutation)
    v = p["V"][..., 0] + 1j * p["V"][..., 1]
    h = np.zeros((BATCH, 6), complex)
    out = []
    for t in range(200):
        z = h @ w.T + np.asarray(x, np.float64)[:, t] @ v
        h = np.maximum(np.abs(z) + p["modrelu_bias"], 0.0) * z / np.abs(z)
        out.append(np.concatenate([h.real, h.imag], -1))
    expected = np.stack(out, 1)
    assert np.max(np.abs(expected)) > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.max(np.abs(expected)))


def test_complex_modrelu_is_the_papers():
    z = jnp.array([3 + 4j, 0.3 + 0.4j, 0j])
    np.testing.assert_allclose(complex_modrelu(z, jnp.full(3, -1.0)), [(3 + 4j) * 4 / 5, 0, 0], atol=1e-6)


def test_urnn_refuses_an_odd_width():
    from lrd.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="must be even"):
        ModelConfig(name="urnn", hidden_size=7).mixer_options()
