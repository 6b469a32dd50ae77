"""Mamba-2 (SSD): both forms against a float64 loop over the paper's equations, the whole layer against a float64
re-implementation from its parameters, the two forms against each other in values and gradients at long T (a
length that is no multiple of the chunk, decays from near 1 to near 0), causality of the chunked form, the memory
of the sequential form, the initialisation and the option checks."""

from __future__ import annotations

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.base import PROBE_COLLECTION
from lrd.cells.ssm.mamba2 import segment_sums, ssd_chunked, ssd_recurrent
from lrd.errors import OptionError
from lrd.registry import build_mixer

BATCH, HEADS, GROUPS, HEAD_DIM, STATE = 2, 4, 2, 3, 5


def _inputs(num_steps, seed=0, dt_range=(1e-3, 1.0), A_range=(1e-2, 16.0)):
    """SSD inputs with log-uniform ``dt`` and ``-A``, so per-step decays ``exp(dt A)`` range from near 1 to near
    0. Drawn with NumPy, so making them compiles nothing."""
    rng = np.random.default_rng(seed)

    def log_uniform(low_high, shape):
        return np.exp(rng.uniform(*np.log(low_high), size=shape))

    arrays = (
        rng.standard_normal((BATCH, num_steps, HEADS, HEAD_DIM)),  # x
        log_uniform(dt_range, (BATCH, num_steps, HEADS)),  # dt
        -log_uniform(A_range, (HEADS,)),  # A
        rng.standard_normal((BATCH, num_steps, GROUPS, STATE)),  # B
        rng.standard_normal((BATCH, num_steps, GROUPS, STATE)),  # C
        rng.standard_normal((HEADS,)),  # D
    )
    return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


def reference(x, dt, A, B, C, D):
    """S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T, y_t = S_t C_t + D x_t per head (group h // (H/G)), float64."""
    x, dt, A, B, C, D = (np.asarray(a, np.float64) for a in (x, dt, A, B, C, D))
    batch, num_steps, heads, head_dim = x.shape
    per_group = heads // B.shape[2]
    y = np.zeros(x.shape)
    for b in range(batch):
        for h in range(heads):
            g = h // per_group
            state = np.zeros((head_dim, B.shape[3]))
            for t in range(num_steps):
                state = np.exp(dt[b, t, h] * A[h]) * state + dt[b, t, h] * np.outer(x[b, t, h], B[b, t, g])
                y[b, t, h] = state @ C[b, t, g] + D[h] * x[b, t, h]
    return y


def test_both_forms_match_the_float64_recurrence():
    inputs = _inputs(50)  # chunk 16: 3 full chunks and a padded one
    expected = reference(*inputs)
    both = jax.jit(lambda *a: [form(*a, chunk_size=16) for form in (ssd_recurrent, ssd_chunked)])
    for got in both(*inputs):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.max(np.abs(expected)))


def test_chunked_equals_sequential_in_values_and_gradients_at_long_t(num_steps=300, chunk_size=64):
    # 300 = 4 chunks of 64 + 44; per-step decays from 1 - 2e-5 to 4e-4 across heads and steps (A per head -0.02,
    # -0.9, -2.4, -7.9), so a chunk's cumulative log decay reaches -85 while its slowest head barely decays.
    inputs = _inputs(num_steps, seed=1)
    weights = jnp.asarray(
        np.random.default_rng(9).standard_normal((BATCH, num_steps, HEADS, HEAD_DIM)), jnp.float32
    )

    def loss(form, *args):
        out = form(*args, chunk_size=chunk_size)
        return jnp.sum(weights * out), out

    @jax.jit
    def both(*args):
        grad = lambda form: jax.grad(loss, argnums=tuple(range(1, 7)), has_aux=True)(form, *args)  # noqa: E731
        return grad(ssd_recurrent), grad(ssd_chunked)

    (seq_grads, seq_out), (chunk_grads, chunk_out) = both(*inputs)
    np.testing.assert_allclose(chunk_out, seq_out, atol=2e-5 * float(jnp.max(jnp.abs(seq_out))))
    for name, g_seq, g_chunk in zip("x dt A B C D".split(), seq_grads, chunk_grads, strict=True):
        scale = float(jnp.max(jnp.abs(g_seq)))
        assert scale > 0 and bool(jnp.all(jnp.isfinite(g_chunk))), name
        np.testing.assert_allclose(g_chunk, g_seq, atol=1e-4 * scale, err_msg=f"d loss / d {name}")


def test_segment_sums_are_exact_sums_even_far_from_zero():
    # Given log decays whose cumulative sum reaches -1.6e4, Then seg(t, s) = sum_{s<r<=t} l_r holds to float32
    # rounding of the *segment*, not of the cumulative sum (where 1 ulp is ~1e-3).
    log_decay = -np.random.default_rng(0).uniform(0.0, 500.0, size=64).astype(np.float32)
    log_decay[40:44] = -1e-4
    seg = np.asarray(jax.jit(segment_sums)(log_decay))
    l64 = log_decay.astype(np.float64)
    expected = np.array([[l64[s + 1 : t + 1].sum() if t >= s else 0.0 for s in range(64)] for t in range(64)])
    assert np.cumsum(l64)[-1] < -1e4
    np.testing.assert_allclose(seg, expected, rtol=1e-5, atol=1e-9)
    assert abs(seg[43, 40] - 3 * -1e-4) < 1e-9


def test_segment_sums_gradient_is_the_transpose_of_the_masked_sum():
    # seg is linear in the log decays, seg[t, s] = sum_r M[t, s, r] l_r with M = [s < r <= t]; its gradient, taken
    # through the compensated cumulative sum, must be M^T g for any cotangent g, here with the same extreme decays.
    rng = np.random.default_rng(1)
    log_decay = -rng.uniform(0.0, 500.0, size=(3, 64)).astype(np.float32)
    cotangent = rng.standard_normal((3, 64, 64)).astype(np.float32)
    _, vjp = jax.vjp(segment_sums, jnp.asarray(log_decay))
    (got,) = jax.jit(vjp)(jnp.asarray(cotangent))
    t, s, r = np.meshgrid(np.arange(64), np.arange(64), np.arange(64), indexing="ij")
    mask = ((s < r) & (r <= t)).astype(np.float64)
    expected = np.einsum("tsr,bts->br", mask, cotangent.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _layer_reference(params, x, hidden, head_dim, groups, state):
    """The Mamba-2 layer written out in float64 from its parameters (module docstring of lrd.cells.ssm.mamba2)."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    x = np.asarray(x, np.float64)
    batch, num_steps, _ = x.shape
    inner = 2 * hidden
    heads = inner // head_dim
    silu = lambda v: v / (1.0 + np.exp(-v))  # noqa: E731
    proj = x @ p["in_proj_kernel"]
    z, xbc, dt_raw = proj[..., :inner], proj[..., inner : 2 * inner + 2 * groups * state], proj[..., -heads:]
    width = p["conv_kernel"].shape[0]
    padded = np.concatenate([np.zeros((batch, width - 1, xbc.shape[-1])), xbc], axis=1)
    conv = p["conv_bias"] + sum(p["conv_kernel"][k] * padded[:, k : k + num_steps] for k in range(width))
    xbc = silu(conv)
    u = xbc[..., :inner].reshape(batch, num_steps, heads, head_dim)
    B = xbc[..., inner : inner + groups * state].reshape(batch, num_steps, groups, state)
    C = xbc[..., inner + groups * state :].reshape(batch, num_steps, groups, state)
    dt = np.log1p(np.exp(dt_raw + p["dt_bias"]))
    y = reference(u, dt, -np.exp(p["A_log"]), B, C, p["D"]).reshape(batch, num_steps, inner)
    gated = (y * silu(z)).reshape(batch, num_steps, groups, inner // groups)
    normed = gated / np.sqrt(np.mean(gated**2, axis=-1, keepdims=True) + 1e-5)
    return (normed.reshape(batch, num_steps, inner) * p["norm_scale"]) @ p["out_proj_kernel"]


HIDDEN, LAYER_HEAD_DIM, LAYER_GROUPS, LAYER_STATE = 8, 4, 2, 6  # d_inner 16: 4 heads in 2 groups
PERTURBED_STEPS = (5, 16, 20)  # chunk_size 8: inside a chunk, a chunk's first step, inside another


@functools.cache
def _layer_case():
    """One compiled program: init the layer, move every parameter off its init (D = 1, scale 1 would hide
    mistakes), and apply it sequentially, chunked, with the probe, and chunked to copies of ``x`` perturbed at
    ``PERTURBED_STEPS``."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 37, 5)), jnp.float32)
    options = dict(head_dim=LAYER_HEAD_DIM, num_groups=LAYER_GROUPS, state_size=LAYER_STATE, chunk_size=8)
    sequential = build_mixer("mamba2", HIDDEN, scan_mode="sequential", **options)
    chunked = build_mixer("mamba2", HIDDEN, scan_mode="chunked", **options)
    x_perturbed = jnp.stack([x.at[:, t].add(1.0) for t in PERTURBED_STEPS])

    @jax.jit
    def run(key):
        params = sequential.init(key, x)
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
        params = tree.unflatten(
            [v + 0.3 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys, strict=True)]
        )
        # asking for the probe runs the recurrence, also under scan_mode="chunked"
        probed, probes = chunked.apply(params, x, mutable=[PROBE_COLLECTION])
        perturbed = jax.vmap(lambda xs: chunked.apply(params, xs))(x_perturbed)
        return params, sequential.apply(params, x), chunked.apply(params, x), probed, probes, perturbed

    return x, *run(jax.random.PRNGKey(1))


def test_layer_matches_a_float64_reimplementation_in_both_forms_and_with_the_probe():
    x, params, seq_out, chunk_out, probed_out, probes, _ = _layer_case()
    expected = _layer_reference(params, x, HIDDEN, LAYER_HEAD_DIM, LAYER_GROUPS, LAYER_STATE)
    probe_shape = (37, 2, 4, LAYER_HEAD_DIM, LAYER_STATE)  # [T, B, H, P, N]
    assert jax.tree_util.tree_leaves(probes)[0].shape == probe_shape
    for got in (seq_out, chunk_out, probed_out):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.max(np.abs(expected)))


def test_chunked_form_is_causal_within_and_across_chunks():
    # Given x perturbed at a step, Then no earlier output of the chunked form moves, and later ones do.
    _, _, _, chunk_out, _, _, perturbed = _layer_case()
    chunk_out, perturbed = np.asarray(chunk_out), np.asarray(perturbed)
    for t, y in zip(PERTURBED_STEPS, perturbed, strict=True):
        np.testing.assert_allclose(y[:, :t], chunk_out[:, :t], rtol=0, atol=1e-6)
        assert np.max(np.abs(y[:, t:] - chunk_out[:, t:])) > 1e-4


def test_sequential_form_never_forms_all_states():
    # Given T = 256 steps, checkpoint segments of 16, Then no array of the forward or backward program is larger
    # than the largest input: all states [T, B, H, P, N] are never formed, only one state per segment and one
    # segment's states.
    num_steps, segment = 256, 16
    inputs = _inputs(num_steps)
    grad = jax.grad(lambda *a: jnp.sum(ssd_recurrent(*a, chunk_size=segment) ** 2), argnums=tuple(range(6)))
    all_states = num_steps * BATCH * HEADS * HEAD_DIM * STATE

    def sizes(jaxpr):
        for eqn in jaxpr.eqns:
            yield from (int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", param)
                if hasattr(inner, "eqns"):
                    yield from sizes(inner)

    largest = max(sizes(jax.make_jaxpr(grad)(*inputs).jaxpr))
    largest_input = max(a.size for a in inputs)  # x: [T, B, H, P], all states / N
    assert largest <= largest_input < all_states, (largest, largest_input, all_states)


def test_initialisation_follows_the_paper():
    model = build_mixer("mamba2", 64)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((1, 2, 64)))["params"]
    heads = 2 * 64 // 16
    A = -np.exp(np.asarray(params["A_log"]))
    dt = np.asarray(jax.nn.softplus(params["dt_bias"]))
    assert A.shape == dt.shape == (heads,)
    assert np.all((A <= -1.0) & (A >= -16.0))
    assert np.all((dt >= 1e-3 * (1 - 1e-5)) & (dt <= 1e-1 * (1 + 1e-5)))
    np.testing.assert_array_equal(params["D"], np.ones(heads))
    np.testing.assert_array_equal(params["norm_scale"], np.ones(128))
    assert params["in_proj_kernel"].shape == (64, 2 * 128 + 2 * 64 + heads)
    assert params["conv_kernel"].shape == (4, 128 + 2 * 64)


@pytest.mark.parametrize(
    "options,field",
    [
        ({"head_dim": 5}, "head_dim"),  # d_inner = 16
        ({"num_groups": 3}, "num_groups"),  # 1 head
        ({"A_init_min": 0.0}, "A_init_min"),
        ({"scan_mode": "associative"}, "scan_mode"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(OptionError, match=field):
        build_mixer("mamba2", 8, **options).check()


VMAPPED_CHUNKED_GRADIENT = """
import jax, jax.numpy as jnp
from lrd.registry import build_mixer
x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 100, 16))  # [members, batch, time, features]
out = {}
for mode in ("chunked", "sequential"):
    model = build_mixer("mamba2", 16, head_dim=4, state_size=8, scan_mode=mode, chunk_size=50)
    params = jax.vmap(lambda xm: model.init(jax.random.PRNGKey(1), xm[:, :8]))(x)
    loss = lambda p, xm: jnp.mean(model.apply(p, xm) ** 2)
    out[mode] = jax.tree_util.tree_leaves(jax.jit(jax.vmap(jax.value_and_grad(loss)))(params, x))
print(max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(out["chunked"], out["sequential"])))
"""


def test_the_chunked_gradient_vmapped_over_members_equals_the_recurrence_and_does_not_crash():
    # Every lag search vmaps the training step over members (seeds x rates), and the CPU default is the chunked
    # form. Its earlier diagonal block (`scores` broadcast over a size-1 group axis) had a gradient that crashed
    # XLA:CPU (jax 0.10.2, segmentation fault) under vmap with one group, several heads, two chunks or more: the
    # case below (8 heads of 4, 1 group, 2 chunks, 3 members), in a child process so that a crash fails this test only.
    model = build_mixer("mamba2", 16)
    assert jax.default_backend() != "cpu" or model.effective_scan_mode() == "chunked"
    child = subprocess.run(
        [sys.executable, "-c", VMAPPED_CHUNKED_GRADIENT], capture_output=True, text=True, timeout=600
    )
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert float(child.stdout.split()[-1]) < 1e-5  # values and every gradient, relative to the largest entry
