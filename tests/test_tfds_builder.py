"""Frozen evaluation sets: build to a temporary directory, read back, identical to the generator."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lrd.tasks import tfds_builder as fb
from lrd.tasks.adding import Adding
from lrd.tasks.mnist import SequentialMnist
from lrd.tasks.temporal_order import TemporalOrder


def _assert_same(batch, reference):
    for got, want in zip(batch, reference, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "task,num_examples",
    [(Adding(lag=12, min_lag=6), 40), (TemporalOrder(lag=20, num_marked=3), 24)],
    ids=["adding-variable", "temporal_order"],
)
def test_round_trip_equals_the_generator(tmp_path, task, num_examples):
    path = fb.build_eval_set(task, str(tmp_path), num_examples, seed=7)
    assert list((tmp_path / "lrd_eval").glob("*/1.0.0/*.array_record-*"))
    batch = fb.load_eval_set(task, str(tmp_path), num_examples, seed=7)
    _assert_same(batch, jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(7), num_examples))
    # The stored metadata names the exact task and generator call.
    info = json.loads((tmp_path / "lrd_eval" / path.split("/lrd_eval/")[1] / "dataset_info.json").read_text())
    assert info["disableShuffling"] is True
    metadata = json.loads((tmp_path / "lrd_eval" / path.split("/lrd_eval/")[1] / "metadata.json").read_text())
    assert metadata["task"]["task"] == task.name and metadata["seed"] == 7
    assert metadata["generator"] == f"task.sample(jax.random.PRNGKey(7), {num_examples})"


def test_standard_config_by_name_and_default_seed(tmp_path):
    task = Adding(lag=50)
    config = fb.eval_set_config(task)
    assert config.name == "adding_lag50" and config is fb.LrdEval.builder_configs["adding_lag50"]
    assert fb.DEFAULT_SEED == 1_000_003  # lrd.train.TrainSettings.eval_seed
    assert fb.main(["--data-dir", str(tmp_path), "--config", "adding_lag50"]) == 0
    # Readable by name through TFDS itself, without lrd's loader.
    source = tfds.data_source("lrd_eval/adding_lag50", split="test", data_dir=str(tmp_path))
    assert len(source) == fb.DEFAULT_NUM_EXAMPLES
    reference = jax.jit(task.sample, static_argnums=1)(
        jax.random.PRNGKey(fb.DEFAULT_SEED), fb.DEFAULT_NUM_EXAMPLES
    )
    for i in (0, 1, 517, fb.DEFAULT_NUM_EXAMPLES - 1):
        np.testing.assert_array_equal(source[i]["inputs"], reference.inputs[i])
        assert int(source[i]["index"]) == i
    _assert_same(fb.load_eval_set(task, str(tmp_path)), reference)


def test_config_names():
    assert {
        "adding_lag100",
        "copy_lag1000",
        "mqar_lag256",
        "induction_lag256",
        "temporal_order_lag100",
    } <= set(fb.LrdEval.builder_configs)
    assert fb.config_name(Adding(lag=100)) == "adding_lag100"
    hochreiter = fb.config_name(Adding(lag=100, variant="hochreiter"))
    assert hochreiter.startswith("adding_lag100_") and hochreiter != fb.config_name(
        Adding(lag=100, min_lag=50)
    )
    assert fb.config_name(Adding(lag=100), num_examples=10, seed=3) == "adding_lag100_n10_seed3"


def test_missing_set_and_real_datasets_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="adding_lag100.*build_eval_set.*--config adding_lag100"):
        fb.load_eval_set(Adding(lag=100), str(tmp_path))
    with pytest.raises(ValueError, match="real dataset"):
        fb.eval_set_config(SequentialMnist())
    with pytest.raises(ValueError, match="num_examples"):
        fb.eval_set_config(Adding(lag=10), num_examples=0)
