"""LinOSS (lrd/cells/ssm/linoss.py) against the paper's equations (Rusch & Rus 2025, Sec. 2).

* Both discretisations equal a float64 NumPy loop over the paper's equations, written per oscillator in real
  arithmetic (the implicit step solved as a 2x2 linear system, not through the layer's closed-form ``M``), with
  parameters that put some oscillators exactly on the Jordan block ``A = 0`` and some next to it.
* Every scan mode gives the sequential mode's outputs and gradients at T = 300, and is causal; the 2x2-block engine
  equals a loop for complex inputs, and truncated BPTT cuts the gradient at chunk boundaries in every mode.
* Stability: ``|eigenvalues of M_IM| = (1 + dt^2 A)^(-1/2) <= 1`` for every ``A >= 0``, ``dt > 0``; ``|eigenvalues
  of M_IMEX| = 1`` exactly when ``dt^2 A <= 4`` (the paper's condition), and > 1 beyond it.
* The gradient probe is the total derivative with respect to ``(y_n, z_n)``; initialisation; bad options.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.base import PROBE_COLLECTION
from lrd.cells.ssm.linoss import block_linear_scan, linoss_transition, oscillator_scan
from lrd.registry import build_mixer

BATCH, D_IN, HIDDEN, STATES = 2, 3, 4, 6
SHORT, LONG = 40, 300
DISCRETISATIONS = ("im", "imex")
# A = relu(A_diag): exactly 0 twice (the Jordan block M = [[1, 0], [dt, 1]]), next to 0, and ordinary values up to
# 3.5 (so dt^2 A <= 4 holds for IMEX, whose dt = sigmoid(.) < 1).
A_DIAG = np.array([-0.4, 0.0, 1e-30, 1e-6, 0.7, 3.5], np.float32)
STEP_LOGIT = np.array([0.3, -1.0, 0.8, 0.1, 0.5, 1.2], np.float32)


def _x(num_steps: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (BATCH, num_steps, D_IN))


@functools.cache
def _initial_params(discretisation: str) -> dict:
    """The module's initial parameters at the short sizes (d_in != hidden)."""
    model = build_mixer("linoss", HIDDEN, state_size=STATES, discretisation=discretisation)
    return dict(jax.jit(model.init)(jax.random.PRNGKey(1), _x(2))["params"])


def _params(discretisation: str) -> dict:
    """:func:`_initial_params` with ``A_diag`` and ``step_logit`` replaced by the cases above."""
    return {
        **_initial_params(discretisation),
        "A_diag": jnp.asarray(A_DIAG),
        "step_logit": jnp.asarray(STEP_LOGIT),
    }


def _np(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _reference(p, x, discretisation, dz=None, dy=None):
    """The paper's equations, one oscillator at a time, real arithmetic (real and imaginary parts of the complex
    states are two real oscillators driven by Re(B u) and Im(B u)):

    IM:   z_n = z_{n-1} + dt (-A y_n + B u_n),  y_n = y_{n-1} + dt z_n   (solved as a 2x2 system)
    IMEX: z_n = z_{n-1} + dt (-A y_{n-1} + B u_n),  y_n = y_{n-1} + dt z_n

    and x_n = Re(C y_n) + D u_n. ``dz``, ``dy`` (``complex[T, batch, P]``, optional) perturb the state as the probe
    does: ``z_n += dz_n`` before ``y_n = y_{n-1} + dt z_n`` is formed, then ``y_n += dy_n``."""
    u = x @ p["input_kernel"] + p["input_bias"] if "input_kernel" in p else x
    A = np.maximum(p["A_diag"], 0.0)
    dt = 1.0 / (1.0 + np.exp(-p["step_logit"]))
    batch, num_steps, _ = x.shape
    size = A.shape[0]
    z = np.zeros((2, batch, size))  # [real/imag, batch, P]
    y = np.zeros((2, batch, size))
    out = np.zeros((batch, num_steps, p["D"].shape[0]))
    for t in range(num_steps):
        bu = np.stack([u[:, t] @ p["B_re"], u[:, t] @ p["B_im"]])  # [2, batch, P]
        for part in range(2):
            for b in range(batch):
                for k in range(size):
                    forcing = bu[part, b, k]
                    if discretisation == "im":
                        # [1, dt A; -dt, 1] [z_n; y_n] = [z_{n-1} + dt B u_n; y_{n-1}]
                        system = np.array([[1.0, dt[k] * A[k]], [-dt[k], 1.0]])
                        rhs = np.array([z[part, b, k] + dt[k] * forcing, y[part, b, k]])
                        z_new, _ = np.linalg.solve(system, rhs)
                    else:
                        z_new = z[part, b, k] + dt[k] * (-A[k] * y[part, b, k] + forcing)
                    if dz is not None:
                        z_new += dz[t, b, k].real if part == 0 else dz[t, b, k].imag
                    y_new = y[part, b, k] + dt[k] * z_new
                    if dy is not None:
                        y_new += dy[t, b, k].real if part == 0 else dy[t, b, k].imag
                    z[part, b, k], y[part, b, k] = z_new, y_new
        # Re(C y) with complex y = y_re + i y_im and C = C_re + i C_im.
        out[:, t] = y[0] @ p["C_re"] - y[1] @ p["C_im"] + p["D"] * u[:, t]
    return out


@functools.cache
def _short_case(discretisation: str):
    """``(params, x, y, probe_grad, readout, param_grads)`` at the short sizes (d_in != hidden), one compiled
    program: the output and the gradients of ``sum(y * readout)`` w.r.t. the probe and the parameters."""
    model = build_mixer(
        "linoss", HIDDEN, state_size=STATES, discretisation=discretisation, scan_mode="sequential"
    )
    x = _x(SHORT)
    readout = jax.random.normal(jax.random.PRNGKey(3), (BATCH, SHORT, HIDDEN))
    params = _params(discretisation)

    @jax.jit
    def run(params, x):
        y, variables = model.apply({"params": params}, x, mutable=[PROBE_COLLECTION])

        def loss(params, probes):
            return jnp.sum(model.apply({"params": params, PROBE_COLLECTION: probes}, x) * readout)

        return y, jax.grad(loss, argnums=(0, 1))(params, variables[PROBE_COLLECTION])

    y, (param_grads, probe_grad) = run(params, x)
    return params, x, y, probe_grad, readout, param_grads


@pytest.mark.parametrize("discretisation", DISCRETISATIONS)
def test_matches_the_papers_equations_in_float64(discretisation):
    # Given oscillators on and next to the Jordan block A = 0 and ordinary ones, d_in != hidden_size,
    params, x, y, *_ = _short_case(discretisation)
    # When the paper's equations run in float64 with the module's parameters, Then the outputs agree.
    expected = _reference(_np(params), np.asarray(x, np.float64), discretisation)
    assert y.shape == (BATCH, SHORT, HIDDEN) and y.dtype == jnp.float32
    assert np.max(np.abs(expected)) > 0.5  # the states move: the comparison is not of zeros
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.max(np.abs(expected)))


@pytest.mark.parametrize("discretisation", DISCRETISATIONS)
def test_probe_is_the_total_derivative_of_the_state(discretisation):
    # Given d L / d probe with L = sum(y * readout) (L is linear in the state, so a unit perturbation of the
    # reference's state gives the derivative exactly),
    params, x, _, probe_grad, readout, _ = _short_case(discretisation)
    grads = probe_grad["state"]  # (y, z), each [T, batch, 2P]: real parts, then imaginary parts
    assert [g.shape for g in grads] == [(SHORT, BATCH, 2 * STATES)] * 2
    p, u, r = _np(params), np.asarray(x, np.float64), np.asarray(readout, np.float64)
    base = np.sum(_reference(p, u, discretisation) * r)
    rng = np.random.default_rng(0)
    for leaf, name in enumerate(("dy", "dz")):
        for _ in range(3):
            t, b, channel = rng.integers(SHORT - 5), rng.integers(BATCH), rng.integers(2 * STATES)
            bump = np.zeros((SHORT, BATCH, STATES), complex)
            bump[t, b, channel % STATES] = 1.0 if channel < STATES else 1j
            # When the reference's state is perturbed there, Then the change of L is the probe's gradient.
            changed = np.sum(_reference(p, u, discretisation, **{name: bump}) * r) - base
            got = float(grads[leaf][t, b, channel])
            np.testing.assert_allclose(
                got, changed, rtol=1e-4, atol=1e-4, err_msg=f"{name} at {t, b, channel}"
            )


@pytest.mark.parametrize("discretisation", DISCRETISATIONS)
def test_recurrence_gradients_match_finite_differences_of_the_reference(discretisation):
    # d sum(y * readout) / d (A_diag, step_logit): float32 autodiff against float64 central differences of the
    # paper's equations (skipping A_diag near relu's kink at 0, where a central difference straddles it).
    params, x, _, _, readout, grads = _short_case(discretisation)
    p, u, r = _np(params), np.asarray(x, np.float64), np.asarray(readout, np.float64)
    eps = 1e-6
    for name in ("A_diag", "step_logit"):
        for k in range(STATES):
            if name == "A_diag" and abs(p[name][k]) < 1e-3:
                continue
            plus, minus = {**p, name: p[name].copy()}, {**p, name: p[name].copy()}
            plus[name][k] += eps
            minus[name][k] -= eps
            numeric = np.sum((_reference(plus, u, discretisation) - _reference(minus, u, discretisation)) * r)
            numeric /= 2 * eps
            np.testing.assert_allclose(grads[name][k], numeric, rtol=1e-3, atol=1e-3, err_msg=f"{name}[{k}]")


# ----------------------------------------------------------------------------------------------------------------
# Scan modes at long T, truncation, causality

MODES = ("sequential", "associative", "chunked", "fft")
MODE_TOL = 1e-4  # relative, as in tests/test_cells_ssm.py (float32 reassociation over 300 steps)


def _relative_error(x, ref) -> float:
    x, ref = np.asarray(x), np.asarray(ref)
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(x - ref)) / scale) if scale > 0 else float(np.max(np.abs(x)))


@functools.cache
def _long_case(discretisation: str):
    """``{mode: (y, grads of mean(y * readout) w.r.t. (params, x))}``, all modes in one compiled program."""
    x = _x(LONG, seed=4)
    readout = jax.random.normal(jax.random.PRNGKey(5), (BATCH, LONG, HIDDEN))
    models = {
        mode: build_mixer(
            "linoss",
            HIDDEN,
            state_size=STATES,
            discretisation=discretisation,
            scan_mode=mode,
            **({"chunk_size": 100} if mode == "chunked" else {}),  # 100 does not divide 300
        )
        for mode in MODES
    }
    params = _params(discretisation)

    @jax.jit
    def run(params, x):
        out = {}
        for mode, model in models.items():

            def loss(params, x, model=model):
                y = model.apply({"params": params}, x)
                return jnp.mean(y * readout), y

            (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
            out[mode] = (y, grads)
        return out

    return run(params, x)


@pytest.mark.parametrize("discretisation", DISCRETISATIONS)
def test_scan_modes_agree_at_long_sequences(discretisation):
    # Given T = 300 and oscillators at and next to A = 0 (chunks of 100 for "chunked"),
    out = _long_case(discretisation)
    y_seq, grads_seq = out["sequential"]
    assert bool(jnp.all(jnp.isfinite(y_seq)))
    for mode, (y, grads) in out.items():
        # Then every mode's outputs equal the sequential ones,
        assert _relative_error(y, y_seq) < MODE_TOL, f"{discretisation}/{mode}: outputs differ"
        # and so do the gradients w.r.t. every parameter and the input (finite everywhere, A = 0 included).
        flat = jax.tree_util.tree_leaves_with_path(grads)
        for (path, g), g_seq in zip(flat, jax.tree_util.tree_leaves(grads_seq), strict=True):
            name = f"{discretisation}/{mode}: grad {jax.tree_util.keystr(path)}"
            assert bool(jnp.all(jnp.isfinite(g))), f"{name} is not finite"
            assert _relative_error(g, g_seq) < MODE_TOL, name


def _engine_loop(m, b):
    """``h_t = M h_{t-1} + b_t`` per channel, a NumPy loop (any dtype)."""
    z = y = np.zeros(b[0].shape[1:], b[0].dtype)
    zs, ys = [], []
    for t in range(b[0].shape[0]):
        z, y = m[0] * z + m[1] * y + b[0][t], m[2] * z + m[3] * y + b[1][t]
        zs.append(z)
        ys.append(y)
    return np.stack(zs), np.stack(ys)


def test_block_linear_scan_matches_a_loop_and_is_causal():
    # Given a general (non-LinOSS) real 2x2 block, complex inputs, and the inputs changed at step 0, 25 or 49,
    rng = np.random.default_rng(1)
    m = tuple(0.7 * rng.normal(size=(3,)) for _ in range(4))
    b = tuple(rng.normal(size=(50, 2, 3)) + 1j * rng.normal(size=(50, 2, 3)) for _ in range(2))
    expected = _engine_loop(m, b)
    steps = (0, 25, 49)
    bumped = [tuple(x.copy() for x in b) for _ in steps]
    for t, inputs in zip(steps, bumped, strict=True):
        inputs[0][t] += 1.0
        inputs[1][t] -= 1j
    m32 = tuple(jnp.asarray(v, jnp.float32) for v in m)
    b64 = jnp.asarray(
        np.stack([np.stack(inputs) for inputs in [b, *bumped]]), jnp.complex64
    )  # [4, 2, T, ...]
    scale = np.max(np.abs(expected[1]))
    for mode in MODES:
        scan = jax.jit(
            jax.vmap(lambda b, mode=mode: block_linear_scan(m32, (b[0], b[1]), mode=mode, chunk_size=16))
        )
        got = [np.asarray(h) for h in scan(b64)]  # (z, y), each [4, T, ...]
        # Then every mode equals the loop,
        for name, g, e in zip("zy", got, expected, strict=True):
            np.testing.assert_allclose(g[0], e, atol=1e-5 * scale, err_msg=f"{mode}: {name}")
        # and is causal: states before the changed step are unchanged (exactly, but for FFT rounding in "fft").
        for i, t in enumerate(steps, start=1):
            for g in got:
                assert np.max(np.abs(g[i, :t] - g[0, :t]), initial=0.0) <= 1e-6 * scale, f"{mode}, step {t}"
                assert np.max(np.abs(g[i, t:] - g[0, t:])) > 1e-2, f"{mode}, step {t}"


TRUNCATION, ENGINE_STEPS, ENGINE_QUERY = 16, 50, 40  # chunks [0, 16), [16, 32), [32, 48), [48, 50)


def test_truncation_in_every_mode_that_has_it():
    # Given truncation at 16 over 50 steps (a final partial chunk), for the general block engine in each mode, and
    # for the LinOSS kick-drift form (its own sequential loop, with the extra position input that the probe uses)
    # against its block form in the associative mode,
    rng = np.random.default_rng(2)
    m = tuple(jnp.asarray(0.6 * rng.normal(size=(4,)), jnp.float32) for _ in range(4))
    b = tuple(jnp.asarray(rng.normal(size=(ENGINE_STEPS, 2, 4)), jnp.float32) for _ in range(2))
    A, dt = rng.uniform(0, 2, size=4), rng.uniform(0.3, 1.0, size=4)
    (m_zz, m_zy, _, _), _ = linoss_transition(A, dt, "im")
    kick, step = (
        (jnp.asarray(m_zz, jnp.float32), jnp.asarray(m_zy, jnp.float32)),
        jnp.asarray(dt, jnp.float32),
    )
    readout = jnp.asarray(rng.normal(size=(ENGINE_STEPS, 2, 4)), jnp.float32)
    query = jnp.zeros_like(readout).at[ENGINE_QUERY].set(1.0)
    options = {"truncation": TRUNCATION}
    cases = {
        f"block/{mode}": functools.partial(
            block_linear_scan, mode=mode, chunk_size=5 if mode == "chunked" else 64, **options
        )
        for mode in ("sequential", "associative", "chunked")
    }
    for mode in ("sequential", "associative"):
        cases[f"kick-drift/{mode}"] = lambda m, b, mode=mode: oscillator_scan(
            (m[0], m[1]), step, b[0], b[1], mode=mode, **options
        )
    inputs = {key: (kick + m[2:], b) if key.startswith("kick") else (m, b) for key in cases}

    @jax.jit
    def run(inputs):
        out = {}
        for key, scan in cases.items():
            h, vjp = jax.vjp(lambda m, b, scan=scan: scan(m, b)[1], *inputs[key])
            # Both cotangents (the readout, and a one-hot at step 40) through one backward pass.
            out[key] = (scan(*inputs[key]), jax.vmap(vjp)(jnp.stack([readout, query])))
        return out

    out = run(inputs)
    m64, b64 = tuple(np.asarray(x, np.float64) for x in m), tuple(np.asarray(x, np.float64) for x in b)
    for key, (h, grads) in out.items():
        if key.startswith("kick"):
            k_zz, k_zy, dt64 = (np.asarray(x, np.float64) for x in (*kick, step))
            block = (k_zz, k_zy, dt64 * k_zz, 1.0 + dt64 * k_zy)
            expected = _engine_loop(block, (b64[0], dt64 * b64[0] + b64[1]))
            reference = out[key.replace("sequential", "associative")][1]
        else:
            expected, reference = _engine_loop(m64, b64), out["block/sequential"][1]
        # Then the states are those of the untruncated loop (float64),
        for got, want in zip(h, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)), err_msg=key)
        # the gradients are those of the truncated sequential scan (the block form's, for the kick-drift loop),
        for g, g_ref in zip(
            jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(reference), strict=True
        ):
            assert _relative_error(g, g_ref) < 1e-5, key
        # and d y_40 / d b_z,s vanishes for s before its chunk [32, 48) but not inside it (untruncated, it would
        # not vanish: that is M^(40 - s) != 0).
        query_grad = np.asarray(grads[1][0][1])
        assert np.max(np.abs(query_grad[:32])) == 0.0, key
        assert np.max(np.abs(query_grad[32 : ENGINE_QUERY + 1])) > 0, key


# ----------------------------------------------------------------------------------------------------------------
# Stability and initialisation


def _transition(A, dt, discretisation) -> np.ndarray:
    """``M: [n, 2, 2]`` from the layer's own closed form, in float64."""
    (m_zz, m_zy, m_yz, m_yy), _ = linoss_transition(A, dt, discretisation)
    return np.stack([np.stack([m_zz, m_zy], -1), np.stack([m_yz, m_yy], -1)], -2)


def test_implicit_transition_is_stable_for_every_nonnegative_A():
    # Given A in {0} U [1e-8, 1e8] and dt in [1e-4, 1e2] (far beyond what sigmoid allows),
    A, dt = np.meshgrid(np.concatenate([[0.0], np.logspace(-8, 8, 33)]), np.logspace(-4, 2, 13))
    A, dt = A.ravel(), dt.ravel()
    M = _transition(A, dt, "im")
    # Then M is the solution of the implicit step: [1, dt A; -dt, 1] M = [1, 0; 0, 1] (rows z, y),
    implicit = np.stack([np.stack([np.ones_like(A), dt * A], -1), np.stack([-dt, np.ones_like(A)], -1)], -2)
    np.testing.assert_allclose(implicit @ M, np.broadcast_to(np.eye(2), M.shape), atol=1e-12)
    # and every eigenvalue has modulus (1 + dt^2 A)^(-1/2) <= 1.
    modulus = np.abs(np.linalg.eigvals(M))
    np.testing.assert_allclose(
        modulus, np.broadcast_to((1.0 + dt**2 * A)[:, None] ** -0.5, modulus.shape), rtol=1e-6
    )
    assert np.all(modulus <= 1.0 + 1e-12)


def test_imex_transition_is_conservative_within_the_papers_condition():
    h = np.concatenate([[0.0], np.logspace(-8, np.log10(4.0), 30)])  # dt^2 A in [0, 4]
    for dt in (1e-3, 0.5, 1.0):
        A = h / dt**2
        M = _transition(A, np.full_like(A, dt), "imex")
        np.testing.assert_allclose(np.linalg.det(M), 1.0, atol=1e-9)
        np.testing.assert_allclose(np.abs(np.linalg.eigvals(M)), 1.0, atol=2e-4)  # a double root at h = 0, 4
    # Beyond the condition (dt^2 A > 4) the eigenvalues are real and one has modulus > 1: not stable.
    M = _transition(np.array([4.5, 10.0]), np.array([1.0, 1.0]), "imex")
    assert np.all(np.max(np.abs(np.linalg.eigvals(M)), axis=-1) > 1.0)


@pytest.mark.parametrize("discretisation", DISCRETISATIONS)
def test_spectrum_is_the_eigenvalues_of_M(discretisation):
    params = _short_case(discretisation)[0]
    model = build_mixer("linoss", HIDDEN, state_size=STATES, discretisation=discretisation)
    spectrum = model.spectrum(params)
    A = np.maximum(A_DIAG.astype(np.float64), 0.0)
    dt = 1.0 / (1.0 + np.exp(-STEP_LOGIT.astype(np.float64)))
    eigenvalues = np.linalg.eigvals(_transition(A, dt, discretisation))  # [P, 2]
    assert spectrum.shape == (2 * STATES,)
    np.testing.assert_allclose(np.sort_complex(spectrum), np.sort_complex(eigenvalues.ravel()), atol=1e-6)


def test_initialisation_follows_the_authors_code():
    # A_diag, step_logit ~ U[0, 1] (float32), Re/Im B ~ U[+-1/sqrt(H)] [H, P], Re/Im C ~ U[+-1/sqrt(P)] [P, H].
    p = _initial_params("im")
    assert p["A_diag"].dtype == jnp.float32 and p["step_logit"].dtype == jnp.float32
    p = _np(p)
    for name in ("A_diag", "step_logit"):
        assert p[name].shape == (STATES,) and np.all((p[name] >= 0) & (p[name] <= 1)), name
    for name, bound, shape in (
        ("B_re", HIDDEN**-0.5, (HIDDEN, STATES)),
        ("B_im", HIDDEN**-0.5, (HIDDEN, STATES)),
        ("C_re", STATES**-0.5, (STATES, HIDDEN)),
        ("C_im", STATES**-0.5, (STATES, HIDDEN)),
    ):
        assert p[name].shape == shape and np.all(np.abs(p[name]) <= bound) and np.std(p[name]) > bound / 3, (
            name
        )
    assert p["D"].shape == (HIDDEN,) and p["input_kernel"].shape == (D_IN, HIDDEN)  # d_in = 3 != 4


@pytest.mark.parametrize(
    "options,match",
    [
        ({"discretisation": "rk4"}, "discretisation.*im, imex"),
        ({"scan_mode": "kernel"}, "scan_mode.*sequential, associative, chunked, fft"),
        ({"scan_mode": "fft", "truncation": 8}, "only scan_mode 'sequential' or 'associative' or 'chunked'"),
        ({"chunk_size": 16}, "only scan_mode 'chunked' honours chunk_size"),
        ({"state_size": 0}, "state_size"),
    ],
)
def test_bad_options_raise(options, match):
    model = build_mixer("linoss", HIDDEN, **options)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), _x(3))
