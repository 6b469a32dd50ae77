"""SequenceModel: bare and block settings, hybrid patterns, token and real inputs, option forwarding, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.config import ConfigError
from lrd.models import build_model, count_params
from lrd.registry import mixer_names
from lrd.tasks.adding import Adding
from lrd.tasks.copy_memory import CopyMemory

ADDING = Adding(lag=10)  # real inputs [batch, 10, 2] -> [batch, 10, 1]
COPY = CopyMemory(lag=3, copy_length=2, num_symbols=4)  # tokens [batch, 7] -> [batch, 7, 6]
HIDDEN = 8


def _init_apply(model, task, batch_size: int = 2):
    batch = task.sample(jax.random.PRNGKey(0), batch_size)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), batch.inputs)["params"]
    return params, batch, jax.jit(model.apply)({"params": params}, batch.inputs)


def _param_shapes(model, task):
    """Parameter shapes without compiling anything (``jax.eval_shape`` of ``init``)."""
    inputs = task.sample(jax.random.PRNGKey(0), 2).inputs
    return jax.eval_shape(model.init, jax.random.PRNGKey(1), inputs)["params"]


def _require(*names: str) -> None:
    missing = sorted(set(names) - set(mixer_names()))
    if missing:
        pytest.skip(f"mixer(s) {missing} not registered yet")


@pytest.mark.parametrize("task", [ADDING, COPY], ids=["real", "tokens"])
@pytest.mark.parametrize("setting", ["bare", "block"])
def test_output_shape_for_real_and_token_inputs(task, setting):
    model = build_model("lstm", task, hidden_size=HIDDEN, setting=setting)
    _, batch, outputs = _init_apply(model, task, batch_size=3)
    assert outputs.shape == (3, task.seq_len, task.output_dim)
    assert outputs.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(outputs)))
    assert np.isfinite(float(task.loss(outputs, batch)))


def test_bare_setting_is_cells_plus_linear_readout():
    # Bare LSTM on adding: the cell sees the raw 2 input channels; only a readout follows.
    model = build_model("lstm", ADDING, hidden_size=HIDDEN, setting="bare")
    params, _, _ = _init_apply(model, ADDING)
    assert set(params) == {"layer0_lstm", "readout"}
    assert params["layer0_lstm"]["input_kernel"].shape == (2, 4 * HIDDEN)
    expected = 4 * HIDDEN * (2 + HIDDEN + 1) + (HIDDEN * 1 + 1)  # W, U, b of the LSTM; readout W, b
    assert count_params(params) == expected


def test_bare_tokens_are_one_hot():
    model = build_model("rnn", COPY, hidden_size=HIDDEN, setting="bare")
    params, batch, outputs = _init_apply(model, COPY)
    assert params["layer0_rnn"]["input_kernel"].shape == (COPY.vocab_size, HIDDEN)
    one_hot = jax.nn.one_hot(batch.inputs, COPY.vocab_size)
    real_model = build_model("rnn", ADDING, hidden_size=HIDDEN, setting="bare").clone(
        output_dim=COPY.output_dim
    )
    np.testing.assert_allclose(real_model.apply({"params": params}, one_hot), outputs, rtol=1e-6, atol=1e-6)


def test_block_setting_layout():
    model = build_model("lstm+attention", COPY, hidden_size=HIDDEN, setting="block", num_layers=2)
    params = _param_shapes(model, COPY)
    assert set(params) == {
        "embed",
        "layer0_norm_mixer",
        "layer0_lstm",
        "layer0_norm_mlp",
        "layer0_mlp",
        "layer1_norm_mixer",
        "layer1_attention",
        "layer1_norm_mlp",
        "layer1_mlp",
        "final_norm",
        "readout",
    }
    assert params["layer1_mlp"]["up"]["kernel"].shape == (HIDDEN, 4 * HIDDEN)
    assert params["layer1_attention"]["query_kernel"].shape[0] == HIDDEN  # mixers read d_model
    no_mlp = build_model("lstm", ADDING, hidden_size=HIDDEN, setting="block", mlp_ratio=0, norm="rmsnorm")
    params, _, outputs = _init_apply(no_mlp, ADDING)
    assert set(params) == {"encoder", "layer0_norm_mixer", "layer0_lstm", "final_norm", "readout"}
    assert "scale" in params["final_norm"] and "bias" not in params["final_norm"]  # RMSNorm
    assert bool(jnp.all(jnp.isfinite(outputs)))


def _mixer_layers(params) -> list[str]:
    return [k for k in params if k.startswith("layer") and "_norm" not in k and not k.endswith("_mlp")]


@pytest.mark.parametrize(
    "pattern,num_layers,expected",
    [
        (("lstm", "attention"), 4, ["lstm", "attention", "lstm", "attention"]),
        (("rglru", "rglru", "attention"), 6, ["rglru", "rglru", "attention"] * 2),
        ("gru + linear_attention + lstm", 2, ["gru", "linear_attention"]),
    ],
)
def test_patterns_cycle_over_layers(pattern, num_layers, expected):
    # Given a pattern of names, Then layer i runs pattern[i % len(pattern)] (checked on shapes only).
    _require(*expected)
    model = build_model(pattern, ADDING, hidden_size=HIDDEN, setting="block", num_layers=num_layers)
    assert sorted(_mixer_layers(_param_shapes(model, ADDING))) == sorted(
        f"layer{i}_{name}" for i, name in enumerate(expected)
    )


@pytest.mark.parametrize(
    "pattern,num_layers,task",
    [
        ("lstm+attention", 2, ADDING),
        (("lstm", "attention"), 3, COPY),
        (["rglru", "rglru", "attention"], 3, COPY),
        ("gru+linear_attention", 2, ADDING),
    ],
    ids=[
        "lstm+attention-real",
        "lstm,attention-x3-tokens",
        "rglru,rglru,attention-tokens",
        "gru+linear-real",
    ],
)
def test_hybrid_block_models_run_and_are_causal(pattern, num_layers, task):
    names = pattern.split("+") if isinstance(pattern, str) else pattern
    _require(*names)
    model = build_model(pattern, task, hidden_size=HIDDEN, setting="block", num_layers=num_layers)
    batch = task.sample(jax.random.PRNGKey(0), 2)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), batch.inputs)["params"]
    assert len(_mixer_layers(params)) == num_layers
    # Changing the last input step must leave every earlier output unchanged: run both in one batch.
    if task.input_kind == "tokens":
        changed = batch.inputs.at[:, -1].set((batch.inputs[:, -1] + 1) % task.vocab_size)
    else:
        changed = batch.inputs.at[:, -1].add(1.0)
    both = jax.jit(model.apply)({"params": params}, jnp.concatenate([batch.inputs, changed]))
    outputs, new_outputs = both[:2], both[2:]
    assert outputs.shape == (2, task.seq_len, task.output_dim)
    assert bool(jnp.all(jnp.isfinite(both)))
    np.testing.assert_allclose(new_outputs[:, :-1], outputs[:, :-1], rtol=0, atol=1e-6)
    assert float(jnp.abs(new_outputs[:, -1] - outputs[:, -1]).max()) > 0


def test_bare_stack_of_different_cells():
    model = build_model(("gru", "attention"), ADDING, hidden_size=HIDDEN, setting="bare", num_layers=2)
    params, _, outputs = _init_apply(model, ADDING)
    assert params["layer1_attention"]["query_kernel"].shape[0] == HIDDEN  # layer 1 reads layer 0's state
    assert outputs.shape == (2, ADDING.seq_len, 1)


def test_truncation_reaches_the_mixers_and_is_refused_where_it_cannot_apply():
    # truncation=1 cuts every gradient path across time in the LSTM. Model-wide, it is refused for a pattern with
    # attention (which has no recurrence to truncate); per mixer, it truncates the LSTM only.
    task = Adding(lag=6)
    batch = task.sample(jax.random.PRNGKey(0), 2)

    def last_output_grad(model):
        params = jax.jit(model.init)(jax.random.PRNGKey(1), batch.inputs)["params"]
        grad = jax.jit(jax.grad(lambda x: jnp.sum(model.apply({"params": params}, x)[:, -1])))(batch.inputs)
        return jnp.abs(grad[:, :-1]).max()

    assert float(last_output_grad(build_model("lstm", task, hidden_size=HIDDEN, truncation=1))) == 0.0
    assert float(last_output_grad(build_model("lstm", task, hidden_size=HIDDEN))) > 0.0
    with pytest.raises(ConfigError, match="model.truncation=1 cannot be applied to mixer 'attention'"):
        build_model("lstm+attention", task, hidden_size=HIDDEN, setting="block", num_layers=2, truncation=1)
    mixed = build_model(
        "lstm+attention",
        task,
        hidden_size=HIDDEN,
        setting="block",
        num_layers=2,
        mixer_options={"lstm": {"truncation": 1}},
    )
    assert mixed.mixer_options == {"lstm": {"truncation": 1}, "attention": {}}
    assert float(last_output_grad(mixed)) > 0.0  # attention still sees the past


@pytest.mark.parametrize("name", ["lru", "mingru", "linear_attention", "mlstm", "s4d"])
def test_truncation_of_modern_layers_is_applied_not_ignored(name):
    # Given truncation=2 on a layer whose algorithm honours it (the sequential scan), Then the gradient of the
    # last output reaches the last 2 inputs only; without truncation it reaches further back.
    task = Adding(lag=8)
    batch = task.sample(jax.random.PRNGKey(0), 2)
    options = {name: {"scan_mode": "sequential"}}

    def grad_by_step(truncation):
        model = build_model(name, task, hidden_size=HIDDEN, truncation=truncation, mixer_options=options)
        params = jax.jit(model.init)(jax.random.PRNGKey(1), batch.inputs)["params"]
        loss = lambda x: jnp.sum(model.apply({"params": params}, x)[:, -1])  # noqa: E731
        return jnp.abs(jax.jit(jax.grad(loss))(batch.inputs)).sum(axis=(0, 2))

    truncated, full = grad_by_step(2), grad_by_step(None)
    np.testing.assert_array_equal(truncated[:-2], 0.0)
    assert float(truncated[-2:].min()) > 0 and float(full[:-2].max()) > 0


def test_mixer_options_are_forwarded_and_validated():
    model = build_model(
        "attention",
        ADDING,
        hidden_size=HIDDEN,
        mixer_options={"attention": {"num_heads": 2, "positions": "none"}},
    )
    assert _param_shapes(model, ADDING)["layer0_attention"]["query_kernel"].shape == (2, 2, HIDDEN // 2)
    # A bad option fails when the model is built, before anything is traced or compiled.
    with pytest.raises(ConfigError, match="model.options.attention key='heads' is unknown"):
        build_model("attention", ADDING, hidden_size=HIDDEN, mixer_options={"attention": {"heads": 2}})


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mixers": "lstm", "setting": "deep"}, "model.setting"),
        ({"mixers": "lstm", "norm": "batchnorm"}, "model.norm"),
        ({"mixers": "lstm", "num_layers": 0}, "model.num_layers"),
        ({"mixers": "lstm", "hidden_size": 0}, "model.hidden_size"),
        ({"mixers": "lstm+transformerxl"}, "transformerxl"),
        ({"mixers": ()}, "model.name"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    mixers = kwargs.pop("mixers")
    with pytest.raises(ValueError, match=field) as err:
        build_model(mixers, ADDING, **kwargs)
    if field == "model.setting":
        assert "bare" in str(err.value) and "block" in str(err.value)  # the allowed values are listed
    if field == "transformerxl":
        assert "lstm" in str(err.value)


def test_auto_scan_mode_resolves_per_backend_and_is_recorded(tmp_path):
    # Given scan_mode="auto" (the default), Then every mixer runs the mode its AUTO_SCAN_MODES names for this backend
    # (the tests run on CPU), deterministically, and a run's summary records the modes actually used.
    from lrd.config import ExperimentConfig, apply_overrides
    from lrd.registry import build_mixer, get_mixer
    from lrd.runner import run_experiment

    assert jax.default_backend() == "cpu"
    for name in mixer_names():
        cls = get_mixer(name).cls
        if cls.AUTO_SCAN_MODES:
            mode = build_mixer(name, HIDDEN).effective_scan_mode()
            assert mode == cls.AUTO_SCAN_MODES["cpu"] and mode in cls.SCAN_MODES, name
    expected = {
        "s4d": "fft",
        "attention": "blocked",
    }  # two mixers suffice for the recording (4 took 95 s in CI)
    config = apply_overrides(
        ExperimentConfig(),
        ["model.name=s4d+attention", "model.setting=block", "model.num_layers=2"]
        + ["model.hidden_size=8", "task.lag=6", "run.steps=2", "run.eval_every=2", "optim.batch_size=2"]
        + [f"run.workdir={tmp_path}", "run.tensorboard=false"],
    )
    assert run_experiment(config, progress=False)["scan_modes"] == expected
