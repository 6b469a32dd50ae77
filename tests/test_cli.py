"""`lrd` command line: list, a short train run, and clear errors with non-zero exit for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lrd.cli import main


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
        (["--model", "lstmm"], "unknown model name 'lstmm'; allowed values:"),
        (["--task", "adder"], "unknown task name 'adder'; allowed values:"),
        (["--lag", "-3"], "lag"),
        (["--steps", "0"], "steps"),
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
