"""Linear-recurrent / state-space layers (lrd/cells/ssm.py) against their papers' equations.

* Each layer, on a short sequence, equals a float64 NumPy loop over the paper's equations evaluated with the
  module's own parameters (S4D through its convolution kernel instead, the paper's other view of the same map).
* Every ``scan_mode`` gives the same outputs and gradients on a long sequence (T = 1024) with the recurrence's
  eigenvalues next to the unit circle.
* Initialisations: LRU ring, S4D-Lin/Inv, HiPPO-N diagonalisation (eigenvalues on Re = -1/2), S6 and RG-LRU decays.
* Bad options raise ``ValueError`` naming the field and the allowed values.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.base import PROBE_COLLECTION, scan_modes
from lrd.cells.ssm import (
    causal_depthwise_conv,
    hippo_legs,
    hippo_n,
    hippo_n_diagonalized,
    lru_lambda,
    lru_ring_init,
    s4d_imag_init,
)
from lrd.registry import build_mixer, get_mixer

BATCH, D_IN, HIDDEN, SHORT = 2, 3, 4, 7

# float32 (eps 1.2e-7) against float64 over a 7-step recurrence and sums over a few states: errors are a few
# 1e-7 relative to the output scale (~1); 1e-5 leaves room for the exp/log/sqrt of the parameterisations.
REF_RTOL, REF_ATOL = 1e-5, 1e-5


def _x(num_steps: int, seed: int = 0, d_in: int = D_IN) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (BATCH, num_steps, d_in))


@functools.partial(jax.jit, static_argnums=0)
def _init_apply(model, x):
    variables = model.init(jax.random.PRNGKey(1), x)
    return variables, model.apply(variables, x)


@functools.cache
def _short_case(name: str, options: tuple[tuple[str, object], ...]):
    """``(params as float64 NumPy, x, y)`` for ``name`` at the short sizes: one compile, shared by the reference
    and initialisation tests."""
    x = _x(SHORT)
    model = build_mixer(name, HIDDEN, scan_mode="sequential", **dict(options))
    variables, y = _init_apply(model, x)
    return _np(variables["params"]), np.asarray(x, np.float64), y


def _np(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softplus(z):
    return np.log1p(np.exp(z))


def _silu(z):
    return z * _sigmoid(z)


def _gelu_tanh(z):
    # jax.nn.gelu's default (approximate=True) form.
    return 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z**3)))


def _input(p, x):
    """The layers' input projection, present only when d_in != hidden_size."""
    return x @ p["input_kernel"] + p["input_bias"] if "input_kernel" in p else x


def _conv_reference(u, kernel, bias):
    """``y_t = b + sum_k kernel[k] u_{t-W+1+k}``, skipping indices before 0 (a plain loop)."""
    width = kernel.shape[0]
    y = np.zeros_like(u) + bias
    for t in range(u.shape[1]):
        for k in range(width):
            s = t - width + 1 + k
            if s >= 0:
                y[:, t] += kernel[k] * u[:, s]
    return y


# ----------------------------------------------------------------------------------------------------------------
# Reference loops (float64), one per paper


def _lru_reference(p, x):
    """Orvieto et al. 2023: x_t = Lambda x_{t-1} + gamma (B u_t), y_t = Re(C x_t) + D u_t."""
    u = _input(p, x)
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    gamma = np.exp(p["gamma_log"]) if "gamma_log" in p else np.sqrt(1.0 - np.abs(lam) ** 2)
    B, C = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]  # [H, N], [N, H]
    h = np.zeros((x.shape[0], lam.shape[0]), complex)
    ys = []
    for t in range(x.shape[1]):
        h = lam * h + gamma * (u[:, t] @ B)
        ys.append(np.real(h @ C) + p["D"] * u[:, t])
    return np.stack(ys, axis=1)


def _s4d_reference(p, x):
    """Gu et al. 2022 through the convolution kernel: y = K * u + D u with
    K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l), A_bar = exp(Delta A), B_bar = (A_bar - 1) / A (B = 1)."""
    u = _input(p, x)
    A = -np.exp(p["log_A_real"]) + 1j * p["A_imag"]  # [H, N/2]
    dt = np.exp(p["log_dt"])[:, None]
    A_bar = np.exp(dt * A)
    B_bar = (A_bar - 1.0) / A
    C = p["C_re"] + 1j * p["C_im"]
    num_steps = x.shape[1]
    K = np.stack([2 * np.real(np.sum(C * B_bar * A_bar**l, axis=-1)) for l in range(num_steps)])  # [T, H]
    y = np.zeros_like(u)
    for t in range(num_steps):
        for s in range(t + 1):
            y[:, t] += K[t - s] * u[:, s]
    return y + p["D"] * u


def _s5_reference(p, x, max_real=-1e-4):
    """Smith et al. 2023: x_t = Lambda_bar x_{t-1} + B_bar u_t, y_t = 2 Re(C~ x_t) + D u_t (conjugate symmetry)."""
    u = _input(p, x)
    lam = np.minimum(p["Lambda_re"], max_real) + 1j * p["Lambda_im"]
    lam_bar = np.exp(lam * np.exp(p["log_step"]))
    B = (p["B"][..., 0] + 1j * p["B"][..., 1]).T  # B~: [P/2, H]
    C = (p["C"][..., 0] + 1j * p["C"][..., 1]).T  # C~: [H, P/2]
    B_bar = ((lam_bar - 1.0) / lam)[:, None] * B
    h = np.zeros((x.shape[0], lam.shape[0]), complex)
    ys = []
    for t in range(x.shape[1]):
        h = lam_bar * h + u[:, t] @ B_bar.T
        ys.append(2 * np.real(h @ C.T) + p["D"] * u[:, t])
    return np.stack(ys, axis=1)


def _mamba_reference(p, x, *, block: bool, state_size: int):
    """Gu & Dao 2023, Algorithm 2 inside the Mamba block, one step and one (channel, state) pair at a time."""
    if block:
        u, z = np.split(x @ p["in_proj_kernel"], 2, axis=-1)
        u = _silu(_conv_reference(u, p["conv_kernel"], p["conv_bias"]))
    else:
        u = _input(p, x)
    rank = p["dt_proj_kernel"].shape[0]
    x_dbl = u @ p["x_proj_kernel"]
    delta_low, B, C = x_dbl[..., :rank], x_dbl[..., rank : rank + state_size], x_dbl[..., rank + state_size :]
    delta = _softplus(delta_low @ p["dt_proj_kernel"] + p["dt_bias"])
    A = -np.exp(p["A_log"])
    batch, num_steps, inner = u.shape
    y = np.zeros_like(u)
    for b in range(batch):
        for d in range(inner):
            h = np.zeros(state_size)
            for t in range(num_steps):
                for n in range(state_size):
                    h[n] = np.exp(delta[b, t, d] * A[d, n]) * h[n] + delta[b, t, d] * B[b, t, n] * u[b, t, d]
                y[b, t, d] = sum(C[b, t, n] * h[n] for n in range(state_size)) + p["D"][d] * u[b, t, d]
    if not block:
        return y
    return (y * _silu(z)) @ p["out_proj_kernel"]


def _rglru_reference(p, x, *, block: bool, c: float = 8.0):
    """De et al. 2024, eqs. 1-4 (a_t = a^(c r_t) taken as a plain power), inside Griffin's recurrent block."""
    if block:
        gate = _gelu_tanh(x @ p["gate_proj_kernel"] + p["gate_proj_bias"])
        v = _conv_reference(x @ p["in_proj_kernel"] + p["in_proj_bias"], p["conv_kernel"], p["conv_bias"])
    else:
        v = _input(p, x)
    a = _sigmoid(p["Lambda"])
    h = np.zeros((x.shape[0], v.shape[-1]))
    hs = []
    for t in range(x.shape[1]):
        r = _sigmoid(v[:, t] @ p["gate_a_kernel"] + p["gate_a_bias"])
        i = _sigmoid(v[:, t] @ p["gate_x_kernel"] + p["gate_x_bias"])
        a_t = a ** (c * r)
        h = a_t * h + np.sqrt(1.0 - a_t**2) * (i * v[:, t])
        hs.append(h)
    h = np.stack(hs, axis=1)
    if not block:
        return h
    return (h * gate) @ p["out_proj_kernel"] + p["out_proj_bias"]


LRU_TRAINABLE = {"trainable_gamma": True, "state_size": 6}
S4D_SMALL = {"a_init": "lin", "state_size": 6}
S5_SMALL = {"state_size": 8}
SELECTIVE_SMALL = {"state_size": 3}
REFERENCE_CASES = [
    ("lru", {}, _lru_reference),
    ("lru", LRU_TRAINABLE, _lru_reference),
    ("s4d", S4D_SMALL, _s4d_reference),
    ("s5", S5_SMALL, _s5_reference),
    ("selective_ssm", SELECTIVE_SMALL, functools.partial(_mamba_reference, block=True, state_size=3)),
    (
        "selective_ssm",
        {"state_size": 3, "block": False},
        functools.partial(_mamba_reference, block=False, state_size=3),
    ),
    ("rglru", {}, functools.partial(_rglru_reference, block=True)),
    ("rglru", {"block": False}, functools.partial(_rglru_reference, block=False)),
]


@pytest.mark.parametrize(
    "name,options,reference", REFERENCE_CASES, ids=[f"{n}-{sorted(o.items())}" for n, o, _ in REFERENCE_CASES]
)
def test_matches_reference_loop(name, options, reference):
    # Given a layer with d_in != hidden_size (so the input projection, where a layer has one, is exercised),
    params, x, y = _short_case(name, tuple(sorted(options.items())))
    # When the paper's equations are run in float64 with the module's parameters, Then the outputs agree.
    expected = reference(params, x)
    assert y.shape == (BATCH, SHORT, HIDDEN) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, expected, rtol=REF_RTOL, atol=REF_ATOL)


def test_input_projection_only_when_widths_differ():
    for name in ("lru", "s4d", "s5"):
        model = build_mixer(name, HIDDEN)
        with_proj = jax.eval_shape(model.init, jax.random.PRNGKey(0), _x(3))["params"]
        without = jax.eval_shape(model.init, jax.random.PRNGKey(0), _x(3, d_in=HIDDEN))["params"]
        assert "input_kernel" in with_proj and "input_kernel" not in without, name


def test_causal_depthwise_conv_matches_loop():
    u = np.asarray(_x(9, seed=3), np.float64)
    kernel = np.random.default_rng(0).normal(size=(4, D_IN))
    bias = np.random.default_rng(1).normal(size=(D_IN,))
    np.testing.assert_allclose(
        causal_depthwise_conv(jnp.asarray(u), jnp.asarray(kernel), jnp.asarray(bias)),
        _conv_reference(u, kernel, bias),
        rtol=1e-5,
        atol=1e-6,
    )


# ----------------------------------------------------------------------------------------------------------------
# All scan modes agree on long sequences near the unit circle

LONG = 1024
# Options putting every layer's decays next to the unit circle: |a| >= 0.99 (LRU, RG-LRU at r_t = 1, where
# r_t < 1 moves a_t even closer to 1), exp(-Delta/2) >= 0.9995 (S4D, S5), exp(-Delta (n+1)) with Delta ~ 1e-3
# (S6). Small widths keep the test fast.
LONG_CASES = {
    "lru": {"r_min": 0.99, "r_max": 0.9999, "state_size": 4},
    "s4d": {"dt_min": 1e-4, "dt_max": 1e-3, "state_size": 4},
    "s5": {"dt_min": 1e-4, "dt_max": 1e-3, "state_size": 4},
    "selective_ssm": {"dt_min": 1e-4, "dt_max": 1e-3, "state_size": 2, "expand": 1},
    "rglru": {"a_min": 0.99, "a_max": 0.9999},
}
# float32 reassociation over 1024 steps that barely decay (see tests/test_scan_linear.py): measured relative
# differences between modes are below ~1e-5; 1e-4 for outputs and gradients.
MODE_TOL = 1e-4


def _relative_error(x, ref) -> float:
    x, ref = np.asarray(x), np.asarray(ref)
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(x - ref)) / scale) if scale > 0 else float(np.max(np.abs(x)))


@functools.partial(jax.jit, static_argnums=0)
def _modes_outputs_and_grads(name, x, readout):
    out = {}
    params = None
    for mode in scan_modes(get_mixer(name).cls):  # every algorithm the layer offers, fft included
        chunk = {"chunk_size": 100} if mode == "chunked" else {}  # chunk_size is an error with other modes
        model = build_mixer(name, HIDDEN, scan_mode=mode, **chunk, **LONG_CASES[name])
        if params is None:
            params = model.init(jax.random.PRNGKey(2), x[:, :8])["params"]

        def loss(params, x, model=model):
            y = model.apply({"params": params}, x)
            return jnp.mean(y * readout), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        out[mode] = (y, grads)
    return out


@pytest.mark.parametrize("name", list(LONG_CASES))
def test_scan_modes_agree_on_long_sequences(name):
    # Given T = 1024 (chunks of 100 do not divide it) and decays next to the unit circle,
    x = _x(LONG, seed=4)
    readout = jax.random.normal(jax.random.PRNGKey(5), (BATCH, LONG, HIDDEN))
    # When each scan mode computes the outputs and the gradients w.r.t. parameters and input,
    out = _modes_outputs_and_grads(name, x, readout)
    # Then they agree with the sequential mode.
    y_seq, grads_seq = out["sequential"]
    assert bool(jnp.all(jnp.isfinite(y_seq)))
    for mode in out:  # every scan mode the layer offers
        y, grads = out[mode]
        assert _relative_error(y, y_seq) < MODE_TOL, f"{name}/{mode}: outputs differ"
        flat = jax.tree_util.tree_leaves_with_path(grads)
        for (path, g), g_seq in zip(flat, jax.tree_util.tree_leaves(grads_seq), strict=True):
            assert _relative_error(g, g_seq) < MODE_TOL, f"{name}/{mode}: grad {jax.tree_util.keystr(path)}"


# ----------------------------------------------------------------------------------------------------------------
# Initialisations


def _short_params(name: str, options: dict) -> dict[str, np.ndarray]:
    return _short_case(name, tuple(sorted(options.items())))[0]


def test_lru_ring_init():
    # Given the module's ring initialisation (defaults r_min=0.9, r_max=0.999, max_phase=2 pi), Then every
    # |lambda| lies in [r_min, r_max], every phase in [0, max_phase], and the trainable gamma starts at
    # sqrt(1 - |lambda|^2).
    p = _short_params("lru", LRU_TRAINABLE)
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    assert lam.shape == (6,)
    assert np.all(np.abs(lam) >= 0.9 - 1e-6) and np.all(np.abs(lam) <= 0.999 + 1e-6)
    assert np.all(np.exp(p["theta_log"]) <= 2 * np.pi + 1e-6)
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - np.abs(lam) ** 2), rtol=1e-4)


def test_lru_ring_init_distribution():
    # Given many samples on the ring [0.4, 0.5] with phases up to pi/10, Then moduli and phases stay in range and
    # |lambda|^2 ~ U[r_min^2, r_max^2] (uniform by area): its mean is (r_min^2 + r_max^2)/2 within 5 sigma.
    r_min, r_max, max_phase, size = 0.4, 0.5, math.pi / 10, 4096
    nu_log, theta_log = lru_ring_init(jax.random.PRNGKey(0), size, r_min, r_max, max_phase)
    lam = np.asarray(lru_lambda(nu_log, theta_log), np.complex128)
    modulus = np.abs(lam)
    assert np.all(modulus >= r_min - 1e-6) and np.all(modulus <= r_max + 1e-6)
    assert np.all(np.angle(lam) >= 0) and np.all(np.angle(lam) <= max_phase + 1e-6)
    spread = (r_max**2 - r_min**2) / math.sqrt(12 * size)
    assert abs(np.mean(modulus**2) - (r_min**2 + r_max**2) / 2) < 5 * spread


def test_s4d_lin_and_inv_init():
    # S4D-Lin in the module: A_n = -1/2 + i pi n for every channel; log Delta in [log dt_min, log dt_max].
    p = _short_params("s4d", S4D_SMALL)
    n = np.arange(3)
    np.testing.assert_allclose(p["A_imag"], np.broadcast_to(np.pi * n, (HIDDEN, 3)), rtol=1e-6)
    np.testing.assert_allclose(-np.exp(p["log_A_real"]), -0.5, rtol=1e-6)
    dt = np.exp(p["log_dt"])
    assert np.all(dt >= 1e-3 * (1 - 1e-6)) and np.all(dt <= 1e-1 * (1 + 1e-6))
    # S4D-Inv: Im(A_n) = (N / pi) (N / (2n + 1) - 1), N counting both members of each conjugate pair.
    n = np.arange(8)
    np.testing.assert_allclose(s4d_imag_init("inv", 16), 16 / np.pi * (16 / (2 * n + 1) - 1))
    np.testing.assert_allclose(s4d_imag_init("lin", 16), np.pi * n)


def test_hippo_matrices():
    size = 6
    # HiPPO-LegS written entry by entry (Gu et al. 2020).
    legs = np.zeros((size, size))
    for i in range(size):
        for k in range(size):
            if i > k:
                legs[i, k] = -math.sqrt(2 * i + 1) * math.sqrt(2 * k + 1)
            elif i == k:
                legs[i, k] = -(i + 1)
    np.testing.assert_allclose(hippo_legs(size), legs)
    # HiPPO-N = LegS + P P^T is -1/2 I plus a skew-symmetric matrix, hence normal with Re(eigenvalues) = -1/2.
    a_n = hippo_n(size)
    np.testing.assert_allclose(a_n + a_n.T, -np.eye(size), atol=1e-12)
    np.testing.assert_allclose(a_n @ a_n.T, a_n.T @ a_n, atol=1e-10)
    np.testing.assert_allclose(np.linalg.eigvals(a_n).real, -0.5, atol=1e-10)


@pytest.mark.parametrize("size,blocks", [(8, 1), (12, 3)])
def test_hippo_n_diagonalization(size, blocks):
    # Given the kept half of each conjugate pair (Lambda, V), Then V diag(Lambda) V^* plus its conjugate rebuilds
    # the block-diagonal HiPPO-N, V's columns are orthonormal, and every eigenvalue has real part -1/2.
    lam, V = hippo_n_diagonalized(size, blocks)
    assert lam.shape == (size // 2,) and V.shape == (size, size // 2)
    block = size // blocks
    expected = np.kron(np.eye(blocks), hippo_n(block))
    np.testing.assert_allclose(2 * np.real(V @ np.diag(lam) @ V.conj().T), expected, atol=1e-10)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(size // 2), atol=1e-10)
    np.testing.assert_allclose(2 * np.real(V @ V.conj().T), np.eye(size), atol=1e-10)
    np.testing.assert_allclose(lam.real, -0.5)


def test_s5_module_starts_from_hippo_n():
    p = _short_params("s5", S5_SMALL)
    lam, _ = hippo_n_diagonalized(8)
    np.testing.assert_allclose(p["Lambda_re"], -0.5)
    np.testing.assert_allclose(p["Lambda_im"], lam.imag, rtol=1e-6, atol=1e-6)
    dt = np.exp(p["log_step"])
    assert dt.shape == (4,) and np.all(dt >= 1e-3 * (1 - 1e-6)) and np.all(dt <= 1e-1 * (1 + 1e-6))


def test_s5_init_equals_the_full_hippo_system():
    # Given B~ = V^* B and C~ = C V, with one step size for all states and real B, C, the diagonal system with
    # conjugate symmetry is the full ZOH-discretised system x_t = expm(Delta A_N) x_{t-1} + B_bar u_t,
    # y_t = C x_t, read out as 2 Re(C~ x~_t).
    size, width, step = 8, 3, 0.05
    lam, V = hippo_n_diagonalized(size)
    rng = np.random.default_rng(0)
    B, C, u = rng.normal(size=(size, width)), rng.normal(size=(width, size)), rng.normal(size=(10, width))
    a_n = hippo_n(size)
    w, vecs = np.linalg.eig(step * a_n)
    a_bar = np.real(vecs @ np.diag(np.exp(w)) @ np.linalg.inv(vecs))  # expm(Delta A_N)
    b_bar = np.linalg.solve(a_n, (a_bar - np.eye(size)) @ B)
    lam_bar = np.exp(step * lam)
    b_tilde = ((lam_bar - 1) / lam)[:, None] * (V.conj().T @ B)
    x_full, x_diag = np.zeros(size), np.zeros(size // 2, complex)
    for t in range(10):
        x_full = a_bar @ x_full + b_bar @ u[t]
        x_diag = lam_bar * x_diag + b_tilde @ u[t]
        np.testing.assert_allclose(2 * np.real(C @ V @ x_diag), C @ x_full, atol=1e-10)


def test_selective_ssm_init():
    # S4D-Real A = -(n+1) for every channel, D = 1, initial Delta = softplus(dt_bias) in [dt_min, dt_max].
    p = _short_params("selective_ssm", SELECTIVE_SMALL)
    inner = 2 * HIDDEN
    np.testing.assert_allclose(-np.exp(p["A_log"]), -np.broadcast_to(np.arange(1, 4), (inner, 3)), rtol=1e-6)
    delta = _softplus(p["dt_bias"])
    assert np.all(delta >= 1e-3 * (1 - 1e-5)) and np.all(delta <= 1e-1 * (1 + 1e-5))
    np.testing.assert_array_equal(p["D"], 1.0)
    assert p["dt_proj_kernel"].shape == (1, inner)  # dt_rank = ceil(hidden_size / 16)


def test_rglru_init():
    # a^c with a = sigmoid(Lambda), c = 8 starts in [0.9, 0.999] (Griffin Sec. 2.4).
    a_c = _sigmoid(_short_params("rglru", {})["Lambda"]) ** 8
    assert np.all(a_c >= 0.9 - 1e-5) and np.all(a_c <= 0.999 + 1e-5)


def test_probe_has_the_state_shape():
    # Given a request for the "probes" collection, Then each layer's probe is [time, batch, *state] in the
    # state's dtype (complex for the complex-diagonal layers).
    x = _x(5)
    expected = {
        "lru": ((5, BATCH, HIDDEN), jnp.complex64),
        "s4d": ((5, BATCH, HIDDEN, 32), jnp.complex64),
        "s5": ((5, BATCH, HIDDEN // 2), jnp.complex64),
        "selective_ssm": ((5, BATCH, 2 * HIDDEN, 16), jnp.float32),
        "rglru": ((5, BATCH, HIDDEN), jnp.float32),
    }
    for name, (shape, dtype) in expected.items():
        model = build_mixer(name, HIDDEN)

        def probes(key, x, model=model):
            variables = {k: v for k, v in model.init(key, x).items() if k != PROBE_COLLECTION}
            return model.apply(variables, x, mutable=[PROBE_COLLECTION])[1][PROBE_COLLECTION]

        probe = jax.eval_shape(probes, jax.random.PRNGKey(0), x)["state"]
        assert probe.shape == shape and probe.dtype == dtype, name


# ----------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("s4d", {"a_init": "hippo"}, "a_init.*lin, inv"),
        ("s4d", {"state_size": 5}, "state_size"),
        ("s5", {"state_size": 6, "blocks": 2}, "even"),
        ("s5", {"state_size": 8, "blocks": 3}, "blocks"),
        ("lru", {"r_min": 0.9, "r_max": 0.8}, "r_min"),
        ("rglru", {"a_max": 1.0}, "a_max"),
        ("selective_ssm", {"dt_min": 0.0}, "dt_min"),
        ("lru", {"scan_mode": "fast"}, "sequential, associative, chunked"),
        ("selective_ssm", {"scan_mode": "fast"}, "sequential, associative, chunked"),
        ("s4d", {"chunk_size": 16}, "only scan_mode 'chunked' honours chunk_size"),
        ("rglru", {"truncation": 0}, "truncation=0: must be an int >= 1 or None"),
    ],
)
def test_bad_options_raise(name, options, match):
    model = build_mixer(name, HIDDEN, **options)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), _x(3))


@pytest.mark.parametrize("chunk_size", [1, 7, 8, 64])
def test_fused_selective_scan_equals_the_materialised_scan(chunk_size):
    # Given S6 inputs over T = 50 steps (7 does not divide 50: the last chunk is padded; 64 > T: one chunk) with
    # decays from 0.3 to 1 - 1e-4 and a readout weighting every output,
    from lrd.cells.ssm.selective import selective_scan, selective_scan_fused

    keys = jax.random.split(jax.random.PRNGKey(7), 6)
    batch, num_steps, inner, n = 3, 50, 5, 4
    u = jax.random.normal(keys[0], (batch, num_steps, inner))
    delta = jnp.exp(jax.random.uniform(keys[1], (batch, num_steps, inner), minval=-9.0, maxval=-1.0))
    A = -jnp.exp(jax.random.uniform(keys[2], (inner, n), minval=0.0, maxval=2.0))
    B, C = (jax.random.normal(k, (batch, num_steps, n)) for k in keys[3:5])
    readout = jax.random.normal(keys[5], (batch, num_steps, inner))

    def loss(scan, *args):
        return jnp.sum(readout * scan(*args))

    fused = functools.partial(selective_scan_fused, chunk_size=chunk_size)
    materialised = functools.partial(selective_scan, D=jnp.zeros(inner), mode="sequential")
    args = (u, delta, A, B, C)
    # When the fused scan (state [B, N, D], checkpointed chunks) and the sequential scan over the materialised
    # [T, B, D, N] arrays compute the outputs and the gradients w.r.t. every input,
    y_fused, y_ref = fused(*args), materialised(*args)
    grads_fused = jax.grad(functools.partial(loss, fused), argnums=(0, 1, 2, 3, 4))(*args)
    grads_ref = jax.grad(functools.partial(loss, materialised), argnums=(0, 1, 2, 3, 4))(*args)
    # Then they agree to float32 rounding.
    np.testing.assert_allclose(y_fused, y_ref, rtol=1e-5, atol=1e-6)
    for name, g, g_ref in zip("u delta A B C".split(), grads_fused, grads_ref, strict=True):
        assert _relative_error(g, g_ref) < 1e-5, name


def test_fused_selective_scan_refuses_a_chunk_below_one():
    from lrd.cells.ssm.selective import selective_scan_fused

    u = jnp.ones((1, 4, 2))
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        selective_scan_fused(u, u, -jnp.ones((2, 3)), jnp.ones((1, 4, 3)), jnp.ones((1, 4, 3)), chunk_size=0)
