"""minGRU and minLSTM (lrd/cells/minimal.py) against the equations of Feng et al. 2024 (arXiv:2410.01201).

* The activation ``g`` is positive, continuous at 0, and ``log_g`` is its logarithm with finite gradients.
* One step and a short sequence equal a float64 NumPy loop over the paper's equations, evaluated with the
  module's own (randomised) parameters, for every ``scan_mode`` (the linear scans and ``"log_space"``).
* On a long sequence (T = 1024) with forget gates next to 1, every ``scan_mode`` gives the same outputs and
  gradients.
* The gradient probe works with ``scan_mode="log_space"`` (it falls back to the linear path) and gives the same
  ``dL/dh_t`` as the linear path.
* Bad options raise ``ValueError`` naming the field and the allowed values.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.bench import mixer_variants
from lrd.cells.base import PROBE_COLLECTION
from lrd.cells.minimal import MINIMAL_SCAN_MODES, g, log_g
from lrd.kernels import kernel_interpreted
from lrd.registry import build_mixer
from lrd.scan import SCAN_MODES

BATCH, D_IN, HIDDEN, SHORT, LONG = 2, 3, 4, 7, 1024
CELLS = ("mingru", "minlstm")
# Every scan mode: each linear-scan mode, and the paper's log-space scan.
PATHS = list(MINIMAL_SCAN_MODES)
assert PATHS == [*SCAN_MODES, "log_space"]


def _options(mode: str, chunk_size: int) -> dict:
    """``scan_mode=mode``, and ``chunk_size`` where that mode honours it (elsewhere it is an error)."""
    return {"scan_mode": mode, **({"chunk_size": chunk_size} if mode == "chunked" else {})}


# float32 against float64 over a few steps with outputs of order 1.
REF_RTOL, REF_ATOL = 1e-5, 1e-5


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _g(z):
    return np.where(z >= 0, z + 0.5, _sigmoid(z))


def _x(num_steps: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (BATCH, num_steps, D_IN))


def _random_params(model, x, seed=1):
    """Initialise, then replace every parameter by random values so zero biases don't hide mistakes."""
    params = model.init(jax.random.PRNGKey(seed), x)["params"]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [0.7 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _linear(p, name, x_t):
    return x_t @ p[f"{name}_kernel"] + p[f"{name}_bias"]


def ref_min_gru(p, x):
    """Paper Sec. 3.1: z = sigmoid(Linear_z x), h~ = g(Linear_h x), h_t = (1 - z) h_{t-1} + z h~."""
    h = np.zeros((x.shape[0], HIDDEN))
    out = []
    for t in range(x.shape[1]):
        z = _sigmoid(_linear(p, "update_gate", x[:, t]))
        h_tilde = _g(_linear(p, "candidate", x[:, t]))
        h = (1.0 - z) * h + z * h_tilde
        out.append(h)
    return np.stack(out, 1)


def ref_min_lstm(p, x):
    """Paper Sec. 3.2: f' = f / (f + i), i' = i / (f + i), h_t = f' h_{t-1} + i' g(Linear_h x)."""
    h = np.zeros((x.shape[0], HIDDEN))
    out = []
    for t in range(x.shape[1]):
        f = _sigmoid(_linear(p, "forget_gate", x[:, t]))
        i = _sigmoid(_linear(p, "input_gate", x[:, t]))
        h_tilde = _g(_linear(p, "candidate", x[:, t]))
        h = f / (f + i) * h + i / (f + i) * h_tilde
        out.append(h)
    return np.stack(out, 1)


REFERENCES = {"mingru": ref_min_gru, "minlstm": ref_min_lstm}


# ----------------------------------------------------------------------------------------------------------------
# g and log g


def test_g_is_positive_and_continuous_at_zero():
    x = jnp.linspace(-30.0, 30.0, 2001)
    assert bool(jnp.all(g(x) > 0))
    # Both branches meet at 1/2: sigmoid(0) = 0 + 1/2.
    for eps in (1e-3, 1e-5, 0.0):
        np.testing.assert_allclose(g(jnp.float32(eps)), 0.5, atol=2 * eps + 1e-7)
        np.testing.assert_allclose(g(jnp.float32(-eps)), 0.5, atol=2 * eps + 1e-7)
    np.testing.assert_allclose(g(x), _g(np.asarray(x, np.float64)), rtol=1e-6)


def test_log_g_is_log_of_g_with_finite_gradients():
    x = jnp.linspace(-20.0, 20.0, 801)
    np.testing.assert_allclose(log_g(x), np.log(_g(np.asarray(x, np.float64))), rtol=1e-5, atol=1e-6)
    # The branch `where` discards (log(x + 1/2) for x < -1/2) must not leak NaN into the gradient.
    grads = jax.vmap(jax.grad(log_g))(x)
    assert bool(jnp.all(jnp.isfinite(grads)))


# ----------------------------------------------------------------------------------------------------------------
# Against the paper's equations


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, x):
    return model.apply({"params": params}, x)


def _check_against_reference(name, mode, num_steps):
    # Given random parameters (non-zero biases) and x, When the module runs in this scan mode,
    x = _x(num_steps)
    model = build_mixer(name, HIDDEN, **_options(mode, 3))
    params = _random_params(model, x)
    got = _apply(model, params, x)
    # Then it equals the float64 loop over the paper's equations.
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    expected = REFERENCES[name](p, np.asarray(x, np.float64))
    np.testing.assert_allclose(got, expected, rtol=REF_RTOL, atol=REF_ATOL)


@pytest.mark.parametrize("mode", ["sequential", "log_space"])
@pytest.mark.parametrize("name", CELLS)
def test_one_step_matches_equations(name, mode):
    # One step from h_0 = 0: h_1 = z g(h~) (minGRU), i' g(h~) (minLSTM).
    _check_against_reference(name, mode, 1)


@pytest.mark.parametrize("mode", PATHS)
@pytest.mark.parametrize("name", CELLS)
def test_short_sequence_matches_reference_loop(name, mode):
    _check_against_reference(name, mode, SHORT)


def test_min_lstm_state_stays_in_the_range_of_g():
    # f' + i' = 1, so h_t is a convex combination of 0 and earlier g values: 0 < h_t <= max g(h~) on the path.
    x = _x(SHORT, seed=3)
    model = build_mixer("minlstm", HIDDEN, scan_mode="associative")
    params = _random_params(model, x)
    h = np.asarray(_apply(model, params, x))
    candidates = _g(
        np.asarray(x, np.float64) @ np.asarray(params["candidate_kernel"]) + params["candidate_bias"]
    )
    assert np.all(h > 0)
    assert np.all(h <= candidates.max(axis=1, keepdims=True) + 1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Every path agrees on long sequences

# Gate biases that put the decay a_t next to 1 (about 0.9975, moved by the input term): the regime where the
# recurrence remembers over the whole sequence and reassociation errors accumulate the most.
LONG_OPTIONS = {"mingru": {"update_bias": -6.0}, "minlstm": {"forget_bias": 6.0, "input_bias": -6.0}}
# Measured relative differences from the sequential mode on CPU are below 2e-6 (outputs) and 5e-6 (gradients, the
# log-space scan being the least exact); 1e-4 as for the SSM layers leaves room for other backends.
PATH_TOL = 1e-4


def _relative_error(x, ref) -> float:
    x, ref = np.asarray(x), np.asarray(ref)
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(x - ref)) / scale) if scale > 0 else float(np.max(np.abs(x)))


@functools.partial(jax.jit, static_argnums=0)
def _paths_outputs_and_grads(name, x, readout):
    out = {}
    params = None
    for mode in PATHS:
        model = build_mixer(name, HIDDEN, **_options(mode, 100), **LONG_OPTIONS[name])
        if params is None:
            params = model.init(jax.random.PRNGKey(2), x[:, :8])["params"]

        def loss(params, x, model=model):
            y = model.apply({"params": params}, x)
            return jnp.mean(y * readout), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        out[mode] = (y, grads)
    return out


@pytest.mark.parametrize("name", CELLS)
def test_paths_agree_on_long_sequences(name):
    # Given T = 1024 (chunks of 100 do not divide it) and forget gates next to 1,
    x = _x(LONG, seed=4)
    readout = jax.random.normal(jax.random.PRNGKey(5), (BATCH, LONG, HIDDEN))
    # When every scan mode and the log-space scan compute outputs and gradients w.r.t. parameters and input,
    out = _paths_outputs_and_grads(name, x, readout)
    # Then they agree with the sequential mode.
    y_seq, grads_seq = out["sequential"]
    assert bool(jnp.all(jnp.isfinite(y_seq)))
    for label, (y, grads) in out.items():
        assert _relative_error(y, y_seq) < PATH_TOL, f"{name}/{label}: outputs differ"
        flat = jax.tree_util.tree_leaves_with_path(grads)
        for (path, grad), grad_seq in zip(flat, jax.tree_util.tree_leaves(grads_seq), strict=True):
            assert _relative_error(grad, grad_seq) < PATH_TOL, (
                f"{name}/{label}: grad {jax.tree_util.keystr(path)}"
            )


# ----------------------------------------------------------------------------------------------------------------
# The gradient probe


@pytest.mark.parametrize("name", CELLS)
def test_probe_gradient_is_the_same_in_log_space(name):
    x = _x(SHORT, seed=6)
    readout = jax.random.normal(jax.random.PRNGKey(7), (BATCH, SHORT, HIDDEN))
    linear = build_mixer(name, HIDDEN, scan_mode="associative")
    log_space = build_mixer(name, HIDDEN, scan_mode="log_space")
    params = linear.init(jax.random.PRNGKey(0), x)["params"]
    _, state = log_space.apply({"params": params}, x, mutable=[PROBE_COLLECTION])
    probes = state[PROBE_COLLECTION]
    assert probes["state"].shape == (SHORT, BATCH, HIDDEN)

    def probe_grad(model):
        loss = lambda p: jnp.sum(model.apply({"params": params, PROBE_COLLECTION: p}, x) * readout)  # noqa: E731
        return jax.grad(loss)(probes)["state"]

    grad_log, grad_linear = probe_grad(log_space), probe_grad(linear)
    # dL/dh_t of the last step is the readout itself (h_T is read out directly and influences nothing later).
    np.testing.assert_allclose(grad_linear[-1], jnp.swapaxes(readout, 0, 1)[-1], rtol=1e-6)
    np.testing.assert_allclose(grad_log, grad_linear, rtol=1e-6)


def test_bench_runs_every_scan_mode_once():
    # (but the Pallas kernel where it would run interpreted: off GPU it is a correctness path, not a contender)
    timed = [m for m in (*SCAN_MODES, "log_space") if m != "kernel" or not kernel_interpreted()]
    assert mixer_variants("mingru") == [{"scan_mode": mode} for mode in timed]


# ----------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize(
    "options,match",
    [
        (
            {"scan_mode": "fast"},
            "scan_mode='fast'.*allowed values: auto, sequential, associative, chunked, kernel, log_space",
        ),
        ({"scan_mode": "chunked", "chunk_size": 0}, "chunk_size=0: must be an int >= 1"),
        ({"chunk_size": 8}, "chunk_size=8: only scan_mode 'chunked' honours chunk_size"),
        ({"scan_mode": "log_space", "truncation": 4}, "truncation=4: only scan_mode 'sequential' or"),
    ],
)
def test_bad_options_raise(name, options, match):
    model = build_mixer(name, HIDDEN, **options)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), _x(3))
