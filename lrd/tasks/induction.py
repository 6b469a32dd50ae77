"""Induction heads (Olsson et al. 2022), in the synthetic form of Gu & Dao 2023 ("Mamba", sec. 4.1.2), plus a
length-extrapolation evaluation (train at ``T``, test the same parameters at ``2T .. 16T``).

Alphabet: tokens ``0 .. num_symbols - 1`` are ordinary symbols, token ``num_symbols`` is the special (trigger)
token; vocabulary ``num_symbols + 1`` (Mamba: 16 in all, i.e. ``num_symbols=15``). With ``T = lag`` steps:

* every step holds a symbol drawn i.i.d. uniformly from ``0 .. num_symbols - 1``, except
* one step ``p ~ U{0, ..., T - 3}`` holds the special token (so the token after it, at ``p + 1 <= T - 2``, is an
  ordinary symbol: the *answer*), and the last step ``T - 1`` holds the special token again.

Target, scored at the last step only: the answer ``x_{p+1}``, i.e. "the token that followed the previous
occurrence of the current token". The special token occurs exactly twice, so the answer is unambiguous. The
input-blind baseline guesses uniformly: chance cross-entropy ``log(num_symbols)``. Solved when held-out accuracy
reaches ``accuracy_threshold`` (0.99). The answer must be held ``T - 2 - p`` steps (between 1 and ``T - 2``).
Mamba trains at ``T = 256`` and tests at ``2^6 .. 2^20``; :func:`extrapolation_eval` runs that protocol for any
task with a ``lag`` field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.registry import register_task
from lrd.tasks.base import Batch, ClassificationTask, Task

__all__ = ["InductionHeads", "extrapolation_eval"]


@register_task(
    "induction", description="induction heads: after the trigger, recall what followed it (Olsson 2022)"
)
@dataclasses.dataclass(frozen=True)
class InductionHeads(ClassificationTask):
    """Induction heads (see module docstring). ``inputs: int32[batch, lag]``, targets likewise.

    Attributes:
      lag: sequence length ``T``.
      num_symbols: number of ordinary symbols (the special token is ``num_symbols``).
      accuracy_threshold: solved when held-out accuracy at the last step reaches it.
    """

    input_kind = "tokens"

    lag: int = 256
    num_symbols: int = 15
    accuracy_threshold: float = 0.99

    def validate(self) -> None:
        if not isinstance(self.lag, int) or self.lag < 4:
            raise ValueError(f"induction: lag must be an int >= 4, got {self.lag!r}")
        if not isinstance(self.num_symbols, int) or self.num_symbols < 2:
            raise ValueError(f"induction: num_symbols must be an int >= 2, got {self.num_symbols!r}")

    @property
    def name(self) -> str:
        return "induction"

    @property
    def seq_len(self) -> int:
        return self.lag

    @property
    def special_token(self) -> int:
        return self.num_symbols

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 1

    @property
    def output_dim(self) -> int:
        return self.num_symbols + 1

    @property
    def chance_loss(self) -> float:
        return math.log(self.num_symbols)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        length = self.lag
        k_tokens, k_pos = jax.random.split(key)
        tokens = jax.random.randint(k_tokens, (batch_size, length), 0, self.num_symbols)
        first = jax.random.randint(k_pos, (batch_size,), 0, length - 2)  # p in [0, T - 3]
        rows = jnp.arange(batch_size)
        tokens = tokens.at[rows, first].set(self.special_token).at[:, -1].set(self.special_token)
        answer = tokens[rows, first + 1]
        targets = jnp.zeros((batch_size, length), jnp.int32).at[:, -1].set(answer)
        mask = jnp.zeros((batch_size, length), jnp.float32).at[:, -1].set(1.0)
        return Batch(tokens.astype(jnp.int32), targets, mask)

    def solved(self, metrics) -> bool:
        return bool(metrics["accuracy"] >= self.accuracy_threshold)


def extrapolation_eval(
    model: nn.Module,
    params: Any,
    task: Task,
    factors: Sequence[int] = (1, 2, 4, 8, 16),
    key: jax.Array | None = None,
    batch_size: int = 256,
    *,
    chunk_size: int | None = None,
) -> dict[int, dict[str, Any]]:
    """Evaluate one model's ``params`` on ``task`` lengthened by each factor (``lag * factor``).

    The model must be length-agnostic (recurrent cells, or attention with relative/no positions): the same
    ``params`` are applied at every length. Batch ``f`` is ``task_f.sample(fold_in(key, f), batch_size)`` with
    ``task_f = dataclasses.replace(task, lag=task.lag * f)`` (and ``min_lag * f`` for a variable-lag task); the model runs on at most ``chunk_size`` sequences at
    a time (all at once if ``None``) to bound memory at long lengths, and the metrics are computed on the whole
    batch. ``params`` are those of one model (for a run of several seeds, index one seed first, e.g.
    ``jax.tree_util.tree_map(lambda x: x[i], state.params)``).

    Returns:
      ``{factor: {"lag", "seq_len", <task metrics as floats>, "chance_loss", "solved"}}``.
    """
    if not hasattr(task, "lag"):
        raise ValueError(f"extrapolation_eval: task {task.name!r} has no `lag` field to scale")
    if key is None:
        key = jax.random.PRNGKey(0)
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    results: dict[int, dict[str, Any]] = {}
    for factor in factors:
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"extrapolation_eval: factors must be positive ints, got {factor!r}")
        changes = {"lag": task.lag * factor}
        if getattr(task, "min_lag", None) is not None:
            changes["min_lag"] = task.min_lag * factor
        scaled = dataclasses.replace(task, **changes)
        batch = jax.jit(scaled.sample, static_argnums=1)(jax.random.fold_in(key, factor), batch_size)
        step = chunk_size or batch_size
        outputs = jnp.concatenate(
            [apply(params, batch.inputs[i : i + step]) for i in range(0, batch_size, step)], axis=0
        )
        metrics = {k: float(np.asarray(v)) for k, v in jax.jit(scaled.metrics)(outputs, batch).items()}
        results[factor] = {
            "lag": scaled.lag,
            "seq_len": scaled.seq_len,
            **metrics,
            "chance_loss": float(scaled.chance_loss),
            "solved": scaled.solved(metrics),
        }
    return results
