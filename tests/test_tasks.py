"""The task suite (selective copy, MQAR, induction heads, temporal order) and the variable-lag adding/copy variants.

Each task is checked against its documented definition: shapes and token ranges, determinism per key, labels
against an independent NumPy oracle (itself checked on hand-built sequences), chance baselines against their
formulas (Monte Carlo where the formula is a statement about the data distribution), and the solved criteria.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.registry import build_task, task_names
from lrd.tasks.adding import Adding
from lrd.tasks.copy_memory import CopyMemory
from lrd.tasks.induction import InductionHeads, extrapolation_eval
from lrd.tasks.recall import MultiQueryRecall
from lrd.tasks.selective_copy import SelectiveCopy
from lrd.tasks.temporal_order import TemporalOrder

KEY = jax.random.PRNGKey(0)


@functools.cache
def _jitted(task, method: str = "sample"):
    return jax.jit(getattr(task, method), static_argnums=1)


def sample(task, batch_size: int, key=KEY):
    """``task.sample`` compiled once per (task, batch size): op-by-op eager sampling compiles every op."""
    if hasattr(task, "sample_with_lags"):  # the same program as sample_with_lags: compile it once
        return sample_with_lags(task, batch_size, key)[0]
    return _jitted(task)(key, batch_size)


def loss(task, outputs, batch) -> float:
    return float(jax.jit(task.loss)(outputs, batch))


def sample_with_lags(task, batch_size: int, key=KEY):
    return _jitted(task, "sample_with_lags")(key, batch_size)


def _np(batch):
    return tuple(np.asarray(x) for x in batch)


def _entropy(labels: np.ndarray, num_classes: int) -> float:
    """Cross-entropy of the best constant predictor = entropy of the empirical label distribution (nats)."""
    p = np.bincount(labels.ravel(), minlength=num_classes) / labels.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _solved_by_perfect_not_by_chance(task, batch):
    metrics_fn = jax.jit(task.metrics)
    perfect = jax.nn.one_hot(batch.targets, task.output_dim) * 50.0
    metrics = jax.tree_util.tree_map(float, metrics_fn(perfect, batch))
    assert task.solved(metrics) and metrics["loss"] < 1e-6
    blind = jnp.zeros(batch.targets.shape + (task.output_dim,))
    assert not task.solved(jax.tree_util.tree_map(float, metrics_fn(blind, batch)))


# ----------------------------------------------------------------------------------------------------------------
# Registry, determinism, jit
# ----------------------------------------------------------------------------------------------------------------

# One instance and one batch size per task, shared by the tests below: a sampler compiles once per (task, size).
SC = SelectiveCopy(lag=20, num_tokens=6, num_symbols=5)
MQ = MultiQueryRecall(lag=32, num_kv_pairs=6, vocab_size=20)
IH = InductionHeads(lag=12, num_symbols=5)
TO2, TO3 = TemporalOrder(lag=40), TemporalOrder(lag=40, num_marked=3)
ADD_VAR = Adding(lag=24, min_lag=8)
ADD_H_VAR = Adding(lag=40, variant="hochreiter_fixed", min_lag=24)
COPY_VAR = CopyMemory(lag=12, min_lag=3, copy_length=4, num_symbols=6)
SIZES = {
    SC: 4000,
    MQ: 4000,
    IH: 20_000,
    TO2: 8000,
    TO3: 8000,
    ADD_VAR: 20_000,
    ADD_H_VAR: 20_000,
    COPY_VAR: 4000,
}
NEW_TASKS = list(SIZES)


def test_every_task_is_registered():
    for name in (
        "selective_copy",
        "mqar",
        "induction",
        "temporal_order",
        "smnist",
        "psmnist",
        "adding",
        "copy",
    ):
        assert name in task_names()
    assert build_task("mqar", lag=32).seq_len == 32
    assert build_task("temporal_order", lag=40, num_marked=3).output_dim == 8


@pytest.mark.parametrize("task", NEW_TASKS, ids=lambda t: f"{t.name}-{t.lag}")
def test_same_key_same_batch_shapes_and_ranges(task):
    n = SIZES[task]
    a, b, c = (sample(task, n, jax.random.PRNGKey(i)) for i in (5, 5, 6))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)
    assert a.inputs.shape[:2] == (n, task.seq_len) and a.targets.shape[:2] == (n, task.seq_len)
    assert a.mask.shape == (n, task.seq_len) and a.mask.dtype == jnp.float32
    if task.input_kind == "tokens":
        assert a.inputs.dtype == jnp.int32 and a.targets.dtype == jnp.int32
        assert int(a.inputs.min()) >= 0 and int(a.inputs.max()) < task.vocab_size
        assert int(a.targets.min()) >= 0 and int(a.targets.max()) < task.output_dim
    else:
        assert a.inputs.shape[2] == task.input_dim and a.targets.shape[2] == task.output_dim


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("selective_copy", {"lag": 3, "num_tokens": 4}, "lag"),
        ("selective_copy", {"num_tokens": 0}, "num_tokens"),
        ("selective_copy", {"num_symbols": 1}, "num_symbols"),
        ("mqar", {"lag": 63}, "lag"),
        ("mqar", {"lag": 16, "num_kv_pairs": 5}, "lag"),
        ("mqar", {"vocab_size": 16, "num_kv_pairs": 8}, "vocab_size"),
        ("mqar", {"power_a": 0.0}, "power_a"),
        ("induction", {"lag": 3}, "lag"),
        ("induction", {"num_symbols": 1}, "num_symbols"),
        ("temporal_order", {"num_marked": 4}, "num_marked"),
        ("temporal_order", {"lag": 19}, "lag"),
        ("adding", {"lag": 10, "min_lag": 11}, "min_lag"),
        ("adding", {"lag": 10, "min_lag": 1}, "min_lag"),
        ("adding", {"lag": 30, "variant": "hochreiter_fixed", "min_lag": 11}, "min_lag"),
        ("adding", {"lag": 30, "variant": "hochreiter", "min_lag": 20}, "min_lag"),
        ("copy", {"lag": 10, "min_lag": 0}, "min_lag"),
        ("smnist", {"lag": 100}, "lag"),
        ("smnist", {"split": "validation"}, "split"),
    ],
)
def test_bad_options_are_rejected_naming_the_field(name, options, field):
    with pytest.raises(ValueError, match=field):
        build_task(name, **options)


# ----------------------------------------------------------------------------------------------------------------
# Selective copying
# ----------------------------------------------------------------------------------------------------------------


def _selective_copy_oracle(inputs: np.ndarray, lag: int) -> np.ndarray:
    """The non-blank tokens of the data region, in order."""
    return np.stack([row[:lag][row[:lag] != 0] for row in inputs])


def test_selective_copy_oracle_on_a_hand_built_sequence():
    hand = np.array([[0, 3, 0, 0, 5, 2, 0, 9, 0, 0, 0]])  # lag 7, delimiter 9, 3 symbols
    np.testing.assert_array_equal(_selective_copy_oracle(hand, 7), [[3, 5, 2]])


def test_selective_copy_definition():
    task = SC
    inputs, targets, mask = _np(sample(task, 4000))
    assert task.seq_len == 27 and task.vocab_size == 7 and task.delimiter == 6
    data = inputs[:, :20]
    assert np.all((data != 0).sum(1) == 6) and data.max() <= 5
    np.testing.assert_array_equal(inputs[:, 20], 6)
    np.testing.assert_array_equal(inputs[:, 21:], 0)
    np.testing.assert_array_equal(targets[:, 21:], _selective_copy_oracle(inputs, 20))
    np.testing.assert_array_equal(targets[:, :21], 0)
    np.testing.assert_array_equal(mask, np.broadcast_to(np.arange(27) >= 21, mask.shape))
    # Positions: a uniform 6-subset of 20 steps puts a symbol at each step with probability 0.3.
    # 4000 draws: standard error sqrt(0.3 * 0.7 / 4000) = 0.0072; 5 sigma = 0.036.
    np.testing.assert_allclose((data != 0).mean(0), 0.3, atol=0.036)


def test_selective_copy_chance_loss():
    task = SC
    assert task.chance_loss == pytest.approx(math.log(5))
    batch = sample(task, 4000)
    # The input-blind baseline (uniform over symbols at the recall steps) scores exactly log(num_symbols) ...
    logits = jnp.full((task.output_dim,), -1e9).at[1:6].set(0.0)
    outputs = jnp.broadcast_to(logits, batch.targets.shape + (task.output_dim,))
    assert loss(task, outputs, batch) == pytest.approx(math.log(5), rel=1e-6)
    # ... and no constant predictor does better: the recalled symbols are uniform (Monte Carlo entropy).
    recalled = np.asarray(batch.targets)[np.asarray(batch.mask) > 0]
    assert _entropy(recalled, task.output_dim) == pytest.approx(math.log(5), rel=0.005)
    _solved_by_perfect_not_by_chance(task, batch)


def test_selective_copy_sequence_accuracy():
    task = SC
    batch = jax.tree_util.tree_map(lambda x: x[:4], sample(task, 4000))
    outputs = jax.nn.one_hot(batch.targets, task.output_dim)
    wrong = outputs.at[0, -1].set(jax.nn.one_hot((batch.targets[0, -1] % 5) + 1, task.output_dim))
    metrics = jax.jit(task.metrics)(wrong, batch)
    assert float(metrics["sequence_accuracy"]) == pytest.approx(0.75)
    assert float(metrics["accuracy"]) == pytest.approx(23 / 24)


# ----------------------------------------------------------------------------------------------------------------
# MQAR
# ----------------------------------------------------------------------------------------------------------------


def _mqar_oracle(inputs: np.ndarray, num_pairs: int, query_steps: np.ndarray) -> np.ndarray:
    """For each query step: the value that follows the same key in the context."""
    answers = np.zeros(query_steps.shape, np.int64)
    for b in range(inputs.shape[0]):
        context = dict(zip(inputs[b, 0 : 2 * num_pairs : 2], inputs[b, 1 : 2 * num_pairs : 2], strict=True))
        answers[b] = [context[inputs[b, s]] for s in query_steps[b]]
    return answers


def test_mqar_oracle_on_a_hand_built_sequence():
    hand = np.array([[2, 8, 4, 7, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0]])  # Zoology's docstring example, V = 12
    np.testing.assert_array_equal(_mqar_oracle(hand, 2, np.array([[6, 12]])), [[7, 8]])


def test_mqar_definition():
    task = MQ
    inputs, targets, mask = _np(sample(task, 4000))
    keys, values = inputs[:, 0:12:2], inputs[:, 1:12:2]
    assert keys.min() >= 1 and keys.max() <= 9 and values.min() >= 10 and values.max() <= 19
    assert all(len(set(row)) == 6 for row in keys) and all(len(set(row)) == 6 for row in values)
    assert np.all(mask.sum(1) == 6) and np.all(mask[:, :12] == 0)
    query_steps = np.stack([np.flatnonzero(row) for row in mask])
    assert np.all((query_steps - 12) % 2 == 0)  # queries sit at the first step of a two-step slot
    # Every key is queried exactly once, and the target is its value.
    np.testing.assert_array_equal(np.sort(np.take_along_axis(inputs, query_steps, 1), 1), np.sort(keys, 1))
    np.testing.assert_array_equal(
        np.take_along_axis(targets, query_steps, 1), _mqar_oracle(inputs, 6, query_steps)
    )
    np.testing.assert_array_equal(targets[mask == 0], 0)
    rest = inputs[:, 12:][mask[:, 12:] == 0]  # random_non_queries: uniform over all 20 ids
    assert rest.min() == 0 and rest.max() == 19 and abs((rest == 0).mean() - 1 / 20) < 0.01


def test_mqar_query_slots_follow_the_power_law():
    task = MultiQueryRecall(lag=24, num_kv_pairs=2, vocab_size=8, power_a=0.3, random_non_queries=False)
    p = np.arange(1, 11) ** (0.3 - 1.0)
    p /= p.sum()
    np.testing.assert_allclose(np.exp(np.asarray(task.slot_log_probs())), p, rtol=1e-5)
    inputs, _, mask = _np(sample(task, 20_000))
    # The first key's slot is the first draw of the sequential process: distributed exactly as p.
    first_key_step = np.argmax((inputs == inputs[:, :1]) & (mask > 0), axis=1)
    slots = (first_key_step - 4) // 2
    # 20000 draws: standard error <= sqrt(0.25 / 20000) = 0.0035; 5 sigma ~ 0.018.
    np.testing.assert_allclose(np.bincount(slots, minlength=10) / 20_000, p, atol=0.018)
    # Without replacement: P(slot 0 is drawn) = p0 + sum_{j != 0} p_j p0 / (1 - p_j).
    expected = p[0] + sum(p[j] * p[0] / (1 - p[j]) for j in range(1, 10))
    assert mask[:, 4].mean() == pytest.approx(expected, abs=0.018)
    assert np.all(mask.sum(1) == 2)
    np.testing.assert_array_equal(inputs[:, 4:][mask[:, 4:] == 0], 0)  # without random_non_queries: blanks


def test_mqar_chance_loss():
    task = MQ
    assert task.chance_loss == pytest.approx(math.log(10))
    batch = sample(task, 4000)
    answers = np.asarray(batch.targets)[np.asarray(batch.mask) > 0]
    # Marginally the answers are uniform over the 10 value tokens: best constant cross-entropy = log 10.
    assert _entropy(answers, task.output_dim) == pytest.approx(math.log(10), rel=0.005)
    logits = jnp.full((task.output_dim,), -1e9).at[10:].set(0.0)
    outputs = jnp.broadcast_to(logits, batch.targets.shape + (task.output_dim,))
    assert loss(task, outputs, batch) == pytest.approx(math.log(10), rel=1e-6)
    _solved_by_perfect_not_by_chance(task, batch)


# ----------------------------------------------------------------------------------------------------------------
# Induction heads and length extrapolation
# ----------------------------------------------------------------------------------------------------------------


def _induction_oracle(tokens: np.ndarray, special: int) -> np.ndarray:
    """The token after the first occurrence of the final token."""
    return np.array([row[np.flatnonzero(row[:-1] == special)[0] + 1] for row in tokens])


def test_induction_oracle_on_a_hand_built_sequence():
    np.testing.assert_array_equal(_induction_oracle(np.array([[1, 0, 4, 2, 3, 1, 4]]), 4), [2])


def test_induction_definition_and_chance():
    task = IH
    assert task.vocab_size == 6 and task.special_token == 5 and task.chance_loss == pytest.approx(math.log(5))
    batch = sample(task, 20_000)
    inputs, targets, mask = _np(batch)
    assert np.all((inputs == 5).sum(1) == 2) and np.all(inputs[:, -1] == 5)
    first = np.argmax(inputs == 5, axis=1)
    assert first.min() == 0 and first.max() == 9  # p ranges over [0, T - 3], both ends reached
    assert np.all(inputs[np.arange(len(first)), first + 1] < 5)
    np.testing.assert_array_equal(targets[:, -1], _induction_oracle(inputs, 5))
    np.testing.assert_array_equal(targets[:, :-1], 0)
    np.testing.assert_array_equal(mask[:, -1], 1)
    np.testing.assert_array_equal(mask[:, :-1], 0)
    # p uniform over 10 values: 20000 draws, standard error 0.0021; 5 sigma ~ 0.011.
    np.testing.assert_allclose(np.bincount(first, minlength=10) / 20_000, 0.1, atol=0.011)
    assert _entropy(targets[:, -1], task.output_dim) == pytest.approx(math.log(5), rel=0.005)
    _solved_by_perfect_not_by_chance(task, jax.tree_util.tree_map(lambda x: x[:64], batch))


class _InductionOracle(nn.Module):
    """A parameter-free, length-agnostic 'model' that solves induction heads exactly (one-hot logits)."""

    special: int
    output_dim: int

    @nn.compact
    def __call__(self, tokens):
        steps = jnp.arange(tokens.shape[1])
        is_special = (tokens == self.special) & (steps[None, :] < tokens.shape[1] - 1)
        first = jnp.argmax(is_special, axis=1)
        answer = jnp.take_along_axis(tokens, (first + 1)[:, None], axis=1)
        return jnp.broadcast_to(
            jax.nn.one_hot(answer, self.output_dim) * 50.0, tokens.shape + (self.output_dim,)
        )


class _MeanPredictor(nn.Module):
    """Outputs the constant 1 (the mean adding target) at every step."""

    @nn.compact
    def __call__(self, x):
        return jnp.ones(x.shape[:2] + (1,))


def test_extrapolation_eval_scales_the_lag():
    task = InductionHeads(lag=8, num_symbols=4)
    oracle = _InductionOracle(task.special_token, task.output_dim)
    results = extrapolation_eval(oracle, {}, task, (1, 4), KEY, 12)
    assert sorted(results) == [1, 4]
    assert [results[f]["seq_len"] for f in (1, 4)] == [8, 32]
    assert all(results[f]["accuracy"] == 1.0 and results[f]["solved"] for f in (1, 4))
    assert all(results[f]["chance_loss"] == pytest.approx(math.log(4)) for f in (1, 4))
    # Chunked evaluation (2 chunks of 6 sequences) gives the same metrics as one pass.
    chunked = extrapolation_eval(oracle, {}, task, (4,), KEY, 12, chunk_size=6)
    assert chunked[4] == results[4]
    # A variable-lag task scales both ends of its lag range.
    varied = extrapolation_eval(_MeanPredictor(), {}, Adding(lag=10, min_lag=4), (3,), KEY, 2048)
    assert varied[3]["lag"] == 30 and varied[3]["seq_len"] == 30
    assert varied[3]["loss"] == pytest.approx(1 / 6, rel=0.1)  # the mean predictor scores chance (1/6)


# ----------------------------------------------------------------------------------------------------------------
# Temporal order
# ----------------------------------------------------------------------------------------------------------------


def _temporal_order_oracle(tokens: np.ndarray) -> np.ndarray:
    """Read the X (7) / Y (8) tokens in order as a binary number, X = 0, Y = 1."""
    labels = []
    for row in tokens:
        bits = row[(row == 7) | (row == 8)] - 7
        labels.append(int("".join(map(str, bits)), 2))
    return np.array(labels)


def test_temporal_order_oracle_on_hand_built_sequences():
    # The paper's rules: XX -> Q, XY -> R, YX -> S, YY -> U (0..3); XYY -> U (3), YXY -> A (5).
    seqs = [[6, 1, 7, 2, 7, 5], [6, 7, 3, 8, 5], [0, 6, 8, 7, 1, 5], [6, 8, 8, 5]]
    assert [_temporal_order_oracle(np.array([s]))[0] for s in seqs] == [0, 1, 2, 3]
    assert _temporal_order_oracle(np.array([[6, 7, 1, 8, 8, 5], [6, 8, 2, 7, 8, 5]])).tolist() == [3, 5]


def test_temporal_order_paper_ranges_at_lag_100():
    assert TemporalOrder(lag=100).marked_ranges() == ((10, 20), (50, 60))
    assert TemporalOrder(lag=100, num_marked=3).marked_ranges() == ((10, 20), (33, 43), (66, 76))
    assert TemporalOrder(lag=100).seq_len == 110  # lengths 100..110, left-padded to 110


@pytest.mark.parametrize("num_marked", [2, 3])
def test_temporal_order_definition_and_chance(num_marked):
    task = TO2 if num_marked == 2 else TO3
    assert task.output_dim == 2**num_marked and task.chance_loss == pytest.approx(num_marked * math.log(2))
    batch = sample(task, 8000)
    inputs, targets, mask = _np(batch)
    width = task.seq_len
    assert width == 44
    start = np.argmax(inputs == 6, axis=1)  # the E
    lengths = width - start
    assert lengths.min() == 40 and lengths.max() == 44  # U{T..T+r}, both ends reached
    assert (
        np.all((inputs == 6).sum(1) == 1) and np.all(inputs[:, -1] == 5) and np.all((inputs == 5).sum(1) == 1)
    )
    steps = np.arange(width)[None, :]
    np.testing.assert_array_equal(inputs[steps < start[:, None]], 0)  # left padding
    body = inputs[(steps > start[:, None]) & (steps < width - 1)]
    assert body.min() >= 1 and body.max() <= 8 and not np.isin(body, [0, 5, 6]).any()
    marked = (inputs == 7) | (inputs == 8)
    assert np.all(marked.sum(1) == num_marked)
    positions = np.stack([np.flatnonzero(row) for row in marked]) - start[:, None] + 1  # 1-based from the E
    for i, (lo, hi) in enumerate(task.marked_ranges()):
        assert positions[:, i].min() == lo and positions[:, i].max() == hi
    np.testing.assert_array_equal(targets[:, -1], _temporal_order_oracle(inputs))
    np.testing.assert_array_equal(mask[:, -1], 1)
    np.testing.assert_array_equal(mask[:, :-1], 0)
    # Classes uniform: Monte Carlo entropy of the labels = num_marked * log 2.
    assert _entropy(targets[:, -1], task.output_dim) == pytest.approx(task.chance_loss, rel=0.005)
    _solved_by_perfect_not_by_chance(task, jax.tree_util.tree_map(lambda x: x[:64], batch))


# ----------------------------------------------------------------------------------------------------------------
# Variable-lag adding and copy
# ----------------------------------------------------------------------------------------------------------------


def test_min_lag_equal_to_lag_fixes_every_lag():
    assert Adding(lag=30).min_lag is None and CopyMemory(lag=30).min_lag is None
    batch, lags = sample_with_lags(Adding(lag=30, min_lag=30), 64)
    assert np.all(np.asarray(lags) == 30)
    markers = np.asarray(batch.inputs[..., 1])
    assert np.all(markers[:, :15].sum(1) == 1) and np.all(markers[:, 15:].sum(1) == 1)


def test_variable_adding_arjovsky_definition_and_chance():
    task = ADD_VAR
    batch, lags = sample_with_lags(task, 20_000)
    inputs, targets, mask = _np(batch)
    lags = np.asarray(lags)
    assert lags.min() == 8 and lags.max() == 24
    # 17 lags uniform: 20000 draws, standard error 0.0026; 5 sigma ~ 0.013.
    np.testing.assert_allclose(np.bincount(lags, minlength=25)[8:] / 20_000, 1 / 17, atol=0.013)
    values, markers = inputs[..., 0], inputs[..., 1]
    offset = 24 - lags
    steps = np.arange(24)[None, :]
    assert np.all(values[steps < offset[:, None]] == 0) and np.all(markers[steps < offset[:, None]] == 0)
    assert values.min() >= 0 and values.max() <= 1 and np.all(markers.sum(1) == 2)
    first, second = (np.stack([np.flatnonzero(row) for row in markers]) - offset[:, None]).T
    assert np.all(first < lags // 2) and np.all((second >= lags // 2) & (second < lags))
    np.testing.assert_allclose(targets[:, -1, 0], (values * markers).sum(1), rtol=1e-6)
    assert np.all(mask[:, -1] == 1) and np.all(mask[:, :-1] == 0)
    # The target law does not depend on the lag: chance MSE = Var(X1 + X2) = 1/6.
    assert task.chance_loss == pytest.approx(1 / 6)
    assert targets[:, -1, 0].var() == pytest.approx(1 / 6, rel=0.03)


def test_variable_adding_hochreiter_fixed_definition_and_chance():
    task = ADD_H_VAR
    batch, lags = sample_with_lags(task, 20_000)
    inputs, targets, _ = _np(batch)
    lags = np.asarray(lags)
    assert lags.min() == 24 and lags.max() == 40
    values, markers = inputs[..., 0], inputs[..., 1]
    offset = 40 - lags
    assert np.all(markers.sum(1) == 2)
    rel = np.stack([np.flatnonzero(row) for row in markers]) - offset[:, None]
    assert np.all(rel >= 0)
    assert np.all((rel[:, 0] < 10) | (rel[:, 1] < 10))  # one marker in the example's first 10 steps
    assert np.all(rel.max(1) < lags // 2 - 1)  # both in the example's first tau/2 - 1 steps
    np.testing.assert_allclose(targets[:, -1, 0], 0.5 + (values * markers).sum(1) / 4, rtol=1e-6)
    assert task.chance_loss == pytest.approx(1 / 24)
    assert targets[:, -1, 0].var() == pytest.approx(1 / 24, rel=0.03)


def test_variable_copy_definition_and_chance():
    task = COPY_VAR
    batch, lags = sample_with_lags(task, 4000)
    inputs, targets, mask = _np(batch)
    lags = np.asarray(lags)
    assert lags.min() == 3 and lags.max() == 12 and task.seq_len == 20
    for row, target, tau in zip(inputs[:50], targets[:50], lags[:50], strict=True):
        o = 12 - tau
        symbols = row[o : o + 4]
        assert symbols.min() >= 1 and symbols.max() <= 6
        expected = np.zeros(20, np.int32)
        expected[o : o + 4] = symbols
        expected[12 + 4 - 1] = 7  # the delimiter at the fixed step lag + L - 1
        np.testing.assert_array_equal(row, expected)
        np.testing.assert_array_equal(target, np.r_[np.zeros(16, np.int32), symbols])
    np.testing.assert_array_equal(mask, 1.0)
    # Chance: blank with certainty outside the recall span (whatever tau), uniform symbols in it.
    assert task.chance_loss == pytest.approx(4 * math.log(6) / 20)
    blank = jnp.full((20, task.output_dim), -1e9).at[:, 0].set(0.0)
    logits = blank.at[-4:].set(jnp.full((task.output_dim,), -1e9).at[1:7].set(0.0))
    outputs = jnp.broadcast_to(logits, (4000, 20, task.output_dim))
    assert loss(task, outputs, batch) == pytest.approx(task.chance_loss, rel=1e-5)
    np.testing.assert_array_equal(targets[:, :16], 0)  # the baseline's certainty is justified
    assert _entropy(targets[:, -4:], task.output_dim) == pytest.approx(math.log(6), rel=0.005)
