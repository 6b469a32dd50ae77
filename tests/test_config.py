"""Configs: every malformed value fails at construction with a message naming the field; overrides; round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrd.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_diff,
    load_config,
    parse_override_args,
)

# (overrides applied to the default config, text the error message must contain)
MALFORMED = [
    (["model.name=transformerx"], "model.name='transformerx' is unknown; allowed values: attention"),
    (["model.name=lstm+nope"], "model.name='nope' is unknown"),
    (["model.hidden_size=0"], "model.hidden_size must be a positive int"),
    (["model.hidden_size=-8"], "model.hidden_size must be a positive int"),
    (["model.hidden_size=3.5"], "model.hidden_size must be an int"),
    (["model.num_layers=0"], "model.num_layers must be a positive int"),
    (["model.mode=deep"], "model.mode='deep' is unknown; allowed values: bare, block"),
    (["model.norm=batchnorm"], "model.norm='batchnorm' is unknown; allowed values: layernorm, rmsnorm"),
    (["model.truncation=0"], "model.truncation must be a positive int"),
    (["task.lag=100", "model.truncation=101"], "model.truncation=101 exceeds the sequence length 100"),
    (["model.scan_mode=fast"], "model.scan_mode='fast' is unknown; allowed values: sequential, associative"),
    (['model.options={"gru": {"x": 1}}'], "model.options names mixer 'gru'"),
    (["model.options.lstm.nonsense=1"], "model.options.lstm key='nonsense' is unknown"),
    (["task.name=adding2"], "task.name='adding2' is unknown; allowed values:"),
    (["task.lag=0"], "task.lag must be a positive int"),
    (["task.lag=-5"], "task.lag must be a positive int"),
    (["task.options.lag=5"], "task.options must not set 'lag'"),
    (["task.options.bogus=1"], "task ({name}): task 'adding' has no option(s) ['bogus']"),
    (["task.lag=10", "task.options.min_lag=50"], "task (adding):"),
    (["optim.name=sgd"], "optim.name='sgd' is unknown; allowed values: adam, adamw"),
    (["optim.learning_rate=0"], "optim.learning_rate must be a finite number > 0"),
    (["optim.learning_rate=nan"], "optim.learning_rate must be a finite number > 0"),
    (["optim.clip_norm=-1"], "optim.clip_norm must be a finite number > 0"),
    (["optim.weight_decay=0.1"], "optim.weight_decay=0.1 needs optim.name='adamw'"),
    (["optim.batch_size=0"], "optim.batch_size must be a positive int"),
    (["run.steps=0"], "run.steps must be a positive int"),
    (["run.num_seeds=0"], "run.num_seeds must be a positive int"),
    (["run.seed=-1"], "run.seed must be an int >= 0"),
    (["run.steps=50", "run.eval_every=100"], "run.eval_every=100 must be <= run.steps=50"),
    (["run.checkpoint_every=150"], "run.checkpoint_every=150 must be a multiple of run.eval_every=100"),
    (["run.keep_checkpoints=0"], "run.keep_checkpoints must be a positive int"),
    (["run.max_skip_fraction=1.5"], "run.max_skip_fraction must be in (0, 1]"),
    (["run.early_stop=maybe"], "run.early_stop must be true or false"),
    (["search.sweep=50,20"], "search.sweep must be strictly increasing"),
    (["search.sweep=0,10"], "search.sweep entries must be a positive int"),
    (["search.solve_fraction=0"], "search.solve_fraction must be in (0, 1]"),
    (["search.patience=0"], "search.patience must be a positive int"),
    (["modle.hidden_size=3"], "must start with a section; allowed values: model, task, optim, run, search"),
    (["model.hiden_size=3"], "model.hiden_size is not a field; allowed values: hidden_size"),
    (["model.hidden_size"], "must look like section.field=value"),
]


@pytest.mark.parametrize("overrides, message", MALFORMED, ids=[" ".join(o) for o, _ in MALFORMED])
def test_malformed_config_is_rejected_naming_the_field(overrides, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides(ExperimentConfig(), overrides)
    assert message.replace("{name}", "adding") in str(info.value)


def test_defaults_are_valid_and_round_trip_through_json():
    config = ExperimentConfig()
    data = json.loads(json.dumps(config.to_dict()))
    assert ExperimentConfig.from_dict(data) == config
    assert data["model"]["name"] == "lstm" and data["search"]["sweep"][0] == 10


def test_overrides_parse_by_field_type():
    config = apply_overrides(
        ExperimentConfig(),
        [
            "model.name=rnn+attention",
            "model.hidden_size=128",
            "model.truncation=none",
            "model.options.rnn.spectral_radius=0.9",
            "task.lag=200",
            "task.options.variant=hochreiter",
            "optim.learning_rate=3e-4",
            "run.early_stop=false",
            "run.num_seeds=8",
            "search.sweep=[10, 30, 90]",
        ],
    )
    assert config.model.mixers == ("rnn", "attention")
    assert config.model.hidden_size == 128 and config.model.truncation is None
    assert config.model.options == {"rnn": {"spectral_radius": 0.9}}
    assert config.task.lag == 200 and config.task.options == {"variant": "hochreiter"}
    assert config.optim.learning_rate == pytest.approx(3e-4)
    assert config.run.early_stop is False and config.run.num_seeds == 8
    assert config.search.sweep == (10, 30, 90)
    task = config.task.build()
    assert task.seq_len == 200 and task.variant == "hochreiter"


def test_from_dict_rejects_unknown_sections_and_fields():
    with pytest.raises(ConfigError, match="unknown config section"):
        ExperimentConfig.from_dict({"modle": {}})
    with pytest.raises(ConfigError, match="run.stpes is not a field"):
        ExperimentConfig.from_dict({"run": {"stpes": 3}})


def test_command_line_overrides():
    assert parse_override_args(["--model.hidden_size", "32", "--task.lag=7"]) == [
        "model.hidden_size=32",
        "task.lag=7",
    ]
    with pytest.raises(ConfigError, match="needs a value"):
        parse_override_args(["--model.hidden_size"])
    with pytest.raises(ConfigError, match="unrecognised argument"):
        parse_override_args(["--hidden_size", "3"])


def test_config_diff_names_the_changed_leaves():
    old = ExperimentConfig().to_dict()
    new = apply_overrides(ExperimentConfig(), ["task.lag=30", "model.options.lstm.forget_bias=2.0"]).to_dict()
    assert config_diff(old, new) == [
        'model.options.lstm: "<absent>" -> {"forget_bias": 2.0}',
        "task.lag: null -> 30",
    ]
    assert config_diff(old, old) == []


PRESETS = sorted(p.stem for p in (Path(__file__).parent.parent / "experiments" / "configs").glob("*.py"))


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_document_themselves(name):
    path = Path(__file__).parent.parent / "experiments" / "configs" / f"{name}.py"
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    doc = path.read_text().split('"""')[1]
    for needed in ("lrd ", "CPU", "Expected"):
        assert needed in doc, f"{name}: the docstring must give the command, runtime and expected result"
    assert load_config(name) == config  # by preset name too


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text("X = 1\n")
    with pytest.raises(ConfigError, match="must define get_config"):
        load_config(bad)
