"""The adding problem, in the two variants the literature uses (pick with ``variant``), fixed or variable lag.

``variant="arjovsky"`` (Arjovsky, Shah & Bengio 2016, sec. 4.2; default):
  Length ``T = lag``. Input channel 0: values ``X_t ~ U[0, 1]``. Channel 1: a marker, 1 at exactly two steps,
  one drawn uniformly from the first half ``[0, T/2)`` and one from the second half ``[T/2, T)``, 0 elsewhere.
  Target, read out at the last step only: ``X_{t1} + X_{t2}``. The best input-blind predictor outputs the mean 1,
  with MSE ``Var(X1 + X2) = 2/12 = 1/6 ~ 0.167`` (the chance level). Solved when held-out MSE < 0.01 (6% of chance).
  The first marker is at least ``T/2`` steps before the readout, so the lag to bridge is between T/2 and T.

``variant="hochreiter"`` (Hochreiter & Schmidhuber 1997, experiment 4, as the paper states it):
  ``T = lag`` is the *minimal* length: each sequence has its own length ``L ~ U{T, ..., T + T//10}``, so arrays
  have ``seq_len = T + T//10`` steps and a sequence occupies the last ``L`` of them (left padding with value 0 and
  marker 0; the readout is always the last array step). Over the sequence's own steps ``0..L-1``: values
  ``X_t ~ U[-1, 1]``; the marker channel is 1.0 at the two marked pairs, -1.0 at the first and the last pair
  (unless the first pair is marked) and 0.0 elsewhere. The first marked pair is drawn uniformly from the first ten
  pairs (its value is ``X1``); the second uniformly from the first ``T/2 - 1`` pairs *still unmarked*, i.e. from
  ``{0, ..., T//2 - 1}`` without the first (its value is ``X2``). When the first draw hits pair 0, ``X1`` is set to
  zero (in the input as in the target), as the paper does. Target ``0.5 + (X1 + X2) / 4`` in ``[0, 1]``. Chance
  MSE is the target variance, ``(0.9 / 3 + 1 / 3) / 16 = 19/480 ~ 0.0396`` (``X1`` is 0 with probability 1/10).
  Solved when *every* held-out absolute error is below 0.04 (the paper's per-sequence criterion). The lag to
  bridge is at least ``L - T/2 >= T/2 + 1`` steps. ``min_lag`` does not apply (the length is already random).

``variant="hochreiter_fixed"`` (this project's earlier, simplified form, kept because committed results used it:
``experiments/results/truncation_adding_lstm_cpu2.json``):
  Length exactly ``T = lag``; values ``X_t ~ U[-1, 1]``; the first marker uniformly in the first 10 steps, the
  second uniformly in ``[0, T/2 - 1)`` at a different step (``T/2 - 2`` choices); no -1 markers; ``X1`` never
  zeroed. Target ``0.5 + (X1 + X2) / 4``, chance MSE ``(1/3 + 1/3) / 16 = 1/24 ~ 0.0417``, the same criterion.

Variable lag (``min_lag`` set, variants ``arjovsky`` and ``hochreiter_fixed``; the default ``min_lag=None`` is the
fixed-lag task above, bit for bit):
  Each example draws its own length ``tau ~ U{min_lag, ..., lag}`` (inclusive, independent of everything else).
  Arrays keep the maximal length ``lag``; the example occupies the *last* ``tau`` steps (left padding), so the
  readout is always the last array step. With ``o = lag - tau`` the padding steps ``[0, o)`` carry value 0 and
  marker 0, and the markers are placed by the rules above applied to the example's own length ``tau`` and shifted
  by ``o`` (Arjovsky: first in ``o + [0, tau//2)``, second in ``o + [tau//2, tau)``; fixed Hochreiter: first in
  ``o + [0, 10)``, second in ``o + [0, tau//2 - 1)`` at a different step). The target distribution does not
  depend on ``tau`` or on the padding, so the chance MSE is unchanged (1/6, resp. 1/24) and so is the solved
  criterion. :meth:`Adding.sample_with_lags` also returns each example's ``tau``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lrd.registry import register_task
from lrd.tasks.base import Batch, RegressionTask

VARIANTS = ("arjovsky", "hochreiter", "hochreiter_fixed")


@register_task(
    "adding", description="adding problem: sum two marked values (Arjovsky 2016 / Hochreiter 1997)"
)
@dataclasses.dataclass(frozen=True)
class Adding(RegressionTask):
    """Adding problem (see module docstring). ``inputs: float32[batch, lag, 2]``, targets ``[batch, lag, 1]``.

    Attributes:
      lag: sequence length ``T`` (the maximal length when ``min_lag`` is set).
      variant: ``"arjovsky"`` or ``"hochreiter"``.
      min_lag: ``None`` for a fixed length; otherwise each example's length is uniform in ``[min_lag, lag]``.
      mse_threshold: solved threshold on the held-out MSE (Arjovsky variant).
      error_threshold: solved threshold on the largest held-out absolute error (Hochreiter variant).
    """

    lag: int = 100
    variant: str = "arjovsky"
    mse_threshold: float = 0.01
    error_threshold: float = 0.04
    min_lag: int | None = None

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"adding: variant={self.variant!r} is unknown; allowed values: {', '.join(VARIANTS)}"
            )
        min_lag = {"arjovsky": 2, "hochreiter": 20, "hochreiter_fixed": 12}[self.variant]
        if not isinstance(self.lag, int) or self.lag < min_lag:
            raise ValueError(
                f"adding: lag must be an int >= {min_lag} for variant {self.variant!r}, got {self.lag!r}"
            )
        if self.variant == "hochreiter" and self.min_lag is not None:
            raise ValueError(
                "adding: min_lag must be None for variant 'hochreiter', whose length is already random in "
                f"[lag, lag + lag//10]; got {self.min_lag!r} (variable lags: variants arjovsky, hochreiter_fixed)"
            )
        if self.min_lag is not None and (
            not isinstance(self.min_lag, int)
            or isinstance(self.min_lag, bool)
            or not min_lag <= self.min_lag <= self.lag
        ):
            raise ValueError(
                f"adding: min_lag must be None or an int in [{min_lag}, lag={self.lag}] for variant "
                f"{self.variant!r}, got {self.min_lag!r}"
            )

    @property
    def name(self) -> str:
        return "adding"

    @property
    def seq_len(self) -> int:
        return self.lag + self.lag // 10 if self.variant == "hochreiter" else self.lag

    @property
    def input_dim(self) -> int:
        return 2

    @property
    def output_dim(self) -> int:
        return 1

    @property
    def chance_loss(self) -> float:
        return {"arjovsky": 1.0 / 6.0, "hochreiter": 19.0 / 480.0, "hochreiter_fixed": 1.0 / 24.0}[
            self.variant
        ]

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return self.sample_with_lags(key, batch_size)[0]

    def sample_with_lags(self, key: jax.Array, batch_size: int) -> tuple[Batch, jax.Array]:
        """``(batch, lags)``: the batch of :meth:`sample` and each example's length ``int32[batch]``."""
        if self.variant == "hochreiter":
            return self._sample_hochreiter_1997(key, batch_size)
        length = self.lag
        if self.min_lag is None:
            k_val, k_first, k_second = jax.random.split(key, 3)
            lags = jnp.full((batch_size,), length, jnp.int32)
            half = length // 2
            if self.variant == "arjovsky":
                values = jax.random.uniform(k_val, (batch_size, length))
                first = jax.random.randint(k_first, (batch_size,), 0, half)
                second = jax.random.randint(k_second, (batch_size,), half, length)
            else:
                values = jax.random.uniform(k_val, (batch_size, length), minval=-1.0, maxval=1.0)
                first = jax.random.randint(k_first, (batch_size,), 0, 10)
                # second uniform over [0, half - 1) without `first`: draw from half - 2 slots and skip `first`.
                second = jax.random.randint(k_second, (batch_size,), 0, half - 2)
                second = second + (second >= first)
        else:
            k_lag, k_val, k_first, k_second = jax.random.split(key, 4)
            lags = jax.random.randint(k_lag, (batch_size,), self.min_lag, length + 1)
            offset = length - lags
            half = lags // 2
            if self.variant == "arjovsky":
                values = jax.random.uniform(k_val, (batch_size, length))
                first = jax.random.randint(k_first, (batch_size,), 0, half)
                second = jax.random.randint(k_second, (batch_size,), half, lags)
            else:
                values = jax.random.uniform(k_val, (batch_size, length), minval=-1.0, maxval=1.0)
                first = jax.random.randint(k_first, (batch_size,), 0, 10)
                second = jax.random.randint(k_second, (batch_size,), 0, half - 2)
                second = second + (second >= first)
            first, second = first + offset, second + offset
            values = jnp.where(jnp.arange(length)[None, :] >= offset[:, None], values, 0.0)
        steps = jnp.arange(length)
        markers = (steps[None, :] == first[:, None]) | (steps[None, :] == second[:, None])
        inputs = jnp.stack([values, markers.astype(values.dtype)], axis=-1)
        total = jnp.sum(values * markers, axis=1)
        target = total if self.variant == "arjovsky" else 0.5 + total / 4.0
        targets = jnp.zeros((batch_size, length, 1), values.dtype).at[:, -1, 0].set(target)
        mask = jnp.zeros((batch_size, length), values.dtype).at[:, -1].set(1.0)
        return Batch(inputs, targets, mask), lags

    def _sample_hochreiter_1997(self, key: jax.Array, batch_size: int) -> tuple[Batch, jax.Array]:
        """The paper's experiment 4 (see module docstring): random length, -1 end markers, ``X1 = 0`` at pair 0."""
        steps = self.seq_len
        k_len, k_val, k_first, k_second = jax.random.split(key, 4)
        lags = jax.random.randint(k_len, (batch_size,), self.lag, steps + 1)
        offset = (steps - lags)[:, None]  # the sequence's pair j is array step offset + j
        position = jnp.arange(steps)[None, :] - offset  # pair index, negative in the padding
        real = position >= 0
        values = jax.random.uniform(k_val, (batch_size, steps), minval=-1.0, maxval=1.0)
        first = jax.random.randint(k_first, (batch_size, 1), 0, 10)
        # one of the first T/2 - 1 still unmarked pairs: T//2 - 1 slots of {0, ..., T//2 - 1}, skipping `first`
        second = jax.random.randint(k_second, (batch_size, 1), 0, self.lag // 2 - 1)
        second = second + (second >= first)
        marked = (position == first) | (position == second)
        values = jnp.where(real & ~((position == 0) & (first == 0)), values, 0.0)  # X1 := 0 at pair 0
        ends = ((position == 0) | (position == lags[:, None] - 1)) & ~marked
        markers = jnp.where(marked, 1.0, jnp.where(ends, -1.0, 0.0))
        inputs = jnp.stack([values, markers.astype(values.dtype)], axis=-1)
        target = 0.5 + jnp.sum(values * marked, axis=1) / 4.0
        targets = jnp.zeros((batch_size, steps, 1), values.dtype).at[:, -1, 0].set(target)
        mask = jnp.zeros((batch_size, steps), values.dtype).at[:, -1].set(1.0)
        return Batch(inputs, targets, mask), lags

    def solved(self, metrics) -> bool:
        if self.variant == "arjovsky":
            return bool(metrics["loss"] < self.mse_threshold)
        return bool(metrics["max_abs_error"] < self.error_threshold)
