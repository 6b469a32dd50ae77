"""experiments/reproduce.py on tiny budgets: a well-formed result file, a second run reads the finished run back
instead of training it again, and bad input exits 2 before anything is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lrd.config import apply_overrides, load_config
from lrd.runner import finished_summary

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import reproduce  # noqa: E402


def test_a_reproduction_writes_its_file_and_resumes_without_retraining(tmp_path, capsys):
    out = tmp_path / "copy.json"
    argv = ["arjovsky2016_copy", "--only", "copy_rnn_100", "--smoke", "--workdir", str(tmp_path / "runs")]
    argv += ["--out", str(out)]
    assert reproduce.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["reproduction"] == "arjovsky2016_copy" and result["environment"]["device"]
    (run,) = result["runs"]
    assert run["label"] == "copy_rnn_100" and run["model"] == "rnn" and run["hidden_size"] == 80
    assert run["lag"] == 100 and run["seq_len"] == 120 and run["optimizer"] == "rmsprop"
    assert run["command"].startswith("lrd run --config arjovsky2016:model=rnn,task=copy --workdir ")
    assert "--model.hidden_size 80 --task.lag 100" in run["command"]
    assert len(run["members"]) == 2 and run["solved_members"] == 0  # 4 steps solve nothing
    for member in run["members"]:
        assert member["steps_to_solve"] is None and member["sequences_to_solve"] is None
        assert set(member["final_eval"]) >= {"loss", "recall_accuracy"}

    # The file lists every finished run of the reproduction, whichever command finished it; a workdir holding
    # another config (here: more steps) is not that run.
    config = apply_overrides(
        load_config("arjovsky2016:model=rnn"),
        [
            "model.hidden_size=80",
            "task.lag=100",
            *reproduce.SMOKE,
            f"run.workdir={tmp_path / 'runs' / 'arjovsky2016_copy' / 'copy_rnn_100'}",
        ],
    )
    assert finished_summary(config)["steps_run"] == 4
    assert finished_summary(config.replace(run={"workdir": config.run.workdir + "/"}))["steps_run"] == 4
    assert finished_summary(config.replace(run={"steps": 8})) is None

    metrics = tmp_path / "runs" / "arjovsky2016_copy" / "copy_rnn_100" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    assert reproduce.main(argv) == 0  # again: the finished run is read back
    assert metrics.stat().st_mtime_ns == stamp
    assert json.loads(out.read_text())["runs"] == result["runs"]

    # --table: the file as markdown, one row per finished run; not another reproduction's file
    with pytest.raises(SystemExit) as info:
        reproduce.main(["hochreiter1997_adding", "--out", str(out), "--table"])
    assert (
        info.value.code == 2
        and "holds 'arjovsky2016_copy', not 'hochreiter1997_adding'" in capsys.readouterr().err
    )
    assert reproduce.main(["arjovsky2016_copy", "--out", str(out), "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (row,) = [line for line in lines if line.startswith("| copy_rnn_100 ")]
    (member,) = json.loads(out.read_text())["runs"][0]["members"][:1]
    assert row.startswith("| copy_rnn_100 | rnn (80) | 100 | 0.173 | 0/2 | 0.001/0: -; accuracy ")
    assert f"loss {member['final_eval']['loss']:.3g}" in row
    assert lines[-1].startswith("* paper (copy_rnn_100): LSTM and tanh RNN at the memoryless baseline")


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_the_arjovsky_widths_match_parameter_counts_within_2x(task):
    import jax

    from lrd.models import count_params
    from lrd.runner import build_experiment

    counts = {}
    for model, width in reproduce.ARJOVSKY_HIDDEN[task].items():
        config = apply_overrides(
            load_config(f"arjovsky2016:model={model},task={task}"), [f"model.hidden_size={width}"]
        )
        data, net, _ = build_experiment(config)
        inputs = data.sample(jax.random.PRNGKey(0), 1).inputs
        counts[model] = count_params(
            jax.eval_shape(lambda net=net, inputs=inputs: net.init(jax.random.PRNGKey(0), inputs))
        )
    assert max(counts.values()) <= 2 * min(counts.values()), counts


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["arjovsky2016_cpy"], "name 'arjovsky2016_cpy' is unknown; allowed values: hochreiter1997"),
        (["arjovsky2016_copy", "--table", "--out", "missing.json"], "'missing.json' does not exist"),
        (["arjovsky2016_copy", "--table", "--only", "copy_rnn"], "--table prints a whole result file"),
        (["arjovsky2016_copy", "--only", "zzz"], "--only 'zzz' matches no run; the runs: copy_lstm_100"),
        (
            ["arjovsky2016_copy", "--out", "/nonexistent/r.json"],
            "--out '/nonexistent/r.json': its folder does not",
        ),
    ],
)
def test_bad_input_exits_2_before_compute(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--out", str(tmp_path / "out.json"), "--workdir", str(tmp_path / "runs"), *argv])
    assert info.value.code == 2 and expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_arjovsky_preset_names_a_bad_task():
    from lrd.config import ConfigError

    with pytest.raises(ConfigError, match="task='cpy' is unknown; allowed values: copy, adding"):
        load_config("arjovsky2016:task=cpy")
