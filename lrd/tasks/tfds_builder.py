"""Frozen held-out evaluation sets for the synthetic tasks, as a TFDS dataset in ``array_record`` files.

A synthetic task is an infinite generator, so "the test set" of a published number has to be pinned down:
:class:`LrdEval` freezes ``task.sample(PRNGKey(seed), num_examples)`` to disk once, and :func:`load_eval_set`
reads it back into a :class:`~lrd.tasks.base.Batch` identical to the generator's (same example order). Files are
written and read without TensorFlow.

One TFDS config per task and lag, named ``"<task>_lag<lag>"`` for a task with default options (e.g.
``"adding_lag100"``); other options, a non-default size or seed add a suffix (``_<hash of options>``, ``_n<size>``,
``_seed<seed>``), and the full task description is stored in the dataset's metadata. ``BUILDER_CONFIGS`` lists the
standard grid (:data:`STANDARD_LAGS` x default options); :func:`eval_set_config` makes a config for any task
instance. The default seed is ``TrainSettings.eval_seed`` (1_000_003), so a frozen set of ``N`` examples equals the
held-out batch that :func:`lrd.train.held_out_batch` draws with ``eval_batch_size=N``.

Build the standard grid into a directory with ``python -m lrd.tasks.tfds_builder --data-dir DIR`` (or only some
configs: ``--config adding_lag100 --config copy_lag200``), or from Python with :func:`build_eval_set`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from lrd.registry import build_task, get_task
from lrd.tasks.base import Batch, Task

__all__ = [
    "DEFAULT_NUM_EXAMPLES",
    "DEFAULT_SEED",
    "STANDARD_LAGS",
    "EvalSetConfig",
    "LrdEval",
    "eval_set_config",
    "build_eval_set",
    "load_eval_set",
]

DEFAULT_NUM_EXAMPLES = 1024
DEFAULT_SEED = 1_000_003  # lrd.train.TrainSettings.eval_seed
FILE_FORMAT = "array_record"
SPLIT = "test"

# The standard grid of frozen sets: task name -> lags (each task at its default options).
STANDARD_LAGS: dict[str, tuple[int, ...]] = {
    "adding": (50, 100, 200, 500, 1000),
    "copy": (50, 100, 200, 500, 1000),
    "selective_copy": (50, 100, 200, 500, 1000),
    "mqar": (64, 128, 256, 512),
    "induction": (64, 128, 256, 512, 1024),
    "temporal_order": (50, 100, 200, 500, 1000),
}


@dataclasses.dataclass(eq=False)
class EvalSetConfig(tfds.core.BuilderConfig):
    """A TFDS config: which task (registered name + options) and how many examples from which seed."""

    task_name: str = ""
    task_options: tuple[tuple[str, Any], ...] = ()
    num_examples: int = DEFAULT_NUM_EXAMPLES
    seed: int = DEFAULT_SEED

    def task(self) -> Task:
        """The task instance this config freezes."""
        return build_task(self.task_name, **dict(self.task_options))


def _non_default_options(task: Task) -> dict[str, Any]:
    defaults = type(task)()
    return {
        f.name: getattr(task, f.name)
        for f in dataclasses.fields(task)
        if f.name != "lag" and getattr(task, f.name) != getattr(defaults, f.name)
    }


def _check_synthetic(task: Task) -> None:
    from lrd.tasks.mnist import SequentialMnist

    if isinstance(task, SequentialMnist):
        raise ValueError(
            f"{task.name} is a real dataset with its own test split; frozen eval sets are for synthetic tasks"
        )
    if not hasattr(task, "lag"):
        raise ValueError(f"task {task.name!r} has no `lag` field; frozen eval sets are named by task and lag")


def config_name(task: Task, num_examples: int = DEFAULT_NUM_EXAMPLES, seed: int = DEFAULT_SEED) -> str:
    """``"<task>_lag<lag>"`` plus suffixes for non-default options, size and seed (see module docstring)."""
    name = f"{task.name}_lag{task.lag}"
    extra = _non_default_options(task)
    if extra:
        digest = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:8]
        name += f"_{digest}"
    if num_examples != DEFAULT_NUM_EXAMPLES:
        name += f"_n{num_examples}"
    if seed != DEFAULT_SEED:
        name += f"_seed{seed}"
    return name


def _make_config(task: Task, num_examples: int, seed: int) -> EvalSetConfig:
    _check_synthetic(task)
    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"num_examples must be a positive int, got {num_examples!r}")
    options = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    return EvalSetConfig(
        name=config_name(task, num_examples, seed),
        description=f"{num_examples} examples of {json.dumps(task.describe(), default=str)}, seed {seed}",
        task_name=task.name,
        task_options=tuple(sorted(options.items())),
        num_examples=num_examples,
        seed=seed,
    )


def _standard_configs() -> list[EvalSetConfig]:
    return [
        _make_config(get_task(name).cls(lag=lag), DEFAULT_NUM_EXAMPLES, DEFAULT_SEED)
        for name, lags in STANDARD_LAGS.items()
        for lag in lags
    ]


def _feature(spec: jax.ShapeDtypeStruct) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=tuple(spec.shape[1:]), dtype=np.dtype(spec.dtype))


class LrdEval(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of frozen evaluation sets (one ``"test"`` split per config); see the module docstring.

    Features per example: ``inputs``, ``targets``, ``mask`` (the task's shapes without the batch axis) and
    ``index`` (position in the generated batch; examples are stored in that order).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Frozen held-out sets: task.sample(PRNGKey(seed), num_examples)."}
    BUILDER_CONFIGS = _standard_configs()
    # TFDS 4.9.10 looks this up through `importlib_resources`, which it only installs on Python < 3.9; the
    # builder's source file is the answer it would compute anyway.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        config: EvalSetConfig = self.builder_config
        task = config.task()
        shapes = jax.eval_shape(lambda key: task.sample(key, 1), jax.random.PRNGKey(0))
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Frozen evaluation set of lrd task {task.name!r}: {config.description}",
            features=tfds.features.FeaturesDict(
                {
                    "inputs": _feature(shapes.inputs),
                    "targets": _feature(shapes.targets),
                    "mask": _feature(shapes.mask),
                    "index": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            metadata=tfds.core.MetadataDict(
                task=json.loads(json.dumps(task.describe(), default=str)),
                num_examples=config.num_examples,
                seed=config.seed,
                generator=f"task.sample(jax.random.PRNGKey({config.seed}), {config.num_examples})",
                jax_version=jax.__version__,
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {SPLIT: self._generate_examples()}

    def _generate_examples(self):
        config: EvalSetConfig = self.builder_config
        sample = jax.jit(config.task().sample, static_argnums=1)
        batch = sample(jax.random.PRNGKey(config.seed), config.num_examples)
        inputs, targets, mask = (np.asarray(x) for x in batch)
        for i in range(config.num_examples):
            yield i, {"inputs": inputs[i], "targets": targets[i], "mask": mask[i], "index": i}


def eval_set_config(
    task: Task, num_examples: int = DEFAULT_NUM_EXAMPLES, seed: int = DEFAULT_SEED
) -> EvalSetConfig:
    """The config freezing ``num_examples`` examples of ``task`` from ``seed`` (a standard one if it exists)."""
    config = _make_config(task, num_examples, seed)
    return LrdEval.builder_configs.get(config.name, config)


def _builder(task: Task, data_dir: str, num_examples: int, seed: int) -> LrdEval:
    return LrdEval(
        data_dir=data_dir, config=eval_set_config(task, num_examples, seed), file_format=FILE_FORMAT
    )


def build_eval_set(
    task: Task, data_dir: str, num_examples: int = DEFAULT_NUM_EXAMPLES, seed: int = DEFAULT_SEED
) -> str:
    """Write the frozen set of ``task`` under ``data_dir`` (a no-op if it exists); return its directory."""
    builder = _builder(task, data_dir, num_examples, seed)
    builder.download_and_prepare()
    return str(builder.data_path)


def load_eval_set(
    task: Task,
    data_dir: str,
    num_examples: int = DEFAULT_NUM_EXAMPLES,
    seed: int = DEFAULT_SEED,
    *,
    build_if_missing: bool = False,
) -> Batch:
    """The frozen set as one :class:`Batch` (``[num_examples, ...]``), equal to ``task.sample(PRNGKey(seed), n)``.

    Raises:
      FileNotFoundError: it was never built under ``data_dir`` (and ``build_if_missing`` is false).
    """
    builder = _builder(task, data_dir, num_examples, seed)
    if not builder.is_prepared():
        if not build_if_missing:
            name = builder.builder_config.name
            how = f"lrd.tasks.tfds_builder.build_eval_set(task, {data_dir!r}, {num_examples}, {seed})"
            if name in LrdEval.builder_configs:
                how += f" or `python -m lrd.tasks.tfds_builder --data-dir {data_dir} --config {name}`"
            raise FileNotFoundError(
                f"frozen eval set {name!r} is not built under {data_dir!r}; build it with {how}"
            )
        builder.download_and_prepare()
    source = builder.as_data_source(split=SPLIT)
    examples = [source[i] for i in range(len(source))]
    examples.sort(key=lambda ex: int(ex["index"]))
    return Batch(*(jnp.asarray(np.stack([ex[k] for ex in examples])) for k in ("inputs", "targets", "mask")))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lrd.tasks.tfds_builder --data-dir DIR [--config NAME ...]``: build standard frozen sets."""
    parser = argparse.ArgumentParser(prog="python -m lrd.tasks.tfds_builder", description=main.__doc__)
    parser.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
    parser.add_argument(
        "--config", action="append", default=None, help="config name (default: all standard ones)"
    )
    args = parser.parse_args(argv)
    names = args.config or list(LrdEval.builder_configs)
    unknown = sorted(set(names) - set(LrdEval.builder_configs))
    if unknown:
        parser.error(f"unknown config(s) {unknown}; allowed values: {', '.join(LrdEval.builder_configs)}")
    for name in names:
        builder = LrdEval(data_dir=args.data_dir, config=name, file_format=FILE_FORMAT)
        builder.download_and_prepare()
        print(f"{name}: {builder.data_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
