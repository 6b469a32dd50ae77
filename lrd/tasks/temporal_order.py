"""Temporal order (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", sec. 5.6, experiments 6a and 6b).

Classify a sequence by the temporal order of two (6a) or three (6b) widely separated marked symbols, each X or
Y, hidden among random distractors. The paper's alphabet is ``{a, b, c, d, B, E, X, Y}``; here token 0 is an
extra padding token (see below), ``a b c d`` are 1-4, ``B`` (the trigger) is 5, ``E`` (the start) is 6, ``X`` is 7
and ``Y`` is 8 (vocabulary 9).

One sequence, with ``T = lag`` (the paper: ``T = 100``) and ``r = T // 10``, positions ``t`` counted from 1 at
the ``E`` as in the paper:

* its length ``n ~ U{T, ..., T + r}`` (paper: 100..110);
* position 1 is ``E``, position ``n`` is ``B``; every other position is a distractor drawn uniformly from
  ``a b c d``, except the marked positions, each holding X or Y with probability 1/2 independently:

  - ``num_marked=2`` (6a): ``t1 ~ U{r, ..., 2r}``, ``t2 ~ U{T//2, ..., T//2 + r}`` (paper: 10..20, 50..60);
  - ``num_marked=3`` (6b): ``t1 ~ U{r, ..., 2r}``, ``t2 ~ U{T//3, ..., T//3 + r}``,
    ``t3 ~ U{2T//3, ..., 2T//3 + r}`` (paper: 10..20, 33..43, 66..76).

* class: the marked symbols read as a binary number, X = 0 and Y = 1, first marked symbol most significant:
  6a ``XX, XY, YX, YY -> 0, 1, 2, 3`` (the paper's Q, R, S, U); 6b ``XXX .. YYY -> 0 .. 7`` (Q R S U V A B C).

Arrays have the maximal length ``T + r``; each sequence is left-padded with token 0, so its ``E`` sits at step
``T + r - n`` and its ``B`` at the last step, where the class is read out (the only scored step). The classes are
uniform, so the input-blind baseline has cross-entropy ``num_marked * log 2`` (``log 4``, ``log 8``). Solved
when held-out accuracy reaches ``accuracy_threshold`` (0.99). The paper's stopping rule is stricter (average
training error below 0.1 and the last 2000 sequences all classified correctly): use ``accuracy_threshold=1.0``
with an evaluation batch of at least 2000 for that. The first marked symbol must be held at least
``T - 2r`` steps.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask

PAD, TRIGGER, START, X, Y = 0, 5, 6, 7, 8
DISTRACTORS = (1, 2, 3, 4)


@register_task(
    "temporal_order", description="temporal order of 2 or 3 marked symbols (Hochreiter & Schmidhuber 1997)"
)
@dataclasses.dataclass(frozen=True)
class TemporalOrder(ClassificationTask):
    """Temporal order, experiment 6a/6b (see module docstring). ``inputs: int32[batch, lag + lag // 10]``.

    Attributes:
      lag: minimal sequence length ``T`` (the paper: 100); marked positions scale with it.
      num_marked: 2 (experiment 6a, 4 classes) or 3 (experiment 6b, 8 classes).
      accuracy_threshold: solved when held-out accuracy at the last step reaches it.
    """

    input_kind = "tokens"

    lag: int = 100
    num_marked: int = 2
    accuracy_threshold: float = 0.99

    def validate(self) -> None:
        if self.num_marked not in (2, 3):
            raise ValueError(
                f"temporal_order: num_marked must be 2 (exp. 6a) or 3 (exp. 6b), got {self.num_marked!r}"
            )
        if not isinstance(self.lag, int) or self.lag < 20:
            raise ValueError(f"temporal_order: lag must be an int >= 20, got {self.lag!r}")

    @property
    def name(self) -> str:
        return "temporal_order"

    @property
    def spread(self) -> int:
        """``r = lag // 10``: the width of every uniform range (length and marked positions)."""
        return self.lag // 10

    @property
    def seq_len(self) -> int:
        return self.lag + self.spread

    @property
    def vocab_size(self) -> int:
        return 9

    @property
    def output_dim(self) -> int:
        return 2**self.num_marked

    @property
    def chance_loss(self) -> float:
        return self.num_marked * math.log(2.0)

    def marked_ranges(self) -> tuple[tuple[int, int], ...]:
        """The inclusive ranges ``(lo, hi)`` of the marked positions (1-based, counted from the ``E``)."""
        lag, r = self.lag, self.spread
        if self.num_marked == 2:
            return ((r, 2 * r), (lag // 2, lag // 2 + r))
        return ((r, 2 * r), (lag // 3, lag // 3 + r), (2 * lag // 3, 2 * lag // 3 + r))

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        width = self.seq_len
        k_len, k_pos, k_sym, k_dis = jax.random.split(key, 4)
        lengths = jax.random.randint(k_len, (batch_size,), self.lag, self.lag + self.spread + 1)
        offset = width - lengths  # array index of the E (position 1)
        pos_keys = jax.random.split(k_pos, self.num_marked)
        positions = jnp.stack(
            [
                jax.random.randint(k, (batch_size,), lo, hi + 1)
                for k, (lo, hi) in zip(pos_keys, self.marked_ranges(), strict=True)
            ],
            axis=1,
        )  # 1-based positions, [batch, num_marked]
        bits = jax.random.bernoulli(k_sym, 0.5, (batch_size, self.num_marked)).astype(jnp.int32)
        steps = jnp.arange(width)[None, :]
        tokens = jax.random.randint(k_dis, (batch_size, width), DISTRACTORS[0], DISTRACTORS[-1] + 1)
        tokens = jnp.where(steps < offset[:, None], PAD, tokens)
        tokens = jnp.where(steps == offset[:, None], START, tokens)
        rows = jnp.arange(batch_size)[:, None]
        tokens = tokens.at[rows, offset[:, None] + positions - 1].set(X + bits)
        tokens = tokens.at[:, -1].set(TRIGGER)
        weights = 2 ** jnp.arange(self.num_marked - 1, -1, -1)
        label = jnp.sum(bits * weights[None, :], axis=1).astype(jnp.int32)
        targets = jnp.zeros((batch_size, width), jnp.int32).at[:, -1].set(label)
        mask = jnp.zeros((batch_size, width), jnp.float32).at[:, -1].set(1.0)
        return Batch(tokens.astype(jnp.int32), targets, mask)

    def solved(self, metrics) -> bool:
        return bool(metrics["accuracy"] >= self.accuracy_threshold)
