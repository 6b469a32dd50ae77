"""LRU: the Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import LinearRecurrentLayer, normal_initializer, to_batch_major, to_time_major
from lrd.cells.ssm.common import complex_from_parts, real_part_of_product, real_times_complex, to_width
from lrd.registry import register_mixer
from lrd.scan import SCAN_MODES as SCAN_MODES_WITH_TRUNCATION
from lrd.scan import TIME_INVARIANT_SCAN_MODES, linear_scan

__all__ = ["LRU", "lru", "lru_lambda", "lru_ring_init"]


def lru_ring_init(
    key: jax.Array, size: int, r_min: float, r_max: float, max_phase: float
) -> tuple[jax.Array, jax.Array]:
    """``(nu_log, theta_log)`` for eigenvalues uniform on the ring ``r_min <= |lambda| <= r_max`` (LRU Sec. 3.3).

    ``|lambda|^2 ~ U[r_min^2, r_max^2]`` (uniform by area) and ``arg lambda ~ U[0, max_phase]``; with
    ``lambda = exp(-exp(nu_log) + i exp(theta_log))``: ``nu_log = log(-log|lambda|)``, ``theta_log = log(arg)``.
    """
    key_r, key_phase = jax.random.split(key)
    u1 = jax.random.uniform(key_r, (size,))
    u2 = jax.random.uniform(key_phase, (size,))
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = jnp.log(max_phase * u2)
    return nu_log, theta_log


def lru_lambda(nu_log: jax.Array, theta_log: jax.Array) -> jax.Array:
    """``lambda = exp(-exp(nu_log) + i exp(theta_log))`` (LRU exponential parameterisation, Sec. 3.3)."""
    return jnp.exp(complex_from_parts(-jnp.exp(nu_log), jnp.exp(theta_log)))


def lru(
    u: jax.Array,
    nu_log: jax.Array,
    theta_log: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    gamma_log: jax.Array | None = None,
    *,
    probe: jax.Array | None = None,
    dtype: str | None = None,
    **scan_options: Any,
) -> jax.Array:
    """The Linear Recurrent Unit (Orvieto et al. 2023, Sec. 3 and Appendix A).

    ``x_t = Lambda x_{t-1} + gamma * (B u_t)``, ``y_t = Re(C x_t) + D * u_t``, ``Lambda = diag(lambda)`` with
    ``lambda = exp(-exp(nu) + i exp(theta))`` and the normalisation ``gamma = sqrt(1 - |lambda|^2)`` (or
    ``exp(gamma_log)`` when given, the trainable variant of the paper's code).

    Args:
      u: ``float32[batch, time, H]``.
      nu_log, theta_log: ``[N]``.
      B: ``complex64[H, N]`` (input-major), C: ``complex64[N, H]``, D: ``float32[H]``.
      gamma_log: ``None`` or ``float32[N]``.
      probe: ``None`` or ``complex64[time, batch, N]``.
      dtype: operand dtype of the two projections ``B u`` and ``C x`` (``None``: float32, as given).
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan` (``mode``, ``chunk_size``,
        ``truncation``).

    Returns:
      ``float32[batch, time, H]``.
    """
    lam = lru_lambda(nu_log, theta_log)
    # 1 - |lambda|^2 = 1 - exp(-2 exp(nu)), computed without cancellation near the unit circle.
    gamma = jnp.sqrt(-jnp.expm1(-2.0 * jnp.exp(nu_log))) if gamma_log is None else jnp.exp(gamma_log)
    bu = to_time_major(real_times_complex(u, B * gamma, dtype))
    h = linear_scan(lam, bu, probe=probe, **scan_options)
    return real_part_of_product(to_batch_major(h), C, dtype) + D * u


@register_mixer(
    "lru",
    family="ssm",
    description="Linear Recurrent Unit: complex diagonal, ring init, gamma normalisation (Orvieto et al. 2023)",
)
class LRU(LinearRecurrentLayer):
    """LRU layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`lru`.

    Attributes:
      hidden_size: ``H``, the width of ``u`` and ``y`` (the input is projected to it if ``d_in != H``).
      state_size: ``N`` complex states (``None``: ``H``).
      r_min, r_max: ring of eigenvalue moduli at initialisation (Sec. 3.3); the defaults are the range the
        paper uses for long-range tasks, close to the unit circle.
      max_phase: eigenvalue phases ``~ U[0, max_phase]`` at initialisation (the paper shrinks it, e.g. to pi/10,
        on its longest tasks).
      trainable_gamma: ``False``: ``gamma = sqrt(1 - |lambda|^2)`` always (the normalisation of Sec. 3.3);
        ``True``: ``gamma_log`` is a free parameter initialised to that value (as in the paper's Appendix A code).
      scan_mode, chunk_size, truncation: see :class:`lrd.cells.base.LinearRecurrentLayer`; ``scan_mode="fft"``
        (the transition is constant in time) computes the recurrence as a causal convolution, without truncation.

    Initialisation (Appendix A): ``B_re, B_im ~ N(0, 1/(2H))``, ``C_re, C_im ~ N(0, 1/N)``, ``D ~ N(0, 1)``.
    """

    SCAN_MODES: ClassVar[tuple[str, ...]] = TIME_INVARIANT_SCAN_MODES
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked",),
        "truncation": SCAN_MODES_WITH_TRUNCATION,
    }

    state_size: int | None = None
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 2 * math.pi
    trainable_gamma: bool = False

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("state_size", optional=True)
        self.require_number("r_min", low=0.0, high=1.0, strict=False)
        self.require_number("r_max", low=0.0, high=1.0, strict=False)
        self.require(self.r_min < self.r_max, "r_min", f"need r_min < r_max, got r_max={self.r_max!r}")
        self.require_number("max_phase", low=0.0)
        self.require_bool("trainable_gamma")

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """The diagonal transition ``lambda = exp(-exp(nu) + i exp(theta))``, complex ``[N]``."""
        return np.asarray(lru_lambda(params["nu_log"], params["theta_log"]))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        width = self.hidden_size
        size = self.state_size or width
        u = to_width(self, x, width)

        ring = functools.partial(
            lru_ring_init, size=size, r_min=self.r_min, r_max=self.r_max, max_phase=self.max_phase
        )
        nu_log = self.param("nu_log", lambda key: ring(key)[0])
        theta_log = self.param("theta_log", lambda key: ring(key)[1])
        b_std, c_std = 1.0 / math.sqrt(2 * width), 1.0 / math.sqrt(size)
        B = complex_from_parts(
            self.weight("B_re", normal_initializer(b_std), (width, size)).astype(jnp.float32),
            self.weight("B_im", normal_initializer(b_std), (width, size)).astype(jnp.float32),
        )
        C = complex_from_parts(
            self.weight("C_re", normal_initializer(c_std), (size, width)).astype(jnp.float32),
            self.weight("C_im", normal_initializer(c_std), (size, width)).astype(jnp.float32),
        )
        D = self.param("D", normal_initializer(1.0), (width,))
        gamma_log = None
        if self.trainable_gamma:
            # Initialised from the same key as nu_log, i.e. to log sqrt(1 - |lambda|^2) of the initial lambda.
            gamma_log = self.param(
                "gamma_log",
                lambda _key: 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log))),
            )
        probe = self.probe(jnp.zeros((x.shape[0], size), jnp.complex64), x.shape[1])
        return lru(
            u, nu_log, theta_log, B, C, D, gamma_log, probe=probe, dtype=self.dtype, **self.scan_options()
        )
