"""Classic cells against hand-written reference equations (NumPy) and, when installed, PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.base import recurrent_initializer
from lrd.cells.classic import GRU, LSTM, ElmanRNN, IndRNN, indrnn_step
from lrd.registry import build_mixer

BATCH, TIME, D_IN, HIDDEN = 2, 6, 3, 4


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _inputs(seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (BATCH, TIME, D_IN))


def _random_params(module, x, seed=1):
    """Initialise, then replace every parameter by random values so zero biases don't hide mistakes."""
    params = module.init(jax.random.PRNGKey(seed), x)["params"]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def ref_elman(p, x, act):
    h = np.zeros((x.shape[0], HIDDEN))
    out = []
    for t in range(x.shape[1]):
        h = act(x[:, t] @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"])
        out.append(h)
    return np.stack(out, 1)


def ref_lstm(p, x):
    h = np.zeros((x.shape[0], HIDDEN))
    c = np.zeros_like(h)
    out = []
    w, u, b = p["input_kernel"], p["recurrent_kernel"], p["bias"]
    H = HIDDEN
    for t in range(x.shape[1]):
        z = x[:, t] @ w + h @ u + b
        i = _sigmoid(z[:, :H])
        f = _sigmoid(z[:, H : 2 * H])
        g = np.tanh(z[:, 2 * H : 3 * H])
        o = _sigmoid(z[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


def ref_gru(p, x):
    h = np.zeros((x.shape[0], HIDDEN))
    out = []
    w, bi, u, bh = p["input_kernel"], p["input_bias"], p["recurrent_kernel"], p["recurrent_bias"]
    H = HIDDEN
    for t in range(x.shape[1]):
        xi = x[:, t] @ w + bi
        hh = h @ u + bh
        r = _sigmoid(xi[:, :H] + hh[:, :H])
        z = _sigmoid(xi[:, H : 2 * H] + hh[:, H : 2 * H])
        n = np.tanh(xi[:, 2 * H :] + r * hh[:, 2 * H :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, 1)


ACTS = {"tanh": np.tanh, "sigmoid": _sigmoid, "relu": lambda z: np.maximum(z, 0.0)}


@pytest.mark.parametrize("activation", list(ACTS))
def test_elman_matches_reference(activation):
    x = _inputs()
    module = ElmanRNN(HIDDEN, activation=activation)
    params = _random_params(module, x)
    got = module.apply({"params": params}, x)
    p = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(got, ref_elman(p, np.asarray(x), ACTS[activation]), rtol=1e-5, atol=1e-5)


def test_lstm_matches_reference():
    x = _inputs()
    module = LSTM(HIDDEN)
    params = _random_params(module, x)
    got = module.apply({"params": params}, x)
    p = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(got, ref_lstm(p, np.asarray(x)), rtol=1e-5, atol=1e-5)


def test_gru_matches_reference():
    x = _inputs()
    module = GRU(HIDDEN)
    params = _random_params(module, x)
    got = module.apply({"params": params}, x)
    p = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(got, ref_gru(p, np.asarray(x)), rtol=1e-5, atol=1e-5)


def test_lstm_forget_bias_initialisation():
    x = _inputs()
    params = LSTM(HIDDEN, forget_bias=2.5).init(jax.random.PRNGKey(0), x)["params"]
    bias = np.asarray(params["bias"])
    np.testing.assert_array_equal(bias[HIDDEN : 2 * HIDDEN], 2.5)
    np.testing.assert_array_equal(np.delete(bias, np.s_[HIDDEN : 2 * HIDDEN]), 0.0)


@pytest.mark.parametrize("kind", ["orthogonal", "identity"])
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.3])
def test_recurrent_init_spectral_radius_exact(kind, radius):
    u = recurrent_initializer(kind, radius)(jax.random.PRNGKey(3), (32, 32))
    moduli = np.abs(np.linalg.eigvals(np.asarray(u, np.float64)))
    # Orthogonal and identity matrices scaled by rho have *every* eigenvalue on the circle of radius rho.
    np.testing.assert_allclose(moduli, radius, rtol=1e-4)


def test_recurrent_init_normal_spectral_radius_approximate():
    # Circular law: i.i.d. N(0, rho^2/H) entries put the spectrum in the disc of radius rho as H grows.
    u = recurrent_initializer("normal", 0.9)(jax.random.PRNGKey(4), (512, 512))
    radius = np.max(np.abs(np.linalg.eigvals(np.asarray(u, np.float64))))
    assert abs(radius - 0.9) < 0.06


def test_bad_recurrent_init_and_activation_are_rejected():
    x = _inputs()
    with pytest.raises(ValueError, match="recurrent_init.*allowed values"):
        ElmanRNN(HIDDEN, recurrent_init="xavier").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="activation.*allowed values"):
        ElmanRNN(HIDDEN, activation="gelu").init(jax.random.PRNGKey(0), x)


def test_registry_presets():
    irnn = build_mixer("irnn", 8)
    assert irnn.activation == "relu" and irnn.recurrent_init == "identity"
    assert build_mixer("rnn_sigmoid", 8).activation == "sigmoid"
    with pytest.raises(ValueError, match="unknown model name 'nope'; allowed values: .*lstm"):
        build_mixer("nope", 8)
    with pytest.raises(ValueError, match="no option"):
        build_mixer("lstm", 8, not_a_field=1)


@pytest.mark.parametrize("cls", [ElmanRNN, LSTM, GRU, IndRNN])
def test_probe_collection_shapes_and_truncation(cls):
    x = _inputs()
    module = cls(HIDDEN)
    params = module.init(jax.random.PRNGKey(0), x)["params"]
    assert "probes" not in module.init(jax.random.PRNGKey(0), x)
    _, state = module.apply({"params": params}, x, mutable=["probes"])
    leaves = jax.tree_util.tree_leaves(state["probes"])
    assert leaves and all(leaf.shape == (TIME, BATCH, HIDDEN) for leaf in leaves)
    # Truncation 1 makes the last output independent of every earlier input.
    truncated = cls(HIDDEN, truncation=1)
    grad = jax.grad(lambda x: jnp.sum(truncated.apply({"params": params}, x)[:, -1]))(x)
    np.testing.assert_array_equal(grad[:, :-1], 0.0)
    assert np.any(np.asarray(grad[:, -1]) != 0)


def test_lstm_probe_gradients_are_total_derivatives_of_c_and_h():
    # Given an LSTM and a loss on its outputs, When the probe gradients are taken, Then they equal autodiff through
    # an explicit loop in which perturbations d_c, d_h are added to c_t (before h_t is computed from it) and to h_t:
    # the total derivatives dL/dc_t and dL/dh_t, including the same-step path c_t -> h_t -> readout.
    x = _inputs(seed=5)
    module = LSTM(HIDDEN)
    params = _random_params(module, x)
    readout = jax.random.normal(jax.random.PRNGKey(9), (BATCH, TIME, HIDDEN))
    _, state = module.apply({"params": params}, x, mutable=["probes"])
    probes = state["probes"]

    def probe_loss(probes):
        return jnp.sum(module.apply({"params": params, "probes": probes}, x) * readout)

    grad_c, grad_h = jax.grad(probe_loss)(probes)["state"]

    def explicit_loss(d_c, d_h):
        xw = jnp.einsum("btd,dg->tbg", x, params["input_kernel"]) + params["bias"]
        c = h = jnp.zeros((BATCH, HIDDEN))
        total = 0.0
        for t in range(TIME):
            i, f, g, o = jnp.split(xw[t] + h @ params["recurrent_kernel"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g) + d_c[t]
            h = jax.nn.sigmoid(o) * jnp.tanh(c) + d_h[t]
            total = total + jnp.sum(h * readout[:, t])
        return total

    zeros = jnp.zeros((TIME, BATCH, HIDDEN))
    want_c, want_h = jax.grad(explicit_loss, argnums=(0, 1))(zeros, zeros)
    np.testing.assert_allclose(grad_c, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_h, want_h, rtol=1e-5, atol=1e-6)
    # At the last step only the same-step path exists: dL/dc_T = r_T * o_T * (1 - tanh(c_T)^2), non-zero.
    (c_last, _), o_last = _lstm_last_step(params, x)
    expected = readout[:, -1] * o_last * (1.0 - jnp.tanh(c_last) ** 2)
    np.testing.assert_allclose(grad_c[-1], expected, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(grad_c[-1]).min()) > 0


def _lstm_last_step(params, x):
    """``((c_T, h_T), o_T)`` of the LSTM by a plain loop."""
    xw = jnp.einsum("btd,dg->tbg", x, params["input_kernel"]) + params["bias"]
    c = h = jnp.zeros((BATCH, HIDDEN))
    for t in range(TIME):
        i, f, g, o = jnp.split(xw[t] + h @ params["recurrent_kernel"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), jax.nn.sigmoid(o)


def test_cells_record_their_internals_only_when_asked():
    # Given the "intermediates" collection, Then the LSTM records its forget gate [batch, time, hidden] and the
    # Elman RNN f'(a) = 1 - h^2; a plain apply (or init) records nothing and returns the same outputs.
    x = _inputs(seed=2)
    for module, name in ((LSTM(HIDDEN), "forget_gate"), (ElmanRNN(HIDDEN), "activation_derivative")):
        variables = module.init(jax.random.PRNGKey(0), x)
        assert "intermediates" not in variables
        y, state = module.apply(variables, x, mutable=["intermediates"])
        np.testing.assert_allclose(y, module.apply(variables, x), rtol=1e-6, atol=1e-7)
        (recorded,) = state["intermediates"][name]
        assert recorded.shape == (BATCH, TIME, HIDDEN)
        if name == "activation_derivative":
            np.testing.assert_allclose(recorded, 1.0 - y**2, rtol=1e-6)
        else:
            assert bool(jnp.all((recorded > 0) & (recorded < 1)))


# ---------------------------------------------------------------------------------------------------------------
# PyTorch parity. Gate order: torch.nn.LSTM packs [i, f, g, o], torch.nn.GRU packs [r, z, n], as lrd does, so
# input_kernel = weight_ih_l0.T, recurrent_kernel = weight_hh_l0.T; the LSTM's single bias is bias_ih + bias_hh,
# the GRU keeps both (its reset gate multiplies U_n h + b_hn).


def _torch():
    return pytest.importorskip("torch")


def test_lstm_matches_pytorch():
    torch = _torch()
    torch.manual_seed(0)
    ref = torch.nn.LSTM(D_IN, HIDDEN, batch_first=True)
    x = np.random.default_rng(0).normal(size=(BATCH, TIME, D_IN)).astype(np.float32)
    with torch.no_grad():
        expected, _ = ref(torch.from_numpy(x))
    params = {
        "input_kernel": ref.weight_ih_l0.detach().numpy().T,
        "recurrent_kernel": ref.weight_hh_l0.detach().numpy().T,
        "bias": (ref.bias_ih_l0 + ref.bias_hh_l0).detach().numpy(),
    }
    got = LSTM(HIDDEN).apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_gru_matches_pytorch():
    torch = _torch()
    torch.manual_seed(1)
    ref = torch.nn.GRU(D_IN, HIDDEN, batch_first=True)
    x = np.random.default_rng(1).normal(size=(BATCH, TIME, D_IN)).astype(np.float32)
    with torch.no_grad():
        expected, _ = ref(torch.from_numpy(x))
    params = {
        "input_kernel": ref.weight_ih_l0.detach().numpy().T,
        "input_bias": ref.bias_ih_l0.detach().numpy(),
        "recurrent_kernel": ref.weight_hh_l0.detach().numpy().T,
        "recurrent_bias": ref.bias_hh_l0.detach().numpy(),
    }
    got = GRU(HIDDEN).apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_elman_matches_pytorch():
    torch = _torch()
    torch.manual_seed(2)
    ref = torch.nn.RNN(D_IN, HIDDEN, nonlinearity="tanh", batch_first=True)
    x = np.random.default_rng(2).normal(size=(BATCH, TIME, D_IN)).astype(np.float32)
    with torch.no_grad():
        expected, _ = ref(torch.from_numpy(x))
    params = {
        "input_kernel": ref.weight_ih_l0.detach().numpy().T,
        "recurrent_kernel": ref.weight_hh_l0.detach().numpy().T,
        "bias": (ref.bias_ih_l0 + ref.bias_hh_l0).detach().numpy(),
    }
    got = ElmanRNN(HIDDEN).apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# IndRNN (Li et al. 2018): h_t = act(W x_t + u * h_{t-1} + b), u a vector.


def ref_indrnn(p, x, act, recurrent_max=None):
    u = p["recurrent_weight"]
    if recurrent_max is not None:
        u = np.clip(u, -recurrent_max, recurrent_max)
    h = np.zeros((x.shape[0], HIDDEN))
    out = []
    for t in range(x.shape[1]):
        h = act(x[:, t] @ p["input_kernel"] + p["bias"] + u * h)
        out.append(h)
    return np.stack(out, 1)


def test_indrnn_step_matches_equation():
    rng = np.random.default_rng(0)
    h, xw = rng.normal(size=(BATCH, HIDDEN)), rng.normal(size=(BATCH, HIDDEN))
    u = np.array([0.5, -1.5, 2.0, 1.0])
    got = indrnn_step(jnp.asarray(h), jnp.asarray(xw), jnp.asarray(u), jax.nn.relu)
    np.testing.assert_allclose(got, np.maximum(xw + u * h, 0.0), rtol=1e-6)
    # With recurrent_max=1.2, u is used as [0.5, -1.2, 1.2, 1.0].
    got = indrnn_step(jnp.asarray(h), jnp.asarray(xw), jnp.asarray(u), jnp.tanh, recurrent_max=1.2)
    np.testing.assert_allclose(got, np.tanh(xw + np.array([0.5, -1.2, 1.2, 1.0]) * h), rtol=1e-6)


def test_indrnn_units_are_independent():
    # The step Jacobian dh_t/dh_{t-1} is diagonal, diag(u * act'), so no unit sees another unit's past.
    h = jnp.linspace(-1.0, 1.0, HIDDEN)
    xw = jnp.array([0.3, -0.2, 0.1, 0.4])
    u = jnp.array([0.9, 1.1, -0.5, 0.7])
    jacobian = jax.jacobian(lambda h: indrnn_step(h, xw, u, jnp.tanh))(h)
    expected = np.diag(np.asarray(u * (1.0 - jnp.tanh(xw + u * h) ** 2)))
    np.testing.assert_allclose(jacobian, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", list(ACTS))
def test_indrnn_matches_reference(activation):
    x = _inputs()
    module = IndRNN(HIDDEN, activation=activation)
    params = _random_params(module, x)
    got = module.apply({"params": params}, x)
    p = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(got, ref_indrnn(p, np.asarray(x), ACTS[activation]), rtol=1e-5, atol=1e-5)


def test_indrnn_recurrent_max_clips_u_in_the_forward_pass():
    x = _inputs()
    module = IndRNN(HIDDEN, recurrent_max=0.8)
    params = dict(_random_params(module, x))
    params["recurrent_weight"] = jnp.array([1.5, -2.0, 0.3, 0.8])
    got = module.apply({"params": params}, x)
    p = jax.tree_util.tree_map(np.asarray, params)
    np.testing.assert_allclose(got, ref_indrnn(p, np.asarray(x), ACTS["relu"], 0.8), rtol=1e-5, atol=1e-5)
    # A weight beyond the bound gets no gradient (it is clipped); one inside does.
    grad = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x)))(params)["recurrent_weight"]
    assert grad[0] == 0 and grad[1] == 0
    assert np.any(np.asarray(grad[2:]) != 0)


def test_indrnn_initialisation_range():
    x = _inputs()
    params = IndRNN(64, recurrent_init_min=0.5, recurrent_init_max=0.9).init(jax.random.PRNGKey(0), x)[
        "params"
    ]
    u = np.asarray(params["recurrent_weight"])
    assert u.shape == (64,) and np.all(u >= 0.5) and np.all(u < 0.9)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"activation": "gelu"}, "activation.*allowed values"),
        ({"recurrent_init_min": 1.0, "recurrent_init_max": 0.5}, "recurrent_init_min"),
        ({"recurrent_max": 0.0}, "recurrent_max"),
    ],
)
def test_indrnn_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        IndRNN(HIDDEN, **options).init(jax.random.PRNGKey(0), _inputs())
