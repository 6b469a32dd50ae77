"""The max-lag search: protocol logic on a fake learner, then a real tiny search end to end (and its resume)."""

from __future__ import annotations

import json

import pytest

import lrd.lag_search as lag_search_module
from lrd.cli import main
from lrd.config import ExperimentConfig, apply_overrides
from lrd.lag_search import lag_search, next_bisection_lag


def test_next_bisection_lag_is_the_geometric_midpoint_strictly_inside():
    assert next_bisection_lag(100, 200, 0.1) == 141
    assert next_bisection_lag(10, 12, 0.1) == 11
    assert next_bisection_lag(10, 11, 0.1) is None  # adjacent
    assert next_bisection_lag(100, 109, 0.1) is None  # within 10 %
    assert next_bisection_lag(1, 1000, 0.0001) == 32


def fake_trials(monkeypatch, threshold: int, calls: list[int]):
    """Replace training with a learner that solves every lag <= threshold (2 of 2 seeds) and nothing above."""

    def fake(config, lag, root, phase, progress):
        calls.append(lag)
        ok = lag <= threshold
        summary = {
            "status": "completed",
            "steps_to_solve": [100, 200] if ok else [None, None],
            "final_eval": {"loss": [0.0, 0.0] if ok else [0.2, 0.2]},
            "steps_run": 200,
        }
        return lag_search_module._trial_record(lag, phase, summary, config.search.solve_fraction)

    monkeypatch.setattr(lag_search_module, "_run_trial", fake)


@pytest.mark.parametrize("threshold", [37, 10, 999, 5])
def test_protocol_brackets_the_threshold(tmp_path, monkeypatch, threshold):
    calls: list[int] = []
    fake_trials(monkeypatch, threshold, calls)
    config = apply_overrides(
        ExperimentConfig(),
        [f"run.workdir={tmp_path}", "search.sweep=10,20,50,100,200,500,1000", "search.resolution=0.05"],
    )
    result = lag_search(config, progress=False, log=lambda *_: None)
    sweep_part = [lag for lag in calls if lag in config.search.sweep]
    if threshold < 10:
        assert result["max_learnable_lag"] is None and calls == [10]
        return
    lo, hi = result["max_learnable_lag"], result["smallest_unlearnable_lag"]
    assert lo <= threshold < hi
    assert hi - lo <= max(1, 0.05 * lo) or len(calls) - len(sweep_part) == config.search.max_bisections
    # the sweep stops at the first unlearnable lag (patience 1)
    above = [lag for lag in config.search.sweep if lag > threshold]
    assert sweep_part == [lag for lag in config.search.sweep if lag <= threshold] + above[:1]
    written = json.loads((tmp_path / "lag_search.json").read_text())
    assert written["max_learnable_lag"] == lo and written["finished"] is True
    assert [t["lag"] for t in written["trials"]] == sorted(calls)
    assert (tmp_path / "lag_search.png").stat().st_size > 1000


def test_all_learnable_reports_no_upper_bound(tmp_path, monkeypatch):
    calls: list[int] = []
    fake_trials(monkeypatch, 10**6, calls)
    config = apply_overrides(ExperimentConfig(), [f"run.workdir={tmp_path}", "search.sweep=10,20"])
    result = lag_search(config, progress=False, log=lambda *_: None)
    assert (
        calls == [10, 20] and result["max_learnable_lag"] == 20 and result["smallest_unlearnable_lag"] is None
    )


def test_tiny_real_search_writes_well_formed_results_and_resumes(tmp_path, capsys):
    workdir = tmp_path / "search"
    args = [
        "lag-search",
        "--model",
        "rnn",
        "--task",
        "adding",
        "--workdir",
        str(workdir),
        "--model.hidden_size=8",
        "--optim.batch_size=8",
        "--run.steps=20",
        "--run.eval_every=10",
        "--run.eval_batch_size=32",
        "--run.checkpoint_every=10",
        "--run.num_seeds=2",
        "--run.tensorboard=false",
        "--search.sweep=4,8",
        "--search.max_bisections=1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "max learnable lag of rnn on adding" in out
    result = json.loads((workdir / "lag_search.json").read_text())
    assert result["finished"] and result["model"] == "rnn" and result["task"] == "adding"
    assert result["num_seeds"] == 2 and result["steps_per_lag"] == 20
    assert [t["lag"] for t in result["trials"]][:1] == [4]
    for trial in result["trials"]:
        assert set(trial) >= {"lag", "phase", "fraction_solved", "learnable", "seeds", "steps_run", "workdir"}
        assert len(trial["seeds"]) == 2
        for seed in trial["seeds"]:
            assert isinstance(seed["solved"], bool) and "final_loss" in seed
            assert (seed["steps_to_solve"] is None) != seed["solved"]
        assert trial["fraction_solved"] == sum(s["solved"] for s in trial["seeds"]) / 2
        assert trial["learnable"] == (trial["fraction_solved"] >= 0.5)
        assert (workdir / f"lag_{trial['lag']:06d}" / "summary.json").exists()
    learnable = [t["lag"] for t in result["trials"] if t["learnable"]]
    assert result["max_learnable_lag"] == max(learnable, default=None)
    assert (workdir / "lag_search.png").exists()

    # Restarted with the same command: every finished lag is read back, none retrained.
    mtimes = {p: p.stat().st_mtime_ns for p in workdir.glob("lag_*/metrics.jsonl")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in workdir.glob("lag_*/metrics.jsonl")} == mtimes
    again = json.loads((workdir / "lag_search.json").read_text())
    assert [t["lag"] for t in again["trials"]] == [t["lag"] for t in result["trials"]]
    assert again["max_learnable_lag"] == result["max_learnable_lag"]

    # A different protocol in the same workdir is refused, naming the change.
    assert main([*args, "--search.solve_fraction=1.0"]) == 2
    assert "search.solve_fraction: 0.5 -> 1.0" in capsys.readouterr().err


def test_a_sweep_lag_the_config_rejects_fails_before_anything_is_written(tmp_path, capsys):
    # truncation 15 is longer than the sweep's first lag (10): refused before the search's config.json is written.
    workdir = tmp_path / "search"
    argv = ["lag-search", "--model", "lstm", "--truncation", "15", "--lag", "20", "--search.sweep", "10,20"]
    assert main([*argv, "--workdir", str(workdir)]) == 2
    assert (
        "search.sweep lag 10: model.truncation=15 exceeds the sequence length 10" in capsys.readouterr().err
    )
    assert not workdir.exists()


def test_with_a_learning_rate_grid_a_lag_counts_at_its_best_rate_and_keeps_every_rate():
    summary = {
        "status": "completed",
        "learning_rates": [1e-3, 1e-2, 1e-4],
        # rate-major: 3 rates x 2 seeds; 1e-3 solves one seed, 1e-2 both, 1e-4 none
        "steps_to_solve": [300, None, 200, 400, None, None],
        "final_eval": {"loss": [0.0, 0.1, 0.0, 0.0, 0.2, 0.2]},
        "steps_run": 400,
    }
    record = lag_search_module._trial_record(50, "sweep", summary, solve_fraction=1.0)
    assert record["learnable"] and record["fraction_solved"] == 1.0 and record["best_learning_rate"] == 1e-2
    assert [s["steps_to_solve"] for s in record["seeds"]] == [200, 400]
    assert [r["fraction_solved"] for r in record["per_rate"]] == [0.5, 1.0, 0.0]
    assert record["per_rate"][0]["seeds"][1] == {
        "seed": 1,
        "solved": False,
        "steps_to_solve": None,
        "final_loss": 0.1,
    }
    alone = lag_search_module._trial_record(
        50,
        "sweep",
        {
            **summary,
            "learning_rates": [1e-3],
            "steps_to_solve": [300, None],
            "final_eval": {"loss": [0.0, 0.1]},
        },
        1.0,
    )
    assert not alone["learnable"] and "per_rate" not in alone
