"""The training loop: determinism, early stop on `solved`, summaries, and that an LSTM actually learns."""

from __future__ import annotations

import chex
import jax
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


def test_learning_rate_grid_member_equals_that_seed_and_rate_alone():
    # The grid is an extra vmapped axis: member (seed i, rate j) must be the run of rate j alone, seed i.
    task = Adding(lag=6)
    rates = (1e-2, 3e-3)
    grid_state, grid = _run(task, "gru", "run.num_seeds=2", "optim.learning_rate=1e-2,3e-3", "run.steps=12")
    assert grid["learning_rates"] == list(rates) and len(grid["solved"]) == 4
    assert np.asarray(grid_state.step).tolist() == [12] * 4
    for j, rate in enumerate(rates):
        alone_state, alone = _run(
            task, "gru", "run.num_seeds=2", f"optim.learning_rate={rate}", "run.steps=12"
        )
        for i in range(2):
            member = jax.tree_util.tree_map(lambda x, m=j * 2 + i: x[m], grid_state)
            seed = jax.tree_util.tree_map(lambda x, i=i: x[i], alone_state)
            chex.assert_trees_all_close(member, seed, rtol=1e-6, atol=1e-7)
            assert grid["final_eval"]["loss"][j * 2 + i] == pytest.approx(
                alone["final_eval"]["loss"][i], rel=1e-5
            )
    loss = np.asarray(grid["final_eval"]["loss"])
    assert not np.allclose(loss[:2], loss[2:])  # and the rates do differ


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_unit_rate_optimizer_scaled_by_the_rate_is_the_optimizer_at_that_rate_bit_for_bit(name):
    from lrd.train import init_states, make_chunk_fn, make_optimizer, unit_optimizer

    task = Adding(lag=5)
    model = build_model("lstm", task, hidden_size=8)
    settings = _settings("optim.learning_rate=3e-3", f"optim.name={name}")
    plain = make_optimizer(3e-3, settings.clip_norm, name=name)
    states = init_states(model, task, plain, seed=0, num_seeds=2)
    expected, _ = make_chunk_fn(model, task, plain, batch_size=8, num_steps=4)(states)
    scaled = make_chunk_fn(model, task, unit_optimizer(settings), batch_size=8, num_steps=4)
    got, _ = scaled(states, jax.numpy.full((2,), 3e-3, jax.numpy.float32))
    chex.assert_trees_all_equal(got, expected)


def test_an_unknown_optimizer_name_is_an_error_not_adam():
    from lrd.train import make_optimizer

    with pytest.raises(
        ValueError, match="optimizer name='sgd' is unknown; allowed values: adam, adamw, rmsprop"
    ):
        make_optimizer(1e-3, name="sgd")


def test_rmsprop_is_the_urnn_papers_rule():
    # v_t = 0.9 v_{t-1} + 0.1 g^2 from v_0 = 1e-3, p <- p - rate g / sqrt(v_t + 1e-8), after global-norm clipping,
    # written out by hand for three steps of a quadratic loss.
    from lrd.train import make_optimizer

    rate, clip = 1e-2, 1.0
    optimizer = make_optimizer(rate, clip, name="rmsprop")
    p = np.array([0.3, -2.0, 0.05], np.float64)
    target = np.array([1.0, 1.0, 1.0])
    params, opt_state = jax.numpy.asarray(p, jax.numpy.float32), None
    opt_state = optimizer.init(params)
    v = np.full(3, 1e-3)
    for _ in range(3):
        g = 2 * (p - target)
        g = g * min(1.0, clip / np.linalg.norm(g))
        v = 0.9 * v + 0.1 * g**2
        p = p - rate * g / np.sqrt(v + 1e-8)
        grads = 2 * (params - jax.numpy.asarray(target, jax.numpy.float32))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = params + updates
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5)


def test_early_stop_with_a_grid_waits_for_one_rate_to_solve_every_seed():
    task = Adding(lag=6, mse_threshold=10.0)  # met at once by every member
    _, summary = _run(task, "lstm", "run.steps=100", "run.eval_every=5", "optim.learning_rate=1e-3,1e-2")
    assert summary["steps_run"] == 5 and summary["steps_to_solve"] == [5, 5]


def test_evaluation_in_chunks_gives_the_one_call_metrics_with_the_memory_of_one_chunk():
    from lrd.tasks.adding import Adding as AddingTask
    from lrd.train import eval_chunk, eval_step, held_out_batch, init_states, make_eval_fn, make_optimizer

    assert eval_chunk(512) == 64 and eval_chunk(100) == 50 and eval_chunk(7) == 7 and eval_chunk(67) == 1
    task = AddingTask(lag=30, variant="hochreiter")  # max_abs_error: a maximum, not a mean, over sequences
    model = build_model("attention", task, hidden_size=8, setting="block")
    params = init_states(model, task, make_optimizer(1e-3), 0, 2).params
    batch = held_out_batch(task, 512, 1)
    chunked = make_eval_fn(model, task)
    got = chunked(params, batch)
    for i in range(2):
        want = eval_step(jax.tree_util.tree_map(lambda x, i=i: x[i], params), batch, model=model, task=task)
        for key, value in want.items():
            assert float(got[key][i]) == pytest.approx(float(value), rel=1e-6, abs=1e-7), key
    whole = jax.jit(jax.vmap(lambda p, b: eval_step(p, b, model=model, task=task), in_axes=(0, None)))

    def temp(fn):
        return fn.lower(params, batch).compile().memory_analysis().temp_size_in_bytes

    assert temp(chunked) * 4 < temp(whole)  # attention's scores of 64 sequences at a time, not 512
