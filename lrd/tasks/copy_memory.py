"""Copy memory (Arjovsky, Shah & Bengio 2016, sec. 4.1; after Hochreiter & Schmidhuber 1997).

Alphabet: token 0 is blank, tokens ``1..num_symbols`` are symbols, token ``num_symbols + 1`` is the delimiter.
With ``L = copy_length`` (10) and ``lag = T``, a sequence has ``T + 2L`` steps:

* input: ``L`` symbols drawn uniformly from ``1..num_symbols``, then ``T - 1`` blanks, the delimiter, ``L`` blanks;
* target: blank for the first ``T + L`` steps, then the ``L`` symbols in order.

The loss is cross-entropy averaged over all ``T + 2L`` steps. The input-blind baseline predicts blank until the
recall span and uniform symbols during it: ``L * log(num_symbols) / (T + 2L)`` (``10 log 8 / (T + 20)``).
Solved when held-out per-symbol accuracy on the recall span is >= 0.99. Each symbol must be held ``T + L`` steps.

Variable lag (``min_lag`` set; the default ``min_lag=None`` is the fixed-lag task above, bit for bit):
  Each example draws its own lag ``tau ~ U{min_lag, ..., lag}`` (inclusive). Arrays keep the maximal length
  ``lag + 2L`` and the example is left-padded with ``lag - tau`` blanks: with ``o = lag - tau`` the input is
  ``o`` blanks, the ``L`` symbols at steps ``[o, o + L)``, ``tau - 1`` blanks, the delimiter at the fixed step
  ``lag + L - 1``, and ``L`` blanks; the target is blank except on the last ``L`` steps (the symbols in order).
  So the delimiter and the recall span sit at the same steps for every example, and each symbol must be held
  ``tau + L`` steps. The target is blank at every step outside the recall span whatever ``tau`` is, so the
  input-blind baseline and hence the chance loss are the fixed-lag formula with the padded length,
  ``L * log(num_symbols) / (lag + 2L)``. :meth:`CopyMemory.sample_with_lags` also returns each ``tau``.
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
    """Copy memory (see module docstring). ``inputs: int32[batch, lag + 2L]``, targets likewise.

    Attributes:
      lag: blanks between the last symbol and the recall span, plus one (the maximal lag if ``min_lag`` is set).
      num_symbols: alphabet size (tokens ``1..num_symbols``).
      copy_length: number of symbols ``L`` to recall.
      accuracy_threshold: solved when held-out per-symbol recall accuracy reaches it.
      min_lag: ``None`` for a fixed lag; otherwise each example's lag is uniform in ``[min_lag, lag]``.
    """

    input_kind = "tokens"

    lag: int = 100
    num_symbols: int = 8
    copy_length: int = 10
    accuracy_threshold: float = 0.99
    min_lag: int | None = None

    def validate(self) -> None:
        if not isinstance(self.lag, int) or self.lag < 1:
            raise ValueError(f"copy: lag must be an int >= 1, got {self.lag!r}")
        if self.num_symbols < 2:
            raise ValueError(f"copy: num_symbols must be >= 2, got {self.num_symbols!r}")
        if self.copy_length < 1:
            raise ValueError(f"copy: copy_length must be >= 1, got {self.copy_length!r}")
        if self.min_lag is not None and (
            not isinstance(self.min_lag, int)
            or isinstance(self.min_lag, bool)
            or not 1 <= self.min_lag <= self.lag
        ):
            raise ValueError(
                f"copy: min_lag must be None or an int in [1, lag={self.lag}], got {self.min_lag!r}"
            )

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
        return self.sample_with_lags(key, batch_size)[0]

    def sample_with_lags(self, key: jax.Array, batch_size: int) -> tuple[Batch, jax.Array]:
        """``(batch, lags)``: the batch of :meth:`sample` and each example's lag ``int32[batch]``."""
        length, span = self.seq_len, self.copy_length
        inputs = jnp.zeros((batch_size, length), jnp.int32)
        if self.min_lag is None:
            symbols = jax.random.randint(key, (batch_size, span), 1, self.num_symbols + 1)
            lags = jnp.full((batch_size,), self.lag, jnp.int32)
            inputs = inputs.at[:, :span].set(symbols)
        else:
            k_symbols, k_lag = jax.random.split(key)
            symbols = jax.random.randint(k_symbols, (batch_size, span), 1, self.num_symbols + 1)
            lags = jax.random.randint(k_lag, (batch_size,), self.min_lag, self.lag + 1)
            positions = (self.lag - lags)[:, None] + jnp.arange(span)[None, :]
            inputs = inputs.at[jnp.arange(batch_size)[:, None], positions].set(symbols)
        inputs = inputs.at[:, length - span - 1].set(self.delimiter)
        targets = jnp.zeros((batch_size, length), jnp.int32).at[:, length - span :].set(symbols)
        mask = jnp.ones((batch_size, length), jnp.float32)
        return Batch(inputs, targets, mask), lags

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        base = super().metrics(outputs, batch)
        correct = (jnp.argmax(outputs, axis=-1) == batch.targets).astype(jnp.float32)
        base["recall_accuracy"] = masked_mean(correct, self.recall_mask(batch.targets.shape[0]))
        return base

    def solved(self, metrics) -> bool:
        return bool(metrics["recall_accuracy"] >= self.accuracy_threshold)
