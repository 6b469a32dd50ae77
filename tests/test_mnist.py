"""Sequential / permuted sequential MNIST on TFDS mock data (this machine cannot download MNIST)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lrd.config import ExperimentConfig, apply_overrides
from lrd.models import build_model
from lrd.registry import build_task
from lrd.tasks import mnist
from lrd.tasks.mnist import PermutedSequentialMnist, SequentialMnist
from lrd.train import train, train_settings

NUM_EXAMPLES = 24


@pytest.fixture
def mock_mnist():
    """TFDS mock data: random uint8 images and labels served by ``tfds.data_source`` without any files."""
    mnist.clear_cache()
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        yield {split: tfds.data_source("mnist", split=split) for split in ("train", "test")}
    mnist.clear_cache()


def _raster(source, indices) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(source[int(i)]["image"]).reshape(784) for i in indices])
    labels = np.array([int(source[int(i)]["label"]) for i in indices])
    return images, labels


def test_definition(mock_mnist):
    task = build_task("smnist")
    assert isinstance(task, SequentialMnist)
    assert (task.seq_len, task.input_dim, task.output_dim) == (784, 1, 10)
    assert task.chance_loss == pytest.approx(math.log(10))
    images, labels = mnist.load_split("train")
    assert images.shape == (NUM_EXAMPLES, 784) and images.dtype == np.uint8 and labels.dtype == np.int32
    expected_images, expected_labels = _raster(mock_mnist["train"], range(NUM_EXAMPLES))
    np.testing.assert_array_equal(images, expected_images)  # row-major: step t = pixel (t // 28, t % 28)
    np.testing.assert_array_equal(labels, expected_labels)

    batch = task.sample(jax.random.PRNGKey(0), 16)
    inputs, targets, mask = (np.asarray(x) for x in batch)
    assert inputs.shape == (16, 784, 1) and inputs.dtype == np.float32
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    # Every row is one training image scaled by 1/255, with its label at the last step only.
    for row, label in zip(inputs[..., 0], targets[:, -1], strict=True):
        match = np.flatnonzero(np.all(np.isclose(expected_images / 255.0, row[None, :], atol=1e-6), axis=1))
        assert match.size >= 1 and label in expected_labels[match]
    np.testing.assert_array_equal(targets[:, :-1], 0)
    np.testing.assert_array_equal(mask[:, -1], 1.0)
    np.testing.assert_array_equal(mask[:, :-1], 0.0)


def test_sample_is_pure_and_jittable(mock_mnist):
    task = SequentialMnist()
    a = task.sample(jax.random.PRNGKey(3), 8)
    b = jax.jit(task.sample, static_argnums=1)(jax.random.PRNGKey(3), 8)
    c = task.sample(jax.random.PRNGKey(4), 8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)


def test_permuted_uses_one_fixed_permutation(mock_mnist):
    plain, permuted = SequentialMnist(), PermutedSequentialMnist(permutation_seed=0)
    perm = permuted.permutation()
    assert sorted(perm.tolist()) == list(range(784))
    # NumPy's legacy RandomState stream is frozen: the seed names the same permutation everywhere.
    assert perm[:8].tolist() == [693, 85, 647, 392, 765, 14, 299, 711]
    assert PermutedSequentialMnist(permutation_seed=1).permutation()[:8].tolist() == [
        649,
        265,
        111,
        301,
        339,
        559,
        742,
        202,
    ]
    assert plain.permutation() is None
    key = jax.random.PRNGKey(7)
    x_plain, x_perm = np.asarray(plain.sample(key, 8).inputs), np.asarray(permuted.sample(key, 8).inputs)
    np.testing.assert_array_equal(x_perm, x_plain[:, perm])  # same images (same indices), pixels reordered
    np.testing.assert_array_equal(plain.sample(key, 8).targets, permuted.sample(key, 8).targets)
    assert (
        permuted.name == "psmnist"
        and permuted.accuracy_threshold == 0.95
        and plain.accuracy_threshold == 0.98
    )


def test_held_out_data_comes_from_the_test_split(mock_mnist):
    task = SequentialMnist()
    test_images, test_labels = _raster(mock_mnist["test"], range(NUM_EXAMPLES))
    whole = task.held_out_batch(1000)  # more than the split holds: all of it, in order
    np.testing.assert_allclose(np.asarray(whole.inputs[..., 0]), test_images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(whole.targets[:, -1]), test_labels)
    part = task.held_out_batch(10, seed=1)
    again = task.held_out_batch(10, seed=1)
    np.testing.assert_array_equal(part.inputs, again.inputs)
    rows = np.asarray(part.inputs[..., 0])
    index = [
        int(np.flatnonzero(np.all(np.isclose(test_images / 255.0, r, atol=1e-6), axis=1))[0]) for r in rows
    ]
    assert len(set(index)) == 10  # distinct examples
    batches = list(task.test_batches(10))
    assert [b.inputs.shape[0] for b in batches] == [10, 10, 4]
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(b.targets[:, -1]) for b in batches]), test_labels
    )


def test_one_lstm_training_step_through_lrd_train(mock_mnist):
    task = SequentialMnist()
    model = build_model("lstm", task, hidden_size=4)
    config = apply_overrides(
        ExperimentConfig(), ["run.steps=1", "optim.batch_size=4", "run.eval_every=1", "run.eval_batch_size=8"]
    )
    settings = train_settings(config)
    state, summary = train(model, task, settings, progress=False)
    assert summary["steps_run"] == 1 and int(np.asarray(state.step)[0]) == 1
    assert (
        np.isfinite(summary["final_eval"]["loss"][0]) and 0.0 <= summary["final_eval"]["accuracy"][0] <= 1.0
    )
    assert summary["chance_loss"] == pytest.approx(math.log(10))


def test_missing_data_says_how_to_get_it(tmp_path):
    mnist.clear_cache()
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        SequentialMnist(data_dir=str(tmp_path)).prepare()
    with pytest.raises(FileNotFoundError) as info:
        SequentialMnist(data_dir=str(tmp_path)).sample(jax.random.PRNGKey(0), 2)
    message = str(info.value)
    assert str(tmp_path) in message
    for needle in (
        "tfds build mnist --file_format=array_record",
        "data_source('mnist'",
        "TFDS_DATA_DIR",
        "data_dir=",
    ):
        assert needle in message
    assert not any(tmp_path.rglob("*.array_record*"))  # nothing was downloaded or written
    mnist.clear_cache()


def test_lag_is_fixed_and_splits_are_validated():
    assert SequentialMnist(lag=784).lag == 784
    with pytest.raises(ValueError, match="lag"):
        SequentialMnist(lag=100)
    with pytest.raises(ValueError, match="eval_split"):
        SequentialMnist(eval_split="validation")
    assert SequentialMnist(split="train[:20]", eval_split="train[20:]").split == "train[:20]"
