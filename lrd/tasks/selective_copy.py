"""Selective copying (Gu & Dao 2023, "Mamba", sec. 3.1 and appendix E.1).

The copy task of Arjovsky et al. (2016) with the symbols no longer at fixed steps: ``num_tokens`` symbols are
scattered at random positions among blank ("noise") tokens, so solving it requires content-dependent selection
(what to store) rather than a fixed time offset.

Alphabet: token 0 is blank, tokens ``1..num_symbols`` are symbols, token ``num_symbols + 1`` is the delimiter
(vocabulary ``num_symbols + 2``; the Mamba paper uses 16 tokens in all, i.e. ``num_symbols=14`` here).
With ``T = lag`` and ``L = num_tokens`` a sequence has ``T + 1 + L`` steps:

* steps ``[0, T)`` (the data region): ``L`` positions drawn uniformly without replacement (every size-``L``
  subset equally likely) hold symbols drawn i.i.d. uniformly from ``1..num_symbols``; every other step is blank;
* step ``T``: the delimiter;
* steps ``T + 1 .. T + L``: blank inputs; the targets there are the ``L`` symbols in their order of appearance.

How this layout differs from the generator of the Mamba lineage: there the data region is followed by ``L``
marker tokens, one per recall step, as the inputs of the recall steps (``T + L`` steps in all); here one delimiter
step is followed by ``L`` blank inputs (``T + 1 + L`` steps). Both tell the model when to start recalling and
which output comes next only by position; the data region, its noise and the scored targets are the same.

Only the ``L`` recall steps are scored (``mask``), as in the Mamba and Zoology setups. The input-blind baseline
guesses uniformly among the symbols at each recall step: chance cross-entropy ``log(num_symbols)``. Solved when
held-out per-token accuracy on the recall steps reaches ``accuracy_threshold`` (0.99). A symbol at data position
``p`` that is recalled as the ``k``-th output (step ``T + k``) is held ``T + k - p`` steps, between ``L + 1``
and ``T + 1``. Mamba's appendix E.1 setting: sequences of 4096 steps, a vocabulary of 16 tokens including the noise
token, 16 tokens to memorise (here ``lag=4079, num_tokens=16, num_symbols=14``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask


@register_task(
    "selective_copy", description="selective copying: recall scattered tokens in order (Gu & Dao 2023)"
)
@dataclasses.dataclass(frozen=True)
class SelectiveCopy(ClassificationTask):
    """Selective copying (see module docstring). ``inputs: int32[batch, lag + 1 + num_tokens]``, targets likewise.

    Attributes:
      lag: length ``T`` of the data region in which the symbols are scattered.
      num_tokens: number ``L`` of symbols to memorise and reproduce.
      num_symbols: alphabet size (tokens ``1..num_symbols``).
      accuracy_threshold: solved when held-out per-token recall accuracy reaches it.
    """

    input_kind = "tokens"

    lag: int = 100
    num_tokens: int = 16
    num_symbols: int = 14
    accuracy_threshold: float = 0.99

    def validate(self) -> None:
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ValueError(f"selective_copy: num_tokens must be an int >= 1, got {self.num_tokens!r}")
        if not isinstance(self.lag, int) or self.lag < self.num_tokens:
            raise ValueError(
                f"selective_copy: lag must be an int >= num_tokens={self.num_tokens} (the data region must hold "
                f"every symbol), got {self.lag!r}"
            )
        if not isinstance(self.num_symbols, int) or self.num_symbols < 2:
            raise ValueError(f"selective_copy: num_symbols must be an int >= 2, got {self.num_symbols!r}")

    @property
    def name(self) -> str:
        return "selective_copy"

    @property
    def seq_len(self) -> int:
        return self.lag + 1 + self.num_tokens

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
        return math.log(self.num_symbols)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        span, length = self.num_tokens, self.seq_len
        k_pos, k_sym = jax.random.split(key)
        # A uniformly random size-`span` subset of [0, lag): the first `span` entries of a random permutation,
        # sorted so that symbols are recalled in their order of appearance.
        order = jnp.argsort(jax.random.uniform(k_pos, (batch_size, self.lag)), axis=1)
        positions = jnp.sort(order[:, :span], axis=1)
        symbols = jax.random.randint(k_sym, (batch_size, span), 1, self.num_symbols + 1)
        rows = jnp.arange(batch_size)[:, None]
        inputs = jnp.zeros((batch_size, length), jnp.int32).at[rows, positions].set(symbols)
        inputs = inputs.at[:, self.lag].set(self.delimiter)
        targets = jnp.zeros((batch_size, length), jnp.int32).at[:, self.lag + 1 :].set(symbols)
        mask = jnp.zeros((batch_size, length), jnp.float32).at[:, self.lag + 1 :].set(1.0)
        return Batch(inputs, targets, mask)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """Loss, per-token recall ``accuracy`` and ``sequence_accuracy`` (all ``L`` tokens right)."""
        base = super().metrics(outputs, batch)
        correct = (jnp.argmax(outputs, axis=-1) == batch.targets) | (batch.mask == 0)
        base["sequence_accuracy"] = jnp.mean(jnp.all(correct, axis=1).astype(jnp.float32))
        return base

    def solved(self, metrics) -> bool:
        return bool(metrics["accuracy"] >= self.accuracy_threshold)
