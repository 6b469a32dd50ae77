"""Minimal gated recurrences: minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024,
"Were RNNs All We Needed?", arXiv:2410.01201).

Both cells drop every dependence of the gates on the previous state, so the recurrence becomes *linear* in ``h``
with input-dependent coefficients, ``h_t = a_t * h_{t-1} + b_t`` (elementwise), and runs as a parallel scan:

* minGRU (paper Sec. 3.1): ``z_t = sigmoid(Linear_z(x_t))``, ``h~_t = g(Linear_h(x_t))``,
  ``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t``; so ``a_t = 1 - z_t`` and ``b_t = z_t * h~_t``.
* minLSTM (paper Sec. 3.2): ``f_t = sigmoid(Linear_f(x_t))``, ``i_t = sigmoid(Linear_i(x_t))``,
  ``h~_t = g(Linear_h(x_t))``, normalised gates ``f'_t = f_t / (f_t + i_t)``, ``i'_t = i_t / (f_t + i_t)``,
  ``h_t = f'_t * h_{t-1} + i'_t * h~_t``; so ``a_t = f'_t`` and ``b_t = i'_t * h~_t``. The normalisation makes
  the scale of ``h`` independent of time (the paper's "length independence").

``g(x) = x + 1/2`` for ``x >= 0`` and ``sigmoid(x)`` otherwise (paper Appendix, the log-space versions) is
continuous at 0 (both sides are 1/2) and strictly positive, which is what allows ``log h`` to exist. This file
uses ``g`` in both computation paths, so they compute the same function.

Two computation paths, chosen by the field ``log_space``:

* ``log_space=False`` (default): the coefficients ``(a_t, b_t)`` go to :func:`lrd.scan.linear_scan` in any
  ``scan_mode`` (``sequential``, ``associative`` (default), ``chunked`` with ``chunk_size``).
* ``log_space=True``: the paper's log-space parallel scan (Appendix, ``parallel_scan_log``). With
  ``A*_t = sum_{r<=t} log a_r`` and zero initial state, ``h_t = exp(A*_t) * sum_{s<=t} exp(log b_s - A*_s)``, so
  ``log h_t = A*_t + logcumsumexp_s(log b_s - A*_s)``: one cumulative sum and one cumulative log-sum-exp.
  ``log a`` and ``log b`` are formed without ever leaving log space: ``log(1 - z) = -softplus(k)``,
  ``log z = -softplus(-k)``, and for minLSTM ``log f' = -softplus(d)``, ``log i' = -softplus(-d)`` with
  ``d = log(i/f) = softplus(-k_f) - softplus(-k_i)``. The two paths agree to float32 rounding; the log-space one
  loses about ``|A*_T| * eps`` of relative precision (the subtraction ``A*_T + (... - A*_s)``), which is
  negligible while the forget gates stay near 1 and grows with strong decay over very long sequences.

The gradient probe (``dL/dh_t``) needs the probe added to the state inside the recurrence, which has no
log-space form (``h + p`` may be negative). When the ``"probes"`` collection is requested, the cell therefore
runs the linear path with its ``scan_mode`` even if ``log_space=True``: the same function, the same gradients.

Shapes: ``x: float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; the state ``h`` has
``hidden_size`` units, as in the paper's minimal form (no expansion or output projection).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import probe_variable, to_batch_major, to_time_major
from lrd.registry import register_mixer
from lrd.scan import SCAN_MODES, linear_scan

__all__ = [
    "MinGRU",
    "MinLSTM",
    "g",
    "log_g",
    "log_space_scan",
    "min_gru",
    "min_lstm",
    "min_gru_coefficients",
    "min_lstm_coefficients",
]


# ----------------------------------------------------------------------------------------------------------------
# Pure functions. Pre-activations are time-major ``[time, batch, hidden]``.


def g(x: jax.Array) -> jax.Array:
    """The paper's positive activation ``g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0)``; continuous, ``g > 0``."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """``log g(x)``: ``log(x + 1/2)`` for ``x >= 0``, ``log sigmoid(x) = -softplus(-x)`` otherwise."""
    # relu inside the log keeps the branch that `where` discards finite, so its gradient cannot turn into NaN.
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def log_space_scan(log_a: jax.Array, log_b: jax.Array) -> jax.Array:
    """``h_t = a_t h_{t-1} + b_t`` from ``h_0 = 0`` with positive ``a, b`` given as logs (paper's Appendix).

    ``log h_t = A*_t + logcumsumexp_{s<=t}(log b_s - A*_s)`` with ``A*_t = cumsum_{r<=t} log a_r``.
    ``log_a, log_b: [time, ...]`` (time-major); returns ``h: [time, ...]``.
    """
    a_star = jnp.cumsum(log_a, axis=0)
    return jnp.exp(a_star + jax.lax.cumlogsumexp(log_b - a_star, axis=0))


def min_gru_coefficients(gate_logit: jax.Array, candidate_logit: jax.Array) -> tuple[jax.Array, jax.Array]:
    """minGRU as ``(a, b)`` of ``h_t = a_t h_{t-1} + b_t``: ``a = 1 - z``, ``b = z g(h~)``, ``z = sigmoid(k)``."""
    z = jax.nn.sigmoid(gate_logit)
    return jax.nn.sigmoid(-gate_logit), z * g(candidate_logit)  # 1 - sigmoid(k) == sigmoid(-k)


def min_lstm_coefficients(
    forget_logit: jax.Array, input_logit: jax.Array, candidate_logit: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """minLSTM as ``(a, b)``: ``a = f / (f + i)``, ``b = i / (f + i) * g(h~)``.

    Computed as ``f' = sigmoid(-d)``, ``i' = sigmoid(d)`` with ``d = log(i / f)``, which equals the quotients
    exactly and never divides by a vanishing ``f + i``.
    """
    d = _log_input_over_forget(forget_logit, input_logit)
    return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * g(candidate_logit)


def _log_input_over_forget(forget_logit: jax.Array, input_logit: jax.Array) -> jax.Array:
    """``d = log(sigmoid(k_i) / sigmoid(k_f)) = softplus(-k_f) - softplus(-k_i)``."""
    return jax.nn.softplus(-forget_logit) - jax.nn.softplus(-input_logit)


def min_gru(
    gate_logit: jax.Array,
    candidate_logit: jax.Array,
    *,
    mode: str = "associative",
    chunk_size: int = 64,
    log_space: bool = False,
    probe: jax.Array | None = None,
) -> jax.Array:
    """minGRU (paper Sec. 3.1, Eq. for ``h_t``) over all steps, from ``h_0 = 0``.

    Args:
      gate_logit: ``Linear_z(x)``, ``float32[time, batch, hidden]``.
      candidate_logit: ``Linear_h(x)``, same shape.
      mode, chunk_size: :func:`lrd.scan.linear_scan` options of the linear path.
      log_space: use the paper's log-space scan (ignored when ``probe`` is given, see the module docstring).
      probe: ``None`` or zeros ``[time, batch, hidden]``.

    Returns:
      ``h: float32[time, batch, hidden]``.
    """
    if log_space and probe is None:
        log_a = -jax.nn.softplus(gate_logit)  # log(1 - z)
        log_b = -jax.nn.softplus(-gate_logit) + log_g(candidate_logit)  # log z + log g(h~)
        return log_space_scan(log_a, log_b)
    a, b = min_gru_coefficients(gate_logit, candidate_logit)
    return linear_scan(a, b, mode=mode, chunk_size=chunk_size, probe=probe)


def min_lstm(
    forget_logit: jax.Array,
    input_logit: jax.Array,
    candidate_logit: jax.Array,
    *,
    mode: str = "associative",
    chunk_size: int = 64,
    log_space: bool = False,
    probe: jax.Array | None = None,
) -> jax.Array:
    """minLSTM with normalised gates (paper Sec. 3.2) over all steps, from ``h_0 = 0``.

    Args:
      forget_logit, input_logit, candidate_logit: ``Linear_f(x)``, ``Linear_i(x)``, ``Linear_h(x)``, each
        ``float32[time, batch, hidden]``.
      mode, chunk_size, log_space, probe: as for :func:`min_gru`.

    Returns:
      ``h: float32[time, batch, hidden]``.
    """
    if log_space and probe is None:
        d = _log_input_over_forget(forget_logit, input_logit)
        log_a = -jax.nn.softplus(d)  # log f'
        log_b = -jax.nn.softplus(-d) + log_g(candidate_logit)  # log i' + log g(h~)
        return log_space_scan(log_a, log_b)
    a, b = min_lstm_coefficients(forget_logit, input_logit, candidate_logit)
    return linear_scan(a, b, mode=mode, chunk_size=chunk_size, probe=probe)


# ----------------------------------------------------------------------------------------------------------------
# Modules


class _MinimalCell(nn.Module):
    """Fields and checks shared by :class:`MinGRU` and :class:`MinLSTM`."""

    NAME: ClassVar[str] = "minimal"
    # lrd.bench runs the log-space form once and the linear form once per scan_mode.
    FORM_FIELD: ClassVar[str] = "log_space"
    FORMS: ClassVar[tuple[bool, ...]] = (False, True)
    SCAN_FORM: ClassVar[bool] = False

    hidden_size: int
    scan_mode: str = "associative"
    chunk_size: int = 64
    log_space: bool = False

    def _check_options(self) -> None:
        if self.scan_mode not in SCAN_MODES:
            raise ValueError(
                f"{self.NAME}: scan_mode={self.scan_mode!r} is unknown; allowed values: {', '.join(SCAN_MODES)}"
            )
        if not isinstance(self.log_space, bool):
            raise ValueError(
                f"{self.NAME}: log_space={self.log_space!r} is invalid; allowed values: True, False"
            )
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"{self.NAME}: chunk_size must be an int >= 1, got {self.chunk_size!r}")

    def _linear(self, x: jax.Array, name: str, bias: float = 0.0) -> jax.Array:
        """The hoisted projection ``x W + b`` for all steps: ``[batch, time, d_in] -> [time, batch, hidden]``."""
        kernel = self.param(f"{name}_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        bias_param = self.param(f"{name}_bias", nn.initializers.constant(bias), (self.hidden_size,))
        return to_time_major(x @ kernel + bias_param)

    def _probe(self, x: jax.Array) -> jax.Array | None:
        return probe_variable(self, jnp.zeros((x.shape[0], self.hidden_size), jnp.float32), x.shape[1])


@register_mixer(
    "mingru", family="minimal", description="minGRU: GRU without state-dependent gates (Feng et al. 2024)"
)
class MinGRU(_MinimalCell):
    """minGRU layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`min_gru`.

    Attributes:
      hidden_size: width of the state ``h`` and of the output.
      scan_mode, chunk_size: :func:`lrd.scan.linear_scan` options of the linear path.
      log_space: run the paper's log-space scan instead (see the module docstring).
      update_bias: initial bias of ``Linear_z``. Negative values start with ``z`` small, i.e. ``h`` mostly kept
        from step to step (``1 - z = sigmoid(-update_bias)``), which helps long lags; 0 is PyTorch-like.

    Parameters: ``update_gate_kernel [d_in, H]``, ``update_gate_bias [H]`` (``Linear_z``), ``candidate_kernel``,
    ``candidate_bias`` (``Linear_h``); kernels LeCun-normal.
    """

    NAME: ClassVar[str] = "mingru"
    update_bias: float = -1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self._check_options()
        gate_logit = self._linear(x, "update_gate", self.update_bias)
        candidate_logit = self._linear(x, "candidate")
        h = min_gru(
            gate_logit,
            candidate_logit,
            mode=self.scan_mode,
            chunk_size=self.chunk_size,
            log_space=self.log_space,
            probe=self._probe(x),
        )
        return to_batch_major(h)


@register_mixer(
    "minlstm",
    family="minimal",
    description="minLSTM: normalised gates without state dependence (Feng et al. 2024)",
)
class MinLSTM(_MinimalCell):
    """minLSTM layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`min_lstm`.

    Attributes:
      hidden_size, scan_mode, chunk_size, log_space: as for :class:`MinGRU`.
      forget_bias, input_bias: initial biases of ``Linear_f`` and ``Linear_i``. Since ``f' = f / (f + i)``, only
        their difference matters at initialisation; ``forget_bias > input_bias`` starts with ``f'`` above 1/2.

    Parameters: ``forget_gate_kernel/bias`` (``Linear_f``), ``input_gate_kernel/bias`` (``Linear_i``),
    ``candidate_kernel/bias`` (``Linear_h``); kernels LeCun-normal.
    """

    NAME: ClassVar[str] = "minlstm"
    forget_bias: float = 1.0
    input_bias: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self._check_options()
        forget_logit = self._linear(x, "forget_gate", self.forget_bias)
        input_logit = self._linear(x, "input_gate", self.input_bias)
        candidate_logit = self._linear(x, "candidate")
        h = min_lstm(
            forget_logit,
            input_logit,
            candidate_logit,
            mode=self.scan_mode,
            chunk_size=self.chunk_size,
            log_space=self.log_space,
            probe=self._probe(x),
        )
        return to_batch_major(h)
