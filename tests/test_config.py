"""Configs: every malformed value fails at construction with a message naming the field; overrides; round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrd.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    check_unique,
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
    (["model.setting=deep"], "model.setting='deep' is unknown; allowed values: bare, block"),
    (["model.norm=batchnorm"], "model.norm='batchnorm' is unknown; allowed values: layernorm, rmsnorm"),
    (["model.truncation=0"], "model.truncation must be a positive int"),
    (["task.lag=100", "model.truncation=101"], "model.truncation=101 exceeds the sequence length 100"),
    (
        ["model.name=lru", "model.scan_mode=fast"],
        "model.scan_mode='fast': unknown value; allowed values: auto, sequential, associative, chunked, kernel, fft (mixer 'lru')",
    ),
    (["model.scan_mode=associative"], "model.scan_mode='associative' cannot be applied to mixer 'lstm'"),
    (
        ["model.name=attention", "model.truncation=5"],
        "model.truncation=5 cannot be applied to mixer 'attention'",
    ),
    (
        ["model.name=lstm+attention", "model.truncation=5"],
        "mixer 'attention', which has no truncation option; mixers that accept truncation: ",
    ),
    (
        ["model.name=mlstm", "model.truncation=5"],
        "model.truncation=5: only scan_mode 'sequential' honours truncation, and this mixer runs scan_mode='chunked'",
    ),
    (
        ["model.name=lru", "model.options.lru.chunk_size=8"],
        "model.options.lru.chunk_size=8: only scan_mode 'chunked'",
    ),
    (
        ["model.name=lru", "model.options.lru.r_min=0.9999"],
        "model.options.lru.r_min=0.9999: need r_min < r_max",
    ),
    (
        ["model.name=attention", "model.hidden_size=6"],
        "model.options.attention.num_heads=4: must divide hidden_size=6",
    ),
    (
        ["model.name=mingru", "model.options.mingru.scan_mode=log_space", "model.truncation=5"],
        "model.truncation=5: only scan_mode 'sequential' or 'associative' or 'chunked' or 'kernel' honours truncation",
    ),
    (["model.name=lstm", "model.options.lstm.unroll=0"], "model.options.lstm.unroll=0: must be an int >= 1"),
    (
        ["task.lag=10", "model.name=lru", "model.options.lru.truncation=11"],
        "model.options.lru.truncation=11 exceeds the sequence length 10",
    ),
    (['model.options={"gru": {"x": 1}}'], "model.options names mixer 'gru'"),
    (["model.options.lstm.nonsense=1"], "model.options.lstm key='nonsense' is unknown"),
    (["task.name=adding2"], "task.name='adding2' is unknown; allowed values:"),
    (["task.lag=0"], "task.lag must be a positive int"),
    (["task.lag=-5"], "task.lag must be a positive int"),
    (["task.options.lag=5"], "task.options must not set 'lag'"),
    (["task.options.bogus=1"], "task ({name}): task 'adding' has no option(s) ['bogus']"),
    (["task.lag=10", "task.options.min_lag=50"], "task (adding):"),
    (["optim.name=sgd"], "optim.name='sgd' is unknown; allowed values: adam, adamw, rmsprop"),
    (["optim.learning_rate=0"], "optim.learning_rate must be a finite number > 0"),
    (["optim.learning_rate=nan"], "optim.learning_rate must be a finite number > 0"),
    (["optim.learning_rate=1e-3,-1"], "optim.learning_rate entries must be a finite number > 0"),
    (["optim.learning_rate=1e-3,x"], "optim.learning_rate must be a comma-separated list of numbers"),
    (["optim.learning_rate=1e-3,1e-3"], "optim.learning_rate lists a rate twice"),
    (["optim.learning_rate=[]"], "optim.learning_rate must be a number > 0 or a non-empty list of them"),
    (["optim.clip_norm=-1"], "optim.clip_norm must be a finite number > 0"),
    (["optim.weight_decay=0.1"], "optim.weight_decay=0.1 needs optim.name='adamw'"),
    (["optim.batch_size=0"], "optim.batch_size must be a positive int"),
    (["run.steps=0"], "run.steps must be a positive int"),
    (["run.num_seeds=0"], "run.num_seeds must be a positive int"),
    (["run.seed=-1"], "run.seed must be an int >= 0"),
    (["run.keep_checkpoints=0"], "run.keep_checkpoints must be a positive int"),
    (["run.max_skip_fraction=1.5"], "run.max_skip_fraction must be in (0, 1]"),
    (["run.early_stop=maybe"], "run.early_stop must be true or false"),
    (["search.sweep=50,20"], "search.sweep must be strictly increasing"),
    (["search.sweep=0,10"], "search.sweep entries must be a positive int"),
    (["search.solve_fraction=0"], "search.solve_fraction must be in (0, 1]"),
    (["search.patience=0"], "search.patience must be a positive int"),
    (["bench.models=lstm,nope"], "bench.models='nope' is unknown; allowed values: attention"),
    (["bench.peer=nope"], "bench.peer='nope' is unknown"),
    (["bench.repeats=0"], "bench.repeats must be a positive int"),
    (
        ["modle.hidden_size=3"],
        "must start with a section; allowed values: model, task, optim, run, search, bench, diagnostics",
    ),
    (["model.hiden_size=3"], "model.hiden_size is not a field; allowed values: dtype, hidden_size"),
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
    assert task.seq_len == 220 and task.variant == "hochreiter"  # lengths in [T, T + T/10]


def test_from_dict_rejects_unknown_sections_and_fields():
    with pytest.raises(ConfigError, match="unknown config section"):
        ExperimentConfig.from_dict({"modle": {}})
    with pytest.raises(ConfigError, match="run.stpes is not a field"):
        ExperimentConfig.from_dict({"run": {"stpes": 3}})


def test_later_overrides_win_but_a_command_line_gives_each_field_once():
    assert apply_overrides(ExperimentConfig(), ["task.lag=5", "task.lag=6"]).task.lag == 6
    check_unique(["task.lag=5", "task.options.lag_min=3", "model.hidden_size=4"])
    with pytest.raises(ConfigError, match="task.lag is given twice; give each field once"):
        check_unique(["task.lag=5", "model.hidden_size=4", "task.lag=6"])


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


@pytest.mark.parametrize("name", PRESETS)
def test_one_preset_per_task_serves_every_model(name):
    # big_vision style: FILE:ARG passes ARG to get_config; the model is the argument, the rest is the task's.
    default = load_config(name)
    gru = load_config(f"{name}:model=gru")
    assert gru.model.name == "gru" and load_config(f"{name}:gru") == gru
    assert gru.replace(model={"name": default.model.name}) == default
    with pytest.raises(ConfigError, match="model.name='nope' is unknown"):
        load_config(f"{name}:model=nope")
    with pytest.raises(ConfigError, match="config argument 'colour' is unknown; allowed values: model"):
        load_config(f"{name}:colour=red")


def test_old_preset_names_point_to_the_new_form():
    with pytest.raises(
        ConfigError,
        match=r"allowed values: a .py file or a preset \(adding, arjovsky2016, copy, hochreiter1997_adding, "
        r"hochreiter1997_temporal_order, selective_copy, temporal_order\)",
    ):
        load_config("adding_lstm")


def test_a_config_json_of_an_older_run_still_loads():
    # model.mode was renamed model.setting; config.json files written before still load (and mean the same).
    data = ExperimentConfig().to_dict()
    data["model"]["mode"] = data["model"].pop("setting")
    del data["bench"]
    assert ExperimentConfig.from_dict(data) == ExperimentConfig()


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text("X = 1\n")
    with pytest.raises(ConfigError, match="must define get_config"):
        load_config(bad)


def test_a_learning_rate_grid_parses_round_trips_and_a_one_rate_grid_is_the_rate():
    grid = apply_overrides(ExperimentConfig(), ["optim.learning_rate=3e-4,1e-3,3e-3"])
    assert grid.optim.learning_rate == (3e-4, 1e-3, 3e-3) == grid.optim.learning_rates
    assert ExperimentConfig.from_dict(grid.to_dict()) == grid
    one = apply_overrides(ExperimentConfig(), ["optim.learning_rate=[0.002]"])
    assert one.optim.learning_rate == 0.002 and one.to_dict()["optim"]["learning_rate"] == 0.002
    assert apply_overrides(ExperimentConfig(), ["optim.learning_rate=5e-4"]).optim.learning_rates == (5e-4,)
