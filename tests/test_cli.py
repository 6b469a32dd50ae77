"""`lrd` command line: one config path for every command, list, a short train run, clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lrd.cli import BENCH_SHORTHANDS, CONFIG_SHORTHANDS, config_from_args, main, parse
from lrd.config import ExperimentConfig
from lrd.errors import ConfigError


def test_list_prints_models_and_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lstm", "gru", "rnn", "adding", "copy"):
        assert f"  {name} " in out


def test_train_smoke_prints_summary(capsys):
    code = main(
        [
            "train",
            "--model",
            "lstm",
            "--task",
            "adding",
            "--lag",
            "10",
            "--steps",
            "6",
            "--eval-every",
            "3",
            "--hidden-size",
            "8",
            "--batch-size",
            "4",
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["steps_run"] == 6 and summary["task"]["task"] == "adding" and summary["task"]["lag"] == 10


def _run_cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "lrd.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--model", "lstmm"], "model.name='lstmm' is unknown; allowed values:"),
        (["--task", "adder"], "task.name='adder' is unknown; allowed values:"),
        (["--lag", "-3"], "task.lag must be a positive int"),
        (["--steps", "0"], "run.steps must be a positive int"),
        (["--learning-rate", "inf"], "optim.learning_rate must be a finite number > 0"),
        (
            ["--model", "lru", "--truncation", "9", "--lag", "8"],
            "model.truncation=9 exceeds the sequence length 8",
        ),
        (["--model", "attention", "--truncation", "4"], "model.truncation=4 cannot be applied to mixer"),
        (["--hidden_size", "4"], "unrecognised argument '--hidden_size'"),
    ],
)
def test_bad_input_exits_nonzero_with_a_clear_message(args, expected):
    result = _run_cli("train", *args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_task_options_reach_the_task(capsys):
    code = main(
        ["train", "--task", "adding", "--lag", "12", "--task-option", "variant=hochreiter", "--steps", "2"]
        + ["--eval-every", "2", "--hidden-size", "4", "--batch-size", "2", "--json"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["task"]["variant"] == "hochreiter"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--task-option", "nonsense"], "KEY=VALUE"),
        (["--task-option", "colour=3"], "no option(s) ['colour']"),
    ],
)
def test_bad_task_options_exit_nonzero(args, expected):
    result = _run_cli("train", *args)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_missing_mnist_data_is_a_clear_error(tmp_path):
    env_dir = str(tmp_path / "no_data_here")
    result = _run_cli("train", "--task", "smnist", "--task-option", f"data_dir={json.dumps(env_dir)}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mnist" in result.stderr.lower()


# ----------------------------------------------------------------------------------------------------------------
# One config path


def _config(command: str, *argv: str) -> ExperimentConfig:
    args, extra = parse([command, *argv])
    return config_from_args(args, extra)


# (shorthand flag, a valid value); every flag of `lrd train` is listed, which the next test checks.
TRAIN_FLAG_VALUES = {
    "--model": "gru",
    "--hidden-size": "16",
    "--num-layers": "2",
    "--setting": "block",
    "--truncation": "7",
    "--task": "copy",
    "--lag": "30",
    "--task-option": "num_symbols=4",
    "--batch-size": "8",
    "--learning-rate": "0.003",
    "--clip-norm": "0.5",
    "--steps": "300",
    "--num-seeds": "3",
    "--seed": "5",
    "--eval-every": "50",
    "--no-early-stop": None,
    "--workdir": "runs/x",
}


def test_every_train_flag_is_listed_in_the_table_test():
    assert set(TRAIN_FLAG_VALUES) == {shorthand.flag for shorthand in CONFIG_SHORTHANDS}


@pytest.mark.parametrize("shorthand", CONFIG_SHORTHANDS, ids=lambda sh: sh.flag)
@pytest.mark.parametrize("command", ["train", "run", "lag-search"])
def test_each_flag_is_exactly_its_dotted_override(command, shorthand):
    # Given a shorthand flag and its dotted form, Then both build the same config, which differs from the
    # defaults in that field and nowhere else.
    value = TRAIN_FLAG_VALUES[shorthand.flag]
    flag_argv = [shorthand.flag] if value is None else [shorthand.flag, value]
    if shorthand.constant is not None:
        dotted_argv = [f"--{shorthand.key}", shorthand.constant]
    elif shorthand.entries:
        key, _, raw = value.partition("=")
        dotted_argv = [f"--{shorthand.key}.{key}", raw]
    else:
        dotted_argv = [f"--{shorthand.key}", value]
    # copy needs lag >= the truncation; keep the other fields at their defaults otherwise
    context = ["--task.name", "copy", "--task.lag", "30"] if shorthand.key.startswith("task.options") else []
    by_flag = _config(command, *context, *flag_argv)
    by_dotted = _config(command, *context, *dotted_argv)
    assert by_flag == by_dotted
    section, field = shorthand.key.split(".")[:2]
    base = _config(command, *context)
    assert getattr(by_flag, section) != getattr(base, section)
    changed = [
        name
        for name in ("model", "task", "optim", "run", "search", "bench")
        if getattr(by_flag, name) != getattr(base, name)
    ]
    assert changed == [section]


@pytest.mark.parametrize("shorthand", BENCH_SHORTHANDS, ids=lambda sh: sh.flag)
def test_each_bench_flag_is_exactly_its_dotted_override(shorthand):
    values = {"--models": "lstm,gru", "--d-model": "8", "--seq-len": "64,128", "--batch-size": "4"}
    values |= {"--repeats": "3", "--warmup": "1", "--peer": "gru", "--seed": "2"}
    value = values.get(shorthand.flag)
    flag_argv = [shorthand.flag] if value is None else [shorthand.flag, value]
    dotted_argv = [f"--{shorthand.key}", shorthand.constant if value is None else value]
    from lrd.bench import default_config

    def build(*argv):
        args, extra = parse(["bench", *argv])
        return config_from_args(args, extra, base=default_config)

    assert build(*flag_argv) == build(*dotted_argv) != build()
    assert build("--models", "all").bench.models == ()


@pytest.mark.parametrize(
    "argv",
    [
        ["--model.hidden_size", "0"],
        ["--task.lag", "-1"],
        ["--model.name", "lru", "--model.options.lru.chunk_size", "8"],
        ["--model.name", "mlstm", "--model.truncation", "3"],
        ["--optim.weight_decay", "0.1"],
        ["--model.options.lstm.nonsense", "1"],
        ["--lag", "5", "--task.lag", "6"],
    ],
)
def test_train_and_run_reject_a_config_with_the_same_message(argv, tmp_path):
    messages = {}
    for command in ("train", "run", "lag-search"):
        with pytest.raises(ConfigError) as info:
            _config(command, "--workdir", str(tmp_path / command), *argv)
        messages[command] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    result = _run_cli("train", *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"lrd train: error: {messages['train']}"


def test_train_accepts_every_dotted_override(capsys):
    # What `lrd train` could not set before: norm, mlp_ratio, scan_mode, mixer options, weight decay.
    argv = [
        "train",
        "--model",
        "lru",
        "--setting",
        "block",
        "--model.norm",
        "rmsnorm",
        "--model.mlp_ratio",
        "2",
    ]
    argv += ["--model.scan_mode", "sequential", "--model.options.lru.r_min", "0.5", "--optim.name", "adamw"]
    argv += ["--optim.weight_decay", "0.01", "--lag", "6", "--steps", "2", "--hidden-size", "4", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["steps_run"] == 2


def test_train_with_a_workdir_is_a_resumable_run(tmp_path, capsys):
    argv = ["train", "--lag", "6", "--steps", "4", "--eval-every", "2", "--hidden-size", "4"]
    argv += ["--batch-size", "2", "--workdir", str(tmp_path / "w")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_run"] == 4
    assert main(argv) == 0  # again: the finished run is returned, not retrained
    assert f"results in {tmp_path / 'w'}" in capsys.readouterr().out


def test_list_shows_the_options_of_every_mixer(capsys):
    from lrd.registry import mixer_defaults, mixer_names

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "options: truncation=None, unroll=1, remat=False, forget_bias=1.0" in out  # lstm
    assert "scan_mode: sequential | associative (default) | chunked" in out  # the linear-scan layers
    assert "scan_mode: sequential | parallel | chunked (default)" in out  # mlstm
    assert "chunk_size=None [scan_mode chunked]" in out
    assert "truncation=None [scan_mode sequential|associative]" in out  # linear attention
    blocks, current = {}, None
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # "  NAME  family  description"
            current = line.split()[0]
            blocks[current] = ""
        elif current is not None:
            blocks[current] += line
    for name in mixer_names():
        block = blocks[name]
        for option in mixer_defaults(name):
            assert option in block, f"{name}: option {option} not listed"
