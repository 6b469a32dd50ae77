"""Copy memory (Arjovsky, Shah & Bengio 2016, sec. 4.1; after Hochreiter & Schmidhuber 1997).

Alphabet: token 0 is blank, tokens ``1..num_symbols`` are symbols, token ``num_symbols + 1`` is the delimiter.
With ``L = copy_length`` (10) and ``lag = T``, a sequence has ``T + 2L`` steps:

* input: ``L`` symbols drawn uniformly from ``1..num_symbols``, then ``T - 1`` blanks, the delimiter, ``L`` blanks;
* target: blank for the first ``T + L`` steps, then the ``L`` symbols in order.

The loss is cross-entropy averaged over all ``T + 2L`` steps. The input-blind baseline predicts blank until the
recall span and uniform symbols during it: ``L * log(num_symbols) / (T + 2L)`` (``10 log 8 / (T + 20)``).
Solved when held-out per-symbol accuracy on the recall span is >= 0.99. Each symbol must be held ``T + L`` steps.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask, masked_mean


@register_task("copy", description="copy memory: recall 10 symbols after `lag` blanks (Arjovsky et al. 2016)")
@dataclasses.dataclass(frozen=True)
class CopyMemory(ClassificationTask):
    """Copy memory (see module docstring). ``inputs: int32[batch, lag + 2L]``, targets likewise."""

    input_kind = "tokens"

    lag: int = 100
    num_symbols: int = 8
    copy_length: int = 10
    accuracy_threshold: float = 0.99

    def validate(self) -> None:
        if not isinstance(self.lag, int) or self.lag < 1:
            raise ValueError(f"copy: lag must be an int >= 1, got {self.lag!r}")
        if self.num_symbols < 2:
            raise ValueError(f"copy: num_symbols must be >= 2, got {self.num_symbols!r}")
        if self.copy_length < 1:
            raise ValueError(f"copy: copy_length must be >= 1, got {self.copy_length!r}")

    @property
    def name(self) -> str:
        return "copy"

    @property
    def seq_len(self) -> int:
        return self.lag + 2 * self.copy_length

    @property
    def delimiter(self) -> int:
        return self.num_symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 2

    @property
    def output_dim(self) -> int:
        return self.num_symbols + 2

    @property
    def chance_loss(self) -> float:
        return self.copy_length * math.log(self.num_symbols) / self.seq_len

    def recall_mask(self, batch_size: int) -> jax.Array:
        """``float32[batch, time]``: 1 on the last ``copy_length`` steps (where symbols are recalled)."""
        steps = jnp.arange(self.seq_len)
        return jnp.broadcast_to(steps >= self.seq_len - self.copy_length, (batch_size, self.seq_len)).astype(
            jnp.float32
        )

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        length, span = self.seq_len, self.copy_length
        symbols = jax.random.randint(key, (batch_size, span), 1, self.num_symbols + 1)
        inputs = jnp.zeros((batch_size, length), jnp.int32)
        inputs = inputs.at[:, :span].set(symbols).at[:, length - span - 1].set(self.delimiter)
        targets = jnp.zeros((batch_size, length), jnp.int32).at[:, length - span :].set(symbols)
        mask = jnp.ones((batch_size, length), jnp.float32)
        return Batch(inputs, targets, mask)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        base = super().metrics(outputs, batch)
        correct = (jnp.argmax(outputs, axis=-1) == batch.targets).astype(jnp.float32)
        base["recall_accuracy"] = masked_mean(correct, self.recall_mask(batch.targets.shape[0]))
        return base

    def solved(self, metrics) -> bool:
        return bool(metrics["recall_accuracy"] >= self.accuracy_threshold)
