"""Multi-query associative recall, MQAR (Arora et al. 2023, "Zoology", sec. 3 and appendix; generator of the
Zoology code base, ``multiquery_ar``).

Vocabulary of ``V = vocab_size`` tokens: 0 is the blank, keys are ``1 .. V/2 - 1``, values are ``V/2 .. V - 1``.
With ``T = lag`` (the whole sequence length, Zoology's ``input_seq_len``) and ``D = num_kv_pairs``:

* steps ``[0, 2D)`` (the context): ``k_1 v_1 k_2 v_2 ... k_D v_D``, the ``D`` keys drawn uniformly without
  replacement from the key tokens and the ``D`` values likewise from the value tokens (so keys are distinct);
* steps ``[2D, T)`` (the query region) are read as ``S = (T - 2D) / 2`` slots of two steps. Each key is queried
  exactly once: ``D`` distinct slots ``g_1..g_D`` are drawn without replacement with probabilities
  ``P(slot i) ~ (i + 1)^(power_a - 1)`` for ``i = 0..S-1`` (a power law that favours queries soon after the
  context; ``power_a = 1`` is uniform, Zoology uses 0.01), and key ``k_j`` is placed at step ``2D + 2 g_j``;
* every other step is blank, or, with ``random_non_queries`` (Zoology's default), a token drawn uniformly from
  all ``V`` ids (these steps are never scored, and may by chance repeat a key or a value).

Target: at the step holding the query ``k_j`` the model must output ``v_j`` (next-token prediction at that step);
only those ``D`` steps are scored (``mask``). The input-blind baseline (it sees the query but not the context)
guesses uniformly among the ``V - V/2`` value tokens: chance cross-entropy ``log(V - V/2)``. Solved when held-out
per-query accuracy reaches ``accuracy_threshold`` (0.99). Constraints as in Zoology: ``T`` even and
``4D <= T``; here also ``D <= V/2 - 1`` (enough distinct keys). Zoology's paper sweeps ``T`` in 64..512 and
``D`` in 4..64 with ``V = 8192``, which is also its generator's default vocabulary, and that generator requires
``V > T``. The defaults here (``V = 64``, ``T = 64``, ``D = 8``) are this project's CPU-sized setting, not
Zoology's, and have ``V = T``, which Zoology's generator would refuse; set ``vocab_size`` above ``lag`` to stay
within its constraint.

Sampling without replacement under the power law uses the Gumbel top-k trick, which draws from exactly the same
distribution as sequential sampling with renormalisation (NumPy's ``choice(replace=False, p=...)``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask


@register_task(
    "mqar", description="multi-query associative recall: key-value pairs, then queries (Arora et al. 2023)"
)
@dataclasses.dataclass(frozen=True)
class MultiQueryRecall(ClassificationTask):
    """MQAR (see module docstring). ``inputs: int32[batch, lag]`` token ids, targets likewise.

    Attributes:
      lag: total sequence length ``T`` (even).
      num_kv_pairs: number ``D`` of key-value pairs (each queried once).
      vocab_size: number of token ids ``V`` (even); keys are the lower half (without 0), values the upper half.
      power_a: exponent of the power law placing the queries (1.0 = uniform slots).
      random_non_queries: fill unscored steps with random tokens instead of blanks.
      accuracy_threshold: solved when held-out per-query accuracy reaches it.
    """

    input_kind = "tokens"

    lag: int = 64
    num_kv_pairs: int = 8
    vocab_size: int = 64
    power_a: float = 0.01
    random_non_queries: bool = True
    accuracy_threshold: float = 0.99

    def validate(self) -> None:
        if not isinstance(self.num_kv_pairs, int) or self.num_kv_pairs < 1:
            raise ValueError(f"mqar: num_kv_pairs must be an int >= 1, got {self.num_kv_pairs!r}")
        if not isinstance(self.lag, int) or self.lag % 2 or self.lag < 4 * self.num_kv_pairs:
            raise ValueError(
                f"mqar: lag (the sequence length) must be an even int >= 4 * num_kv_pairs = "
                f"{4 * self.num_kv_pairs}, got {self.lag!r}"
            )
        if (
            not isinstance(self.vocab_size, int)
            or self.vocab_size % 2
            or self.vocab_size // 2 - 1 < self.num_kv_pairs
        ):
            raise ValueError(
                f"mqar: vocab_size must be an even int with vocab_size/2 - 1 >= num_kv_pairs={self.num_kv_pairs} "
                f"(distinct keys), got {self.vocab_size!r}"
            )
        if not self.power_a > 0:
            raise ValueError(f"mqar: power_a must be > 0, got {self.power_a!r}")

    @property
    def name(self) -> str:
        return "mqar"

    @property
    def seq_len(self) -> int:
        return self.lag

    @property
    def output_dim(self) -> int:
        return self.vocab_size

    @property
    def num_values(self) -> int:
        return self.vocab_size - self.vocab_size // 2

    @property
    def chance_loss(self) -> float:
        return math.log(self.num_values)

    def slot_log_probs(self) -> jax.Array:
        """``float32[S]``: log-probabilities of the query slots, ``log((i+1)^(power_a-1) / Z)``."""
        num_slots = (self.lag - 2 * self.num_kv_pairs) // 2
        logits = (self.power_a - 1.0) * jnp.log(jnp.arange(1, num_slots + 1, dtype=jnp.float32))
        return jax.nn.log_softmax(logits)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        pairs, length, half = self.num_kv_pairs, self.lag, self.vocab_size // 2
        k_keys, k_values, k_slots, k_noise = jax.random.split(key, 4)
        # Without replacement: the first `pairs` entries of a uniformly random permutation.
        keys = 1 + jnp.argsort(jax.random.uniform(k_keys, (batch_size, half - 1)), axis=1)[:, :pairs]
        values = (
            half + jnp.argsort(jax.random.uniform(k_values, (batch_size, self.num_values)), axis=1)[:, :pairs]
        )
        keys, values = keys.astype(jnp.int32), values.astype(jnp.int32)
        log_p = self.slot_log_probs()
        # Gumbel top-k: the indices of the `pairs` largest log p + Gumbel noise are a draw without replacement.
        scores = log_p[None, :] + jax.random.gumbel(k_slots, (batch_size, log_p.shape[0]))
        _, slots = jax.lax.top_k(scores, pairs)
        query_steps = 2 * pairs + 2 * slots
        context = jnp.stack([keys, values], axis=2).reshape(batch_size, 2 * pairs)
        rows = jnp.arange(batch_size)[:, None]
        inputs = jnp.zeros((batch_size, length), jnp.int32).at[:, : 2 * pairs].set(context)
        inputs = inputs.at[rows, query_steps].set(keys)
        targets = jnp.zeros((batch_size, length), jnp.int32).at[rows, query_steps].set(values)
        mask = jnp.zeros((batch_size, length), jnp.float32).at[rows, query_steps].set(1.0)
        if self.random_non_queries:
            noise = jax.random.randint(k_noise, (batch_size, length), 0, self.vocab_size)
            inputs = jnp.where(inputs == 0, noise, inputs)
        return Batch(inputs, targets, mask)

    def solved(self, metrics) -> bool:
        return bool(metrics["accuracy"] >= self.accuracy_threshold)
