"""The training loop: determinism, early stop on `solved`, summaries, and that an LSTM actually learns."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from lrd.config import ExperimentConfig, apply_overrides
from lrd.models import build_model
from lrd.tasks.adding import Adding
from lrd.tasks.copy_memory import CopyMemory
from lrd.train import train, train_settings


def _settings(*overrides: str):
    """Training settings through the one config path: small defaults, then ``section.field=value`` overrides."""
    small = ["run.steps=20", "optim.batch_size=8", "run.eval_every=10", "run.eval_batch_size=32"]
    return train_settings(apply_overrides(ExperimentConfig(), small + list(overrides)))


def _run(task, model_name="lstm", *overrides: str):
    model = build_model(model_name, task, hidden_size=16)
    return train(model, task, _settings(*overrides), progress=False)


def test_same_seed_same_result_and_seeds_differ():
    task = Adding(lag=8)
    state_a, summary_a = _run(task, "lstm", "run.num_seeds=2")
    state_b, summary_b = _run(task, "lstm", "run.num_seeds=2")
    chex.assert_trees_all_equal(state_a.params, state_b.params)
    assert summary_a["final_eval"] == summary_b["final_eval"]
    kernel = state_a.params["layer0_lstm"]["input_kernel"]
    assert kernel.shape[0] == 2 and not np.array_equal(kernel[0], kernel[1])
    assert summary_a["steps_run"] == 20 and np.asarray(state_a.step).tolist() == [20, 20]


def test_summary_and_callbacks():
    records = []
    _, summary = train(
        build_model("gru", CopyMemory(lag=3), hidden_size=8),
        CopyMemory(lag=3),
        _settings("run.steps=15", "optim.batch_size=4", "run.eval_batch_size=16"),
        callbacks=[lambda state, record: records.append(record)],
        progress=False,
    )
    assert [r["step"] for r in records] == [10, 15]  # evaluation at the cadence and at the end
    assert set(records[0]["eval"]) >= {"loss", "accuracy", "recall_accuracy"}
    assert summary["chance_loss"] == pytest.approx(CopyMemory(lag=3).chance_loss)
    assert summary["solved"] == [False] and summary["steps_to_solve"] == [None]
    assert np.isfinite(summary["final_eval"]["loss"][0])


def test_early_stop_when_every_seed_is_solved():
    # A threshold every model meets at once: training must stop at the first evaluation.
    task = Adding(lag=6, mse_threshold=10.0)
    _, summary = _run(task, "lstm", "run.steps=100", "run.eval_every=5", "run.num_seeds=2")
    assert (
        summary["steps_run"] == 5
        and summary["steps_to_solve"] == [5, 5]
        and summary["solved"] == [True, True]
    )


def test_evaluation_every_more_steps_than_the_run_has_means_once_at_the_end():
    records = []
    train(
        build_model("lstm", Adding(lag=4), hidden_size=4),
        Adding(lag=4),
        _settings("run.steps=3", "run.eval_every=100"),
        callbacks=[lambda state, record: records.append(record["step"])],
        progress=False,
    )
    assert records == [3]


@pytest.mark.slow
def test_lstm_learns_adding_at_a_short_lag():
    # Not a timing test: an LSTM must get well below chance (1/6) on adding at lag 20 in 400 steps.
    task = Adding(lag=20)
    model = build_model("lstm", task, hidden_size=32)
    settings = _settings(
        "run.steps=400",
        "optim.batch_size=32",
        "optim.learning_rate=3e-3",
        "run.eval_every=100",
        "run.eval_batch_size=256",
    )
    _, summary = train(model, task, settings, progress=False)
    assert summary["final_eval"]["loss"][0] < 0.25 * task.chance_loss
