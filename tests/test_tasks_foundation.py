"""Adding and copy-memory generators: shapes, ranges, determinism, labels, and chance baselines vs. formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.registry import build_task
from lrd.tasks.adding import Adding
from lrd.tasks.copy_memory import CopyMemory

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("lag", [2, 9, 100])
def test_adding_arjovsky_definition(lag):
    task = Adding(lag=lag)
    batch = task.sample(KEY, 256)
    inputs, targets, mask = map(np.asarray, batch)
    assert inputs.shape == (256, lag, 2) and targets.shape == (256, lag, 1) and mask.shape == (256, lag)
    values, markers = inputs[..., 0], inputs[..., 1]
    assert values.min() >= 0.0 and values.max() <= 1.0
    # Exactly two markers: one in the first half, one in the second.
    assert np.all(markers.sum(1) == 2)
    half = lag // 2
    assert np.all(markers[:, :half].sum(1) == 1) and np.all(markers[:, half:].sum(1) == 1)
    np.testing.assert_allclose(targets[:, -1, 0], (values * markers).sum(1), rtol=1e-6)
    assert np.all(mask[:, -1] == 1) and np.all(mask[:, :-1] == 0)


def test_adding_hochreiter_1997_definition():
    # Hochreiter & Schmidhuber 1997, experiment 4, checked rule by rule on 4096 sampled sequences at T = 40.
    task = Adding(lag=40, variant="hochreiter")
    assert task.seq_len == 44 and task.chance_loss == pytest.approx(19 / 480)
    batch, lags = task.sample_with_lags(KEY, 4096)
    inputs, targets, mask = map(np.asarray, batch)
    lags = np.asarray(lags)
    # lengths uniform over [T, T + T/10], both ends reached; the sequence fills the last L steps, padding is zeros
    assert lags.min() == 40 and lags.max() == 44 and len(np.unique(lags)) == 5
    values, markers = inputs[..., 0], inputs[..., 1]
    for row_values, row_markers, length in zip(values, markers, lags, strict=True):
        pad = 44 - length
        assert np.all(row_values[:pad] == 0) and np.all(row_markers[:pad] == 0)
        seq_markers, seq_values = row_markers[pad:], row_values[pad:]
        marked = np.flatnonzero(seq_markers == 1.0)
        assert len(marked) == 2 and marked.max() < 40 // 2  # both among the first T/2 pairs
        assert (marked < 10).any()  # one of them among the first ten
        # -1 on the first and the last pair (the first only when unmarked), 0 elsewhere
        assert seq_markers[-1] == -1.0 and seq_markers[0] == (1.0 if 0 in marked else -1.0)
        assert np.all(np.isin(np.delete(seq_markers, [0, length - 1, *marked]), [0.0]))
        assert np.all(np.abs(seq_values) <= 1.0)
    # the second marker ranges over all T/2 - 1 still-unmarked slots of {0, ..., T/2 - 1}
    pads = 44 - lags
    positions = np.stack([np.flatnonzero(m[p:] == 1.0) for m, p in zip(markers, pads, strict=True)])
    assert set(np.unique(positions)) == set(range(40 // 2))
    # X1 = 0 when the first draw hits pair 0: a marked pair 0 carries value 0 in about 1 sequence in 10 (the
    # first draw's chance), where an unmarked or second-drawn value is never exactly 0
    first_values = values[np.arange(4096), pads]
    zero_x1 = (markers[np.arange(4096), pads] == 1.0) & (first_values == 0.0)
    assert 0.08 < zero_x1.mean() < 0.12
    assert np.all(first_values[markers[np.arange(4096), pads] == -1.0] != 0.0)
    np.testing.assert_allclose(targets[:, -1, 0], 0.5 + (values * (markers == 1.0)).sum(1) / 4, rtol=1e-6)
    assert np.all(mask[:, -1] == 1) and np.all(mask[:, :-1] == 0)


def test_adding_hochreiter_1997_refuses_min_lag_and_short_lags():
    with pytest.raises(ValueError, match="min_lag must be None for variant 'hochreiter'"):
        Adding(lag=40, variant="hochreiter", min_lag=30)
    with pytest.raises(ValueError, match="lag must be an int >= 20"):
        Adding(lag=19, variant="hochreiter")


def test_adding_hochreiter_fixed_definition():
    task = Adding(lag=60, variant="hochreiter_fixed")
    inputs, targets, _ = map(np.asarray, task.sample(KEY, 512))
    values, markers = inputs[..., 0], inputs[..., 1]
    assert values.min() >= -1.0 and values.max() <= 1.0
    assert np.all(markers.sum(1) == 2)
    first = markers.argmax(1)
    positions = [np.flatnonzero(m) for m in markers]
    assert all(p[0] < 10 or p[1] < 10 for p in positions)  # one marker in the first 10 steps
    assert all(p.max() < 60 // 2 - 1 for p in positions)  # both within the first T/2 - 1 steps
    assert first.min() >= 0
    np.testing.assert_allclose(targets[:, -1, 0], 0.5 + (values * markers).sum(1) / 4, rtol=1e-6)


@pytest.mark.parametrize(
    "variant,chance", [("arjovsky", 1 / 6), ("hochreiter", 19 / 480), ("hochreiter_fixed", 1 / 24)]
)
def test_adding_chance_loss_is_the_input_blind_mse(variant, chance):
    # The best constant predictor is the mean target; its MSE is the target variance.
    task = Adding(lag=40, variant=variant)
    assert task.chance_loss == pytest.approx(chance)
    targets = np.asarray(task.sample(KEY, 200_000).targets[:, -1, 0])
    assert targets.var() == pytest.approx(chance, rel=0.02)
    outputs = jnp.full((4096, task.seq_len, 1), targets.mean())
    batch = task.sample(jax.random.PRNGKey(1), 4096)
    assert float(task.loss(outputs, batch)) == pytest.approx(chance, rel=0.06)


def test_adding_solved_criteria():
    assert Adding(lag=10).solved({"loss": 0.009, "max_abs_error": 1.0})
    assert not Adding(lag=10).solved({"loss": 0.011, "max_abs_error": 0.0})
    hochreiter = Adding(lag=20, variant="hochreiter")
    assert hochreiter.solved({"loss": 1.0, "max_abs_error": 0.039})
    assert not hochreiter.solved({"loss": 0.0, "max_abs_error": 0.041})


@pytest.mark.parametrize("lag", [1, 5, 50])
def test_copy_definition(lag):
    task = CopyMemory(lag=lag)
    inputs, targets, mask = map(np.asarray, task.sample(KEY, 64))
    length = lag + 20
    assert task.seq_len == length and inputs.shape == (64, length) and targets.shape == (64, length)
    assert inputs.dtype == np.int32 and targets.dtype == np.int32
    symbols = inputs[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    # T - 1 blanks, the delimiter (9), 10 blanks.
    np.testing.assert_array_equal(inputs[:, 10 : 10 + lag - 1], 0)
    np.testing.assert_array_equal(inputs[:, 10 + lag - 1], 9)
    np.testing.assert_array_equal(inputs[:, -10:], 0)
    np.testing.assert_array_equal(targets[:, : lag + 10], 0)
    np.testing.assert_array_equal(targets[:, -10:], symbols)
    np.testing.assert_array_equal(mask, 1.0)
    assert task.vocab_size == 10 and task.output_dim == 10


@pytest.mark.parametrize("lag", [10, 100])
def test_copy_chance_loss_formula_and_baseline_predictor(lag):
    task = CopyMemory(lag=lag)
    assert task.chance_loss == pytest.approx(10 * math.log(8) / (lag + 20))
    # The input-blind baseline: certain blank before the recall span, uniform over the 8 symbols during it.
    batch = task.sample(KEY, 32)
    blank = jnp.full((task.seq_len, task.output_dim), -1e9).at[:, 0].set(0.0)
    uniform = jnp.full((task.output_dim,), -1e9).at[1:9].set(0.0)
    logits = blank.at[-10:].set(uniform)
    outputs = jnp.broadcast_to(logits, (32, task.seq_len, task.output_dim))
    assert float(task.loss(outputs, batch)) == pytest.approx(task.chance_loss, rel=1e-5)
    metrics = task.metrics(outputs, batch)
    assert float(metrics["recall_accuracy"]) < 0.5  # argmax of a uniform row is a fixed guess
    # A perfect predictor solves it.
    perfect = jax.nn.one_hot(batch.targets, task.output_dim) * 50.0
    assert task.solved(jax.tree_util.tree_map(float, task.metrics(perfect, batch)))


@pytest.mark.parametrize("task", [Adding(lag=30), Adding(lag=30, variant="hochreiter"), CopyMemory(lag=7)])
def test_same_key_same_batch_and_jit(task):
    a = task.sample(jax.random.PRNGKey(5), 8)
    b = jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(5), 8)
    c = task.sample(jax.random.PRNGKey(6), 8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("adding", {"lag": 0}, "lag"),
        ("adding", {"lag": -5}, "lag"),
        ("adding", {"variant": "gauss"}, "variant"),
        ("copy", {"lag": 0}, "lag"),
        ("copy", {"num_symbols": 1}, "num_symbols"),
    ],
)
def test_bad_task_options_are_rejected(name, options, field):
    with pytest.raises(ValueError, match=field):
        build_task(name, **options)


def test_unknown_task_lists_allowed_names():
    with pytest.raises(ValueError, match="unknown task name 'addding'; allowed values: .*adding"):
        build_task("addding")
