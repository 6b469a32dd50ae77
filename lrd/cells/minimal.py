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

Two computation paths, chosen by the field ``scan_mode``:

* ``"sequential"``, ``"associative"`` (default), ``"chunked"`` (with ``chunk_size``): the coefficients
  ``(a_t, b_t)`` go to :func:`lrd.scan.linear_scan` in that mode (``truncation`` is honoured);
* ``"log_space"``: the paper's log-space parallel scan (Appendix, ``parallel_scan_log``). With
  ``A*_t = sum_{r<=t} log a_r`` and zero initial state, ``h_t = exp(A*_t) * sum_{s<=t} exp(log b_s - A*_s)``, so
  ``log h_t = A*_t + logcumsumexp_s(log b_s - A*_s)``: one cumulative sum and one cumulative log-sum-exp.
  ``log a`` and ``log b`` are formed without ever leaving log space: ``log(1 - z) = -softplus(k)``,
  ``log z = -softplus(-k)``, and for minLSTM ``log f' = -softplus(d)``, ``log i' = -softplus(-d)`` with
  ``d = log(i/f) = softplus(-k_f) - softplus(-k_i)``. The two paths agree to float32 rounding; the log-space one
  loses about ``|A*_T| * eps`` of relative precision (the subtraction ``A*_T + (... - A*_s)``), which is
  negligible while the forget gates stay near 1 and grows with strong decay over very long sequences.

The gradient probe (``dL/dh_t``) needs the probe added to the state inside the recurrence, which has no
log-space form (``h + p`` may be negative). When the ``"probes"`` collection is requested, the cell therefore
runs the linear path (associative scan) even if ``scan_mode="log_space"``: the same function, the same gradients.
Truncated BPTT has no log-space form either, so ``truncation`` with ``scan_mode="log_space"`` is an error.

Shapes: ``x: float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; the state ``h`` has
``hidden_size`` units, as in the paper's minimal form (no expansion or output projection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import LinearRecurrentLayer, dense, to_batch_major
from lrd.registry import register_mixer
from lrd.scan import SCAN_MODES as LINEAR_SCAN_MODES
from lrd.scan import linear_scan

MINIMAL_SCAN_MODES = (*LINEAR_SCAN_MODES, "log_space")

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
    "MINIMAL_SCAN_MODES",
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
    log_space: bool = False,
    probe: jax.Array | None = None,
    **scan_options: Any,
) -> jax.Array:
    """minGRU (paper Sec. 3.1, Eq. for ``h_t``) over all steps, from ``h_0 = 0``.

    Args:
      gate_logit: ``Linear_z(x)``, ``float32[time, batch, hidden]``.
      candidate_logit: ``Linear_h(x)``, same shape.
      log_space: use the paper's log-space scan (not when ``probe`` is given, see the module docstring).
      probe: ``None`` or zeros ``[time, batch, hidden]``.
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan` for the linear path.

    Returns:
      ``h: float32[time, batch, hidden]``.
    """
    if log_space and probe is None:
        log_a = -jax.nn.softplus(gate_logit)  # log(1 - z)
        log_b = -jax.nn.softplus(-gate_logit) + log_g(candidate_logit)  # log z + log g(h~)
        return log_space_scan(log_a, log_b)
    a, b = min_gru_coefficients(gate_logit, candidate_logit)
    return linear_scan(a, b, probe=probe, **scan_options)


def min_lstm(
    forget_logit: jax.Array,
    input_logit: jax.Array,
    candidate_logit: jax.Array,
    *,
    log_space: bool = False,
    probe: jax.Array | None = None,
    **scan_options: Any,
) -> jax.Array:
    """minLSTM with normalised gates (paper Sec. 3.2) over all steps, from ``h_0 = 0``.

    Args:
      forget_logit, input_logit, candidate_logit: ``Linear_f(x)``, ``Linear_i(x)``, ``Linear_h(x)``, each
        ``float32[time, batch, hidden]``.
      log_space, probe, scan_options: as for :func:`min_gru`.

    Returns:
      ``h: float32[time, batch, hidden]``.
    """
    if log_space and probe is None:
        d = _log_input_over_forget(forget_logit, input_logit)
        log_a = -jax.nn.softplus(d)  # log f'
        log_b = -jax.nn.softplus(-d) + log_g(candidate_logit)  # log i' + log g(h~)
        return log_space_scan(log_a, log_b)
    a, b = min_lstm_coefficients(forget_logit, input_logit, candidate_logit)
    return linear_scan(a, b, probe=probe, **scan_options)


# ----------------------------------------------------------------------------------------------------------------
# Modules


class _MinimalCell(LinearRecurrentLayer):
    """Fields, checks and the computation path shared by :class:`MinGRU` and :class:`MinLSTM`."""

    SCAN_MODES: ClassVar[tuple[str, ...]] = MINIMAL_SCAN_MODES
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked",),
        "truncation": LINEAR_SCAN_MODES,
    }

    def _linear(self, x: jax.Array, name: str, bias: float = 0.0) -> jax.Array:
        """The hoisted projection ``x W + b`` for all steps: ``[batch, time, d_in] -> [time, batch, hidden]``."""
        return dense(
            self, x, self.hidden_size, name, bias_init=nn.initializers.constant(bias), time_major=True
        )

    def _path(self, x: jax.Array) -> dict[str, Any]:
        """``log_space``, ``probe`` and the scan options for the pure functions."""
        probe = self.probe(jnp.zeros((x.shape[0], self.hidden_size), jnp.float32), x.shape[1])
        mode = self.effective_scan_mode()
        log_space = mode == "log_space" and probe is None
        linear_mode = "associative" if mode == "log_space" else mode
        return {"log_space": log_space, "probe": probe, **self.scan_options(linear_mode)}


@register_mixer(
    "mingru", family="minimal", description="minGRU: GRU without state-dependent gates (Feng et al. 2024)"
)
class MinGRU(_MinimalCell):
    """minGRU layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`min_gru`.

    Attributes:
      hidden_size: width of the state ``h`` and of the output.
      scan_mode: ``"sequential"`` | ``"associative"`` | ``"chunked"`` (:func:`lrd.scan.linear_scan`) or
        ``"log_space"`` (the paper's log-space scan), see the module docstring.
      chunk_size, truncation: see :class:`lrd.cells.base.LinearRecurrentLayer`.
      update_bias: initial bias of ``Linear_z``. Negative values start with ``z`` small, i.e. ``h`` mostly kept
        from step to step (``1 - z = sigmoid(-update_bias)``), which helps long lags; 0 is PyTorch-like.

    Parameters: ``update_gate_kernel [d_in, H]``, ``update_gate_bias [H]`` (``Linear_z``), ``candidate_kernel``,
    ``candidate_bias`` (``Linear_h``); kernels LeCun-normal.
    """

    update_bias: float = -1.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("update_bias")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        gate_logit = self._linear(x, "update_gate", self.update_bias)
        candidate_logit = self._linear(x, "candidate")
        self.record(
            "forget_gate", lambda: to_batch_major(min_gru_coefficients(gate_logit, candidate_logit)[0])
        )
        return to_batch_major(min_gru(gate_logit, candidate_logit, **self._path(x)))


@register_mixer(
    "minlstm",
    family="minimal",
    description="minLSTM: normalised gates without state dependence (Feng et al. 2024)",
)
class MinLSTM(_MinimalCell):
    """minLSTM layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`min_lstm`.

    Attributes:
      hidden_size, scan_mode, chunk_size, truncation: as for :class:`MinGRU`.
      forget_bias, input_bias: initial biases of ``Linear_f`` and ``Linear_i``. Since ``f' = f / (f + i)``, only
        their difference matters at initialisation; ``forget_bias > input_bias`` starts with ``f'`` above 1/2.

    Parameters: ``forget_gate_kernel/bias`` (``Linear_f``), ``input_gate_kernel/bias`` (``Linear_i``),
    ``candidate_kernel/bias`` (``Linear_h``); kernels LeCun-normal.
    """

    forget_bias: float = 1.0
    input_bias: float = 0.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("forget_bias")
        self.require_number("input_bias")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        forget_logit = self._linear(x, "forget_gate", self.forget_bias)
        input_logit = self._linear(x, "input_gate", self.input_bias)
        candidate_logit = self._linear(x, "candidate")
        logits = (forget_logit, input_logit, candidate_logit)
        self.record("forget_gate", lambda: to_batch_major(min_lstm_coefficients(*logits)[0]))
        return to_batch_major(min_lstm(*logits, **self._path(x)))
