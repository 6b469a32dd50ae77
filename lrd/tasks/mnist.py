"""Sequential MNIST and permuted sequential MNIST (Le, Jaitly & Hinton 2015; Arjovsky, Shah & Bengio 2016).

Each 28x28 MNIST image is read one pixel per step in raster (row-major) order: 784 steps of
``float32[batch, 784, 1]`` inputs, pixel intensities scaled from ``0..255`` to ``[0, 1]``. ``psmnist`` first
applies one fixed permutation of the 784 pixel positions to every image (the same for training and test),
``numpy.random.RandomState(permutation_seed).permutation(784)``; the legacy ``RandomState`` stream is frozen by
NumPy's compatibility policy, so a seed names the same permutation on every machine and NumPy version. The
permutation scatters neighbouring pixels across the whole sequence, which makes the dependencies long-range.

The class (0-9) is read out at the last step only (``mask``). Chance cross-entropy is ``log 10`` (classes are
close to balanced). Solved when held-out accuracy on the **test** split reaches ``accuracy_threshold``: 0.98 for
sMNIST (a well-tuned LSTM's level: 98.2% in Arjovsky et al. 2016), 0.95 for psMNIST (above the LSTM's 88% there,
reached by long-memory models such as IndRNN or SSMs).

Data: loaded with ``tfds.data_source("mnist", ...)`` from prepared ``array_record`` files (no TensorFlow needed),
never downloaded implicitly. :func:`missing_data_message` says how to prepare them on a networked machine. Each
split is read once per process and kept as a ``uint8`` device array (47 MB for train, 8 MB for test), so
``sample`` is a pure, jit-able function of the key, like every task: it gathers ``batch_size`` training examples
with indices drawn uniformly with replacement. The array is closed over by the jitted program, so it is embedded
as a constant in the compiled executable (a few seconds of extra compile time on a CPU; no host transfers per
step). Held-out data: :meth:`SequentialMnist.held_out_batch` (a fixed random subset of ``eval_split``) and
:meth:`SequentialMnist.test_batches` (the whole ``eval_split`` in order, for published numbers).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask

__all__ = ["SequentialMnist", "PermutedSequentialMnist", "load_split", "missing_data_message", "clear_cache"]

NUM_PIXELS = 784
NUM_CLASSES = 10
_LOAD_CHUNK = 2048


def _resolved_data_dir(data_dir: str | None) -> str:
    return (
        data_dir
        or os.environ.get("TFDS_DATA_DIR")
        or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def missing_data_message(data_dir: str | None) -> str:
    """The error text for MNIST files that are not prepared under ``data_dir``: exactly how to get them."""
    where = _resolved_data_dir(data_dir)
    return (
        f"MNIST is not prepared in array_record format under {where!r} (lrd never downloads it).\n"
        "On a machine with network access and `pip install tensorflow tensorflow-datasets` (TFDS's MNIST builder\n"
        "needs TensorFlow to prepare the files; reading them here does not), run:\n"
        "  python -c \"import tensorflow_datasets as tfds; tfds.data_source('mnist', data_dir='DIR', "
        "builder_kwargs={'file_format': 'array_record'})\"\n"
        "  (or: tfds build mnist --file_format=array_record --data_dir=DIR)\n"
        "then copy DIR/mnist/ to this machine and point lrd at it: set TFDS_DATA_DIR=DIR (or pass data_dir=DIR to "
        "the smnist/psmnist task)."
    )


def _read_examples(source, start: int, stop: int) -> list[dict]:
    indices = list(range(start, stop))
    try:
        return list(source.__getitems__(indices))
    except TypeError:  # tfds.testing.mock_data's source lacks a working batched read
        return [source[i] for i in indices]


@functools.cache
def load_split(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8[N, 784], labels int32[N])`` of an MNIST split, row-major pixels, read once per process.

    Raises:
      FileNotFoundError: the prepared files are missing; the message says how to get them.
    """
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(
            "mnist",
            split=split,
            data_dir=data_dir,
            download=False,
            builder_kwargs={"file_format": "array_record"},
        )
    except (
        Exception
    ) as err:  # TFDS reports missing data as KeyError, NotImplementedError, FileNotFoundError...
        raise FileNotFoundError(missing_data_message(data_dir)) from err
    num = len(source)
    images = np.empty((num, NUM_PIXELS), np.uint8)
    labels = np.empty((num,), np.int32)
    for start in range(0, num, _LOAD_CHUNK):
        stop = min(start + _LOAD_CHUNK, num)
        for i, example in enumerate(_read_examples(source, start, stop), start):
            images[i] = np.asarray(example["image"], np.uint8).reshape(NUM_PIXELS)
            labels[i] = int(example["label"])
    return images, labels


@functools.cache
def _device_split(split: str, data_dir: str | None) -> tuple[jax.Array, jax.Array]:
    images, labels = load_split(split, data_dir)
    # Concrete device arrays even when first called while tracing (a cached tracer would leak into later calls).
    with jax.ensure_compile_time_eval():
        return jnp.asarray(images), jnp.asarray(labels)


def clear_cache() -> None:
    """Forget the splits read so far (tests swap mock data in and out)."""
    load_split.cache_clear()
    _device_split.cache_clear()


@register_task(
    "smnist", description="sequential MNIST: classify an image read 1 pixel/step, 784 steps (Le 2015)"
)
@dataclasses.dataclass(frozen=True)
class SequentialMnist(ClassificationTask):
    """Sequential MNIST (see module docstring). ``inputs: float32[batch, 784, 1]``, targets ``int32[batch, 784]``.

    Attributes:
      lag: fixed at 784, the number of pixel steps (accepted so that ``lrd train --lag 784`` works).
      split: TFDS split that ``sample`` draws training examples from (``"train"``, or a slice like
        ``"train[:55000]"``).
      eval_split: TFDS split of held-out data (``"test"``, or e.g. ``"train[55000:]"`` for validation).
      data_dir: TFDS data directory (``None``: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).
      accuracy_threshold: solved when held-out accuracy reaches it.
    """

    input_kind = "real"

    lag: int = NUM_PIXELS
    split: str = "train"
    eval_split: str = "test"
    data_dir: str | None = None
    accuracy_threshold: float = 0.98

    def validate(self) -> None:
        if self.lag != NUM_PIXELS:
            raise ValueError(
                f"{self.name}: lag is fixed at {NUM_PIXELS} (one pixel per step), got {self.lag!r}"
            )
        for field in ("split", "eval_split"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.startswith(("train", "test")):
                raise ValueError(
                    f"{self.name}: {field} must be a TFDS split of mnist ('train', 'test' or a slice such as "
                    f"'train[:55000]'), got {value!r}"
                )

    @property
    def name(self) -> str:
        return "smnist"

    @property
    def seq_len(self) -> int:
        return NUM_PIXELS

    @property
    def input_dim(self) -> int:
        return 1

    @property
    def output_dim(self) -> int:
        return NUM_CLASSES

    @property
    def chance_loss(self) -> float:
        return math.log(NUM_CLASSES)

    def permutation(self) -> np.ndarray | None:
        """``int[784]``: step ``t`` shows pixel ``permutation[t]`` (``None``: raster order)."""
        return None

    def to_batch(self, images: jax.Array, labels: jax.Array) -> Batch:
        """A :class:`Batch` from ``uint8[batch, 784]`` row-major images and ``int[batch]`` labels."""
        permutation = self.permutation()
        if permutation is not None:
            images = images[:, permutation]
        batch_size = images.shape[0]
        inputs = (jnp.asarray(images, jnp.float32) / 255.0)[:, :, None]
        targets = jnp.zeros((batch_size, NUM_PIXELS), jnp.int32).at[:, -1].set(jnp.asarray(labels, jnp.int32))
        mask = jnp.zeros((batch_size, NUM_PIXELS), jnp.float32).at[:, -1].set(1.0)
        return Batch(inputs, targets, mask)

    def prepare(self) -> None:
        """Read both splits now (before any compilation), so missing files fail early with instructions."""
        load_split(self.split, self.data_dir)
        load_split(self.eval_split, self.data_dir)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        images, labels = _device_split(self.split, self.data_dir)
        index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        return self.to_batch(images[index], labels[index])

    def held_out_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """``batch_size`` distinct examples of ``eval_split`` chosen by ``seed`` (the whole split, in order, if it
        has at most ``batch_size`` examples)."""
        images, labels = load_split(self.eval_split, self.data_dir)
        if batch_size >= images.shape[0]:
            return self.to_batch(jnp.asarray(images), jnp.asarray(labels))
        index = np.asarray(jax.random.permutation(jax.random.PRNGKey(seed), images.shape[0])[:batch_size])
        return self.to_batch(jnp.asarray(images[index]), jnp.asarray(labels[index]))

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        """The whole ``eval_split`` in order, ``batch_size`` examples at a time (the last batch may be smaller)."""
        images, labels = load_split(self.eval_split, self.data_dir)
        for start in range(0, images.shape[0], batch_size):
            yield self.to_batch(
                jnp.asarray(images[start : start + batch_size]),
                jnp.asarray(labels[start : start + batch_size]),
            )

    def solved(self, metrics) -> bool:
        return bool(metrics["accuracy"] >= self.accuracy_threshold)


@register_task("psmnist", description="permuted sequential MNIST: pixels in a fixed random order (Le 2015)")
@dataclasses.dataclass(frozen=True)
class PermutedSequentialMnist(SequentialMnist):
    """Permuted sequential MNIST (see module docstring); ``permutation_seed`` names the fixed permutation."""

    accuracy_threshold: float = 0.95
    permutation_seed: int = 0

    @property
    def name(self) -> str:
        return "psmnist"

    def permutation(self) -> np.ndarray:
        return np.random.RandomState(self.permutation_seed).permutation(NUM_PIXELS)
