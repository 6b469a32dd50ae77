"""The task contract: a pure, jit-able generator plus its loss, metrics, chance baseline and solved criterion.

A task is a frozen (hashable) dataclass, so it can be a static argument of ``jax.jit``. Every task provides:

* ``sample(key, batch_size) -> Batch``: a fresh batch as a pure function of a PRNG key (same key, same batch).
* ``input_kind`` (``"tokens"`` with ``vocab_size``, or ``"real"`` with ``input_dim``), ``output_dim``.
* ``loss(outputs, batch)``: scalar training loss; ``metrics(outputs, batch)``: dict of scalars (includes ``loss``).
* ``chance_loss``: the loss of the best predictor that ignores the inputs it must remember.
* ``solved(metrics)``: whether held-out metrics meet the task's criterion.

The model reads out at every step (``outputs: [batch, time, output_dim]``); ``Batch.mask`` weights the loss per
step, which expresses both last-step and every-step readouts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["Batch", "Task", "ClassificationTask", "RegressionTask", "masked_mean"]


class Batch(NamedTuple):
    """One minibatch.

    Attributes:
      inputs: ``int32[batch, time]`` token ids, or ``float32[batch, time, input_dim]``.
      targets: ``int32[batch, time]`` class ids, or ``float32[batch, time, output_dim]``.
      mask: ``float32[batch, time]`` loss weight per step (1 where the step is scored).
    """

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """``sum(values * mask) / sum(mask)`` (with a guard against an all-zero mask)."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of all tasks (see the module docstring for the contract)."""

    input_kind: ClassVar[str] = "real"  # "tokens" or "real"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field if the configuration is impossible."""

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError(f"{self.name} has real-valued inputs")

    @property
    def input_dim(self) -> int:
        raise NotImplementedError(f"{self.name} has token inputs")

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    @property
    def chance_loss(self) -> float:
        raise NotImplementedError

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        raise NotImplementedError

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        raise NotImplementedError

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        raise NotImplementedError

    def solved(self, metrics: dict[str, Any]) -> bool:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: name, options, sequence length and chance loss."""
        return {
            "task": self.name,
            **dataclasses.asdict(self),
            "seq_len": self.seq_len,
            "chance_loss": float(self.chance_loss),
        }


@dataclasses.dataclass(frozen=True)
class ClassificationTask(Task):
    """Per-step classification with masked softmax cross-entropy; ``accuracy`` over scored steps."""

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        losses = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), batch.targets)
        return masked_mean(losses, batch.mask)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        correct = (jnp.argmax(outputs, axis=-1) == batch.targets).astype(jnp.float32)
        return {"loss": self.loss(outputs, batch), "accuracy": masked_mean(correct, batch.mask)}


@dataclasses.dataclass(frozen=True)
class RegressionTask(Task):
    """Per-step regression with masked mean squared error; also the largest absolute error."""

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        sq = jnp.sum(jnp.square(outputs.astype(jnp.float32) - batch.targets), axis=-1)
        return masked_mean(sq, batch.mask)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        abs_err = jnp.max(jnp.abs(outputs.astype(jnp.float32) - batch.targets), axis=-1)
        return {
            "loss": self.loss(outputs, batch),
            "max_abs_error": jnp.max(jnp.where(batch.mask > 0, abs_err, 0.0)),
        }
