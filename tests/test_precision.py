"""Mixed precision: ``dtype`` (operand dtype of the projection matmuls) and ``param_dtype`` (storage of the weight
matrices) on every mixer and on the model.

The contract (:mod:`lrd.cells.base`): whatever the two fields, products accumulate in float32 and come out float32,
and the state, gates, decays and the recurrence's own parameters stay float32. With bfloat16 operands (8-bit
significand, relative rounding 2^-9 per operand) a mixer's output differs from float32 by a few 1e-3 relative,
up to 1.9e-2 measured (mLSTM, whose exponential gates amplify rounding of q, k); the bound below is 3e-2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.config import ConfigError, ModelConfig
from lrd.models import build_model
from lrd.registry import build_mixer, mixer_names
from lrd.tasks.adding import Adding
from lrd.train import held_out_batch, init_states, make_chunk_fn, make_eval_fn, make_optimizer

BF16_RELATIVE_TOL = 3e-2

# The recurrence's own parameters: they must stay float32 whatever param_dtype (a decay of 0.999 is 1.0 in bf16).
RECURRENCE_PARAMS = {
    "lru": ("nu_log", "theta_log"),
    "s4d": ("log_dt", "log_A_real", "A_imag"),
    "s5": ("Lambda_re", "Lambda_im", "log_step"),
    "rglru": ("Lambda",),
    "selective_ssm": ("A_log", "dt_bias"),
    "indrnn": ("recurrent_weight",),
    "unicornn": ("w", "c"),
    "exprnn": ("skew",),
    "scornn": ("skew",),
    "mamba2": ("A_log", "dt_bias"),
    "linoss": ("A_diag", "step_logit"),
    "urnn": ("thetas", "reflections"),
}


def _leaves(params):
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


@pytest.mark.parametrize("name", mixer_names())
def test_bfloat16_mixer_keeps_its_float32_contract(name):
    # Given the mixer in float32 and in bfloat16 (operands and stored weights), each computation compiled once
    # (two programs per mixer: eager dispatch of the same work took 3-5x longer),
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 40, 12))
    full = build_mixer(name, 16)
    half = build_mixer(name, 16, dtype="bfloat16", param_dtype="bfloat16")
    mixed_precision = build_mixer(name, 16, dtype="bfloat16")
    params, params_bf16 = jax.jit(lambda key: (full.init(key, x), half.init(key, x)))(jax.random.PRNGKey(1))

    @jax.jit
    def outputs(params, params_bf16):
        grads = jax.grad(lambda p: jnp.sum(half.apply(p, x) ** 2))(params_bf16)
        return half.apply(params_bf16, x), grads, full.apply(params, x), mixed_precision.apply(params, x)

    out, grads, reference, mixed = outputs(params, params_bf16)
    # Then the weight matrices are stored in bfloat16, the recurrence's parameters and biases in float32,
    leaves = _leaves(params_bf16["params"])
    weights = {k for k, v in leaves.items() if v.dtype == jnp.bfloat16}
    assert weights and all("bias" not in k for k in weights), weights
    for own in RECURRENCE_PARAMS.get(name, ()):
        assert leaves[f"['{own}']"].dtype == jnp.float32, own
    # the output (and each gradient, in its parameter's dtype) is finite, the output float32,
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    for key, grad in _leaves(grads["params"]).items():
        assert grad.dtype == leaves[key].dtype and bool(jnp.all(jnp.isfinite(grad))), key
    # and with the same float32 weights, bfloat16 operands change the output only by bfloat16 rounding.
    reference, mixed = np.asarray(reference), np.asarray(mixed)
    error = np.max(np.abs(mixed - reference)) / np.max(np.abs(reference))
    assert 0 < error < BF16_RELATIVE_TOL, f"{name}: relative error {error:.2e}"


def _eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                yield from _eqns(inner)


def test_lstm_projects_in_bfloat16_and_carries_a_float32_state():
    # The input projection is a bf16 x bf16 -> f32 product (what a GPU runs on tensor cores); the scan carries (c, h)
    # in float32 and the recurrent product U h is a float32 one.
    x = jnp.ones((2, 7, 5))
    lstm = build_mixer("lstm", 8, dtype="bfloat16")
    params = lstm.init(jax.random.PRNGKey(0), x)
    jaxpr = jax.make_jaxpr(lambda p: lstm.apply(p, x))(params).jaxpr
    dots = [e for e in _eqns(jaxpr) if e.primitive.name == "dot_general"]
    kinds = {
        (str(e.invars[0].aval.dtype), str(e.invars[1].aval.dtype), str(e.outvars[0].aval.dtype)) for e in dots
    }
    assert ("bfloat16", "bfloat16", "float32") in kinds and ("float32", "float32", "float32") in kinds
    (scan,) = [e for e in _eqns(jaxpr) if e.primitive.name == "scan"]
    carry = scan.params["jaxpr"].in_avals[scan.params["num_consts"] : scan.params["num_consts"] + 2]
    assert [str(a.dtype) for a in carry] == ["float32", "float32"]


def test_model_dtype_reaches_every_mixer_encoder_and_mlp_and_bad_values_are_config_errors():
    config = ModelConfig(
        name="lstm+rglru", setting="block", num_layers=2, dtype="bfloat16", param_dtype="bfloat16"
    )
    assert {o["dtype"] for o in config.mixer_options().values()} == {"bfloat16"}
    model = config.build(Adding(lag=10))
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 10, 2)))["params"]
    assert params["encoder"]["kernel"].dtype == jnp.bfloat16
    assert params["layer0_mlp"]["up"]["kernel"].dtype == jnp.bfloat16
    assert params["readout"]["kernel"].dtype == jnp.float32  # the readout and the loss stay float32
    assert model.apply({"params": params}, jnp.ones((1, 10, 2))).dtype == jnp.float32
    with pytest.raises(ConfigError, match="model.dtype='float8'.*allowed values: float32, bfloat16, float16"):
        ModelConfig(dtype="float8")
    with pytest.raises(ConfigError, match="model.param_dtype='float16'.*allowed values: float32, bfloat16"):
        ModelConfig(param_dtype="float16")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,param_dtype",
    [("lstm", "bfloat16"), ("rglru", "float32")],  # a classic cell, all bf16; a linear layer, mixed precision
)
def test_bfloat16_model_learns_adding_at_lag_20(name, param_dtype):
    # The settings and target of test_mixers_learn (adding, lag 20, width 16, below half the chance loss within 400
    # steps), with bfloat16 operands, and weights stored in float32 (mixed precision) or bfloat16.
    sys.path.insert(0, str(Path(__file__).parent))
    from test_mixers_learn import (
        BATCH,
        EVAL_BATCH,
        EVAL_EVERY,
        HIDDEN,
        LEARNING_RATE,
        MAX_STEPS,
        TARGET,
        TASK,
    )

    setting = "bare" if name == "lstm" else "block"
    model = build_model(
        name, TASK, hidden_size=HIDDEN, setting=setting, dtype="bfloat16", param_dtype=param_dtype
    )
    optimizer = make_optimizer(LEARNING_RATE, clip_norm=1.0)
    states = init_states(model, TASK, optimizer, seed=0, num_seeds=1)
    run_chunk = make_chunk_fn(model, TASK, optimizer, BATCH, EVAL_EVERY)
    evaluate = make_eval_fn(model, TASK)
    eval_batch = held_out_batch(TASK, EVAL_BATCH, eval_seed=1_000_003)
    best, steps = float("inf"), 0
    while steps < MAX_STEPS and best >= TARGET:
        states, _ = run_chunk(states)
        steps += EVAL_EVERY
        best = min(best, float(evaluate(states.params, eval_batch)["loss"][0]) / TASK.chance_loss)
    assert best < TARGET, f"{name} bf16 (params {param_dtype}): {best:.3f} x chance after {steps} steps"


@pytest.mark.parametrize(
    "equation,x_shape,kernel_shape",
    [
        (None, (3, 5, 4), (4, 6)),  # batch, time, d @ d, f: one 2-D GEMM
        (None, (4,), (4, 6)),  # a single vector
        (None, (2, 3, 4), (2, 4, 6)),  # a batched kernel: plain matmul semantics
        ("btd,dhk->bthk", (3, 5, 4), (4, 2, 3)),  # attention's q, k, v
        ("bthk,hko->bto", (3, 5, 2, 3), (2, 3, 4)),  # attention's output: two contracted axes
        ("btd,dk->bk", (3, 5, 4), (4, 6)),  # not a trailing contraction (t is summed too): einsum
    ],
)
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_project_equals_the_einsum_it_names(equation, x_shape, kernel_shape, dtype):
    # Given operands, an equation (None: matmul) and an operand dtype,
    from lrd.cells.base import project

    x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
    kernel = jax.random.normal(jax.random.PRNGKey(1), kernel_shape)
    cast = (lambda a: a) if dtype is None else (lambda a: a.astype(dtype).astype(jnp.float32))
    if equation is None:
        expected = jnp.matmul(cast(x), cast(kernel), precision="highest")
    else:
        expected = jnp.einsum(equation, cast(x), cast(kernel), precision="highest")
    # When project computes it (a flattened 2-D GEMM where the equation allows), Then the values and the float32
    # result type are the einsum's, and the gradients are too.
    y = project(x, kernel, dtype, equation)
    assert y.dtype == jnp.float32 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    if dtype is None:
        cotangent = jax.random.normal(jax.random.PRNGKey(2), y.shape)
        grads = jax.vjp(lambda a, b: project(a, b, None, equation), x, kernel)[1](cotangent)
        if equation is None:
            reference = jax.vjp(jnp.matmul, x, kernel)[1](cotangent)
        else:
            reference = jax.vjp(lambda a, b: jnp.einsum(equation, a, b), x, kernel)[1](cotangent)
        for g, g_ref in zip(grads, reference, strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)


def test_trailing_contraction_recognises_only_plain_products():
    from lrd.cells.base import _trailing_contraction, project

    assert _trailing_contraction("btd,dhk->bthk") == 1 and _trailing_contraction("bthk, hko -> bto") == 2
    # Not a product over trailing axes: another axis summed, a diagonal (repeated letter), an implicit output,
    # an ellipsis, a reordered output: each is left to einsum.
    for equation in ("btd,dk->bk", "bdd,ddk->bk", "btd,dk", "...d,dk->...k", "btd,dk->tbk"):
        assert _trailing_contraction(equation) is None, equation
    x, kernel = jnp.ones((5, 4)), jnp.ones((4, 2))
    np.testing.assert_allclose(project(jnp.ones((5, 3, 3)), jnp.ones((3, 3, 2)), None, "bdd,ddk->bk"), 3.0)
    np.testing.assert_allclose(project(x, kernel, None, "bd,dk"), 4.0)
    # Contracted axes whose sizes differ (even with equal products) are an error, not a silent reshape.
    with pytest.raises(ValueError, match="do not match"):
        project(jnp.ones((5, 2, 3)), jnp.ones((3, 2, 4)), None, "bhk,hko->bo")
