"""Oscillator cells (coRNN, UnICORNN) against NumPy float64 loops of their papers' equations, over long sequences
where the dynamics matter, and their gradients against finite differences of the reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.oscillators import CoRNN, UnICORNN

BATCH, D_IN, HIDDEN = 3, 2, 5


def _params(module, x, seed=1, scale=0.5):
    """Initialise, then draw every parameter at random so zero biases or a symmetric init hide nothing."""
    params = module.init(jax.random.PRNGKey(seed), x)["params"]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def ref_cornn(p, u, dt, gamma, epsilon):
    """Rusch & Mishra 2021, eq. 3 (the authors' code): explicit in z, then y from the new z."""
    y = np.zeros((u.shape[0], HIDDEN))
    z = np.zeros_like(y)
    out = []
    for t in range(u.shape[1]):
        drive = np.tanh(y @ p["y_kernel"] + z @ p["z_kernel"] + u[:, t] @ p["input_kernel"] + p["bias"])
        z = z + dt * (drive - gamma * y - epsilon * z)
        y = y + dt * z
        out.append(y)
    return np.stack(out, 1)


def ref_unicornn(p, u, dt, alpha):
    """Rusch & Mishra 2021 (UnICORNN), symplectic Euler with per-unit step dt * sigmoid(c)."""
    step = dt / (1.0 + np.exp(-p["c"]))
    y = np.zeros((u.shape[0], HIDDEN))
    z = np.zeros_like(y)
    out = []
    for t in range(u.shape[1]):
        xw = u[:, t] @ p["input_kernel"] + p["bias"]
        z = z - step * (np.tanh(p["w"] * y + xw) + alpha * y)
        y = y + step * z
        out.append(y)
    return np.stack(out, 1)


CASES = [
    (CoRNN(HIDDEN), lambda p, u: ref_cornn(p, u, 0.06, 66.0, 15.0)),
    (CoRNN(HIDDEN, dt=0.2, gamma=1.5, epsilon=0.5), lambda p, u: ref_cornn(p, u, 0.2, 1.5, 0.5)),
    (UnICORNN(HIDDEN), lambda p, u: ref_unicornn(p, u, 0.1, 1.0)),
    (UnICORNN(HIDDEN, dt=0.5, alpha=3.0), lambda p, u: ref_unicornn(p, u, 0.5, 3.0)),
]


@pytest.mark.parametrize("module,reference", CASES, ids=["cornn", "cornn-soft", "unicornn", "unicornn-fast"])
def test_matches_float64_reference_over_500_steps(module, reference):
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, 500, D_IN))
    params = _params(module, x)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    expected = reference(p, np.asarray(x, np.float64))
    assert np.max(np.abs(expected)) > 1e-2  # the states move: the comparison is not of zeros
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5 * np.max(np.abs(expected)))


@pytest.mark.parametrize("module,reference", CASES[1::2], ids=["cornn-soft", "unicornn-fast"])
def test_gradient_matches_finite_differences_of_the_reference(module, reference):
    # d(sum of the last output)/d(every parameter), float32 autodiff against central differences in float64.
    x = jax.random.normal(jax.random.PRNGKey(2), (BATCH, 40, D_IN))
    params = _params(module, x, scale=0.3)
    grads = jax.grad(lambda q: jnp.sum(module.apply({"params": q}, x)[:, -1]))(params)
    p64 = jax.tree_util.tree_map(lambda a: np.array(a, np.float64), params)
    u = np.asarray(x, np.float64)
    eps = 1e-6
    for name, value in p64.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in p64.items()}
            minus = {k: v.copy() for k, v in p64.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (reference(plus, u)[:, -1].sum() - reference(minus, u)[:, -1].sum()) / (2 * eps)
        np.testing.assert_allclose(np.asarray(grads[name]), numeric, rtol=2e-3, atol=2e-4, err_msg=name)


def test_bad_hyperparameters_name_the_field():
    from lrd.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="model.options.cornn.dt"):
        ModelConfig(name="cornn", options={"cornn": {"dt": 0.0}}).mixer_options()
    with pytest.raises(ConfigError, match="model.options.unicornn.alpha"):
        ModelConfig(name="unicornn", options={"unicornn": {"alpha": -1.0}}).mixer_options()
