"""expRNN against a float64 loop of its equations (with SciPy's matrix exponential), its recurrent matrix
orthogonal at initialisation and after 100 optimizer steps, and the two initialisations of the paper; the uRNN's
unitary product and recurrence; scoRNN against a float64 loop of its equations, its scaling matrix ``D``, its Cayley
initialisation, orthogonality under training, and its gradient against the paper's formula and finite
differences."""

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
    ScoRNN,
    complex_modrelu,
    modrelu,
    orthogonal_from_skew,
    scaled_cayley,
    scaling_diagonal,
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


def _adam_steps(module, params, x, target, steps: int = 100, rate: float = 3e-2):
    """``steps`` Adam steps on the mean squared error of ``module`` against ``target``: (params, first loss, last)."""
    optimizer = optax.adam(rate)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((module.apply({"params": p}, x) - target) ** 2))(
            params
        )
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    first = loss = None
    for _ in range(steps):
        params, state, loss = step(params, state)
        first = loss if first is None else first
    return params, first, loss


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
    params, first, loss = _adam_steps(module, module.init(jax.random.PRNGKey(2), x)["params"], x, target)
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


# ----------------------------------------------------------------------------------------------------------------
# scoRNN (Helfrich, Willmott & Ye 2018)


def _scornn_d(size, num_negative):
    """The paper's D: ones, then num_negative minus ones (the authors' placement), float64."""
    return np.diag(np.concatenate([np.ones(size - num_negative), -np.ones(num_negative)]))


def _scornn_w(skew, num_negative):
    """W = (I + A)^{-1} (I - A) D in float64, A from the strictly upper triangle, by an explicit inverse."""
    upper = np.triu(np.asarray(skew, np.float64), 1)
    a, eye = upper - upper.T, np.eye(skew.shape[0])
    return np.linalg.inv(eye + a) @ (eye - a) @ _scornn_d(skew.shape[0], num_negative)


def ref_scornn(p, u, num_negative):
    """h_t = modrelu(U x_t + W h_{t-1}; b) (column vectors, as in the paper), h_0 = 0, float64."""
    w = _scornn_w(p["skew"], num_negative)
    h = np.zeros((u.shape[0], w.shape[0]))
    out = []
    for t in range(u.shape[1]):
        z = u[:, t] @ p["input_kernel"] + h @ w.T  # row form of U x_t + W h_{t-1}
        h = np.sign(z) * np.maximum(np.abs(z) + p["modrelu_bias"], 0.0)
        out.append(h)
    return np.stack(out, 1)


def _float64(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


@pytest.mark.parametrize("num_negative", [None, 1])
def test_scornn_matches_float64_reference_over_300_steps(num_negative):
    # Given random parameters (A far from its initialisation) and the default or an odd number of -1 entries,
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, 300, D_IN))
    module = ScoRNN(HIDDEN, num_negative=num_negative)
    params = _params(module, x)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    # Then the module equals the paper's equations in float64 (default: num_negative = hidden_size // 2).
    expected = ref_scornn(_float64(params), np.asarray(x, np.float64), num_negative or HIDDEN // 2)
    assert np.max(np.abs(expected)) > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.max(np.abs(expected)))


@pytest.mark.parametrize("num_negative", [0, 1, 3, 5, 6, None])
def test_scornn_scaling_has_exactly_num_negative_minus_ones(num_negative):
    rho = HIDDEN // 2 if num_negative is None else num_negative
    module = ScoRNN(HIDDEN, num_negative=num_negative)
    d = module.scaling()
    assert d.shape == (HIDDEN,) and set(np.unique(d)) <= {-1.0, 1.0}
    assert int(np.sum(d == -1.0)) == rho
    np.testing.assert_array_equal(d, scaling_diagonal(HIDDEN, rho))
    # With A = 0 the recurrent matrix is D itself; for any A its determinant is det D = (-1)^rho (det of a Cayley
    # transform is 1), which is why gradient steps on A never change the number of -1 entries.
    np.testing.assert_array_equal(
        np.asarray(module.recurrent_matrix({"skew": jnp.zeros((HIDDEN, HIDDEN))})), np.diag(d)
    )
    skew = jax.random.normal(jax.random.PRNGKey(3), (HIDDEN, HIDDEN))
    w = np.asarray(module.recurrent_matrix({"skew": skew}), np.float64)
    np.testing.assert_allclose(w, _scornn_w(np.asarray(skew), rho), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(w), (-1.0) ** rho, atol=1e-5)


def test_scornn_cayley_initialisation_is_the_papers():
    # Given the module initialised at width 64 with the default D (32 minus ones),
    module = ScoRNN(64)
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, 3, 2)))["params"]
    a = np.asarray(params["skew"])
    # Then A's strictly upper triangle holds only the 2x2 blocks' entries s = -tan(u/2), u ~ U[0, pi/2],
    rows = np.arange(0, 64, 2)
    s = a[rows, rows + 1]
    a_without = a.copy()
    a_without[rows, rows + 1] = 0.0
    assert np.all(a_without == 0.0) and np.all((s <= 0.0) & (s >= -1.0))
    np.testing.assert_array_equal(params["modrelu_bias"], np.zeros(64))
    # so the Cayley transform (W D, before the scaling) has its eigenvalues e^{+-iu} on the right half circle,
    w = np.asarray(module.recurrent_matrix(params), np.float64)
    cayley = w @ np.diag(module.scaling())
    eigenvalues = np.linalg.eigvals(cayley)
    assert np.all(eigenvalues.real >= -1e-6)
    np.testing.assert_allclose(
        np.sort(np.abs(np.angle(eigenvalues)))[::2], np.sort(2 * np.arctan(-s)), atol=1e-5
    )
    # and W is orthogonal to 1e-5, every eigenvalue of modulus 1.
    np.testing.assert_allclose(w @ w.T, np.eye(64), atol=1e-5)
    np.testing.assert_allclose(np.abs(module.spectrum(params)), 1.0, atol=1e-5)


def test_scornn_recurrent_matrix_stays_orthogonal_after_100_adam_steps():
    # Given a model trained for 100 Adam steps on a regression target (large steps, so A moves far),
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 30, D_IN))
    target = jax.random.normal(jax.random.PRNGKey(1), (8, 30, HIDDEN))
    module = ScoRNN(HIDDEN)
    params = module.init(jax.random.PRNGKey(2), x)["params"]
    initial_skew = params["skew"]
    params, first, loss = _adam_steps(module, params, x, target)
    # Then the loss went down, A moved, W = (I + A)^{-1} (I - A) D is orthogonal to 1e-5 and det W = det D still.
    assert float(loss) < float(first)
    assert float(jnp.max(jnp.abs(jnp.triu(params["skew"] - initial_skew, 1)))) > 0.3
    w = np.asarray(module.recurrent_matrix(params), np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(HIDDEN), atol=1e-5)
    np.testing.assert_allclose(np.abs(module.spectrum(params)), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(w), (-1.0) ** (HIDDEN // 2), atol=1e-5)


def _scornn_gradient_case(num_steps=20):
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, num_steps, D_IN))
    readout = jax.random.normal(jax.random.PRNGKey(5), (BATCH, num_steps, HIDDEN))
    module = ScoRNN(HIDDEN)
    params = _params(module, x)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) * readout)))(params)
    return module, params, grads, x, readout


def test_scornn_gradient_is_the_papers_update_direction():
    # Given dL/dW of the recurrence written out step by step with W a free matrix (column convention),
    module, params, grads, x, readout = _scornn_gradient_case()
    d = np.diag(module.scaling()).astype(np.float64)

    def loss_of(w, input_kernel, bias):
        h, total = jnp.zeros((BATCH, HIDDEN)), 0.0
        for t in range(x.shape[1]):
            h = modrelu(x[:, t] @ input_kernel + h @ w.T, bias)
            total = total + jnp.sum(h * readout[:, t])
        return total

    w = module.recurrent_matrix(params)
    g_w, g_u, g_b = jax.jit(jax.grad(loss_of, argnums=(0, 1, 2)))(
        w, params["input_kernel"], params["modrelu_bias"]
    )
    # When the paper's formula turns it into dL/dA = V^T - V, V = (I + A)^{-T} dL/dW (D + W^T) (float64),
    upper = np.triu(np.asarray(params["skew"], np.float64), 1)
    a = upper - upper.T
    w64, g_w = np.asarray(w, np.float64), np.asarray(g_w, np.float64)
    v = np.linalg.solve((np.eye(HIDDEN) + a).T, g_w @ (d + w64.T))
    paper = v.T - v
    # Then autodiff through the Cayley solve gives exactly its strictly upper triangle (nothing elsewhere), so a
    # gradient step on the parameter moves A = A_up - A_up^T by -lr (V^T - V), the paper's update,
    got = np.asarray(grads["skew"], np.float64)
    scale = np.max(np.abs(paper))
    assert scale > 1e-2
    np.testing.assert_allclose(got, np.triu(paper, 1), atol=1e-4 * scale)
    np.testing.assert_allclose(np.triu(got, 1) - np.triu(got, 1).T, paper, atol=1e-4 * scale)
    # and the input kernel and bias gradients equal those of the explicit loop.
    for mine, explicit in ((grads["input_kernel"], g_u), (grads["modrelu_bias"], g_b)):
        np.testing.assert_allclose(mine, explicit, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(explicit))))


def test_scornn_gradient_matches_float64_finite_differences():
    # Given the module's float32 gradient and the float64 reference loss L(p) = sum(h(p) * readout),
    module, params, grads, x, readout = _scornn_gradient_case()
    p64, x64, readout64 = _float64(params), np.asarray(x, np.float64), np.asarray(readout, np.float64)

    def loss(p):
        return float(np.sum(ref_scornn(p, x64, HIDDEN // 2) * readout64))

    # Then along a random direction of each parameter, the central difference (step 1e-6) equals <grad, direction>.
    rng = np.random.default_rng(0)
    for name in ("skew", "input_kernel", "modrelu_bias"):
        direction = rng.standard_normal(p64[name].shape)
        if name == "skew":
            direction = np.triu(direction, 1)  # the coordinates the module uses
        eps = 1e-6
        plus = loss({**p64, name: p64[name] + eps * direction})
        minus = loss({**p64, name: p64[name] - eps * direction})
        numeric = (plus - minus) / (2 * eps)
        analytic = float(np.sum(np.asarray(grads[name], np.float64) * direction))
        assert abs(numeric) > 1e-2, name
        np.testing.assert_allclose(analytic, numeric, rtol=1e-3, err_msg=name)


def test_scaled_cayley_is_orthogonal_for_large_skew_entries():
    # (I + A)^{-1} has norm <= 1 for skew A, so the solve stays accurate however large A grows.
    skew = 30.0 * jax.random.normal(jax.random.PRNGKey(0), (32, 32))
    w = np.asarray(scaled_cayley(skew, scaling_diagonal(32, 16)), np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(32), atol=1e-5)


@pytest.mark.parametrize("num_negative", [-1, HIDDEN + 1, 1.5])
def test_scornn_bad_num_negative_names_the_field(num_negative):
    from lrd.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="num_negative"):
        ModelConfig(name="scornn", hidden_size=HIDDEN, options={"scornn": {"num_negative": num_negative}})
