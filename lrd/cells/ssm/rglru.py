"""RG-LRU, the Real-Gated Linear Recurrent Unit, in Griffin's recurrent block (De et al. 2024)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import LinearRecurrentLayer, dense, project, to_batch_major, to_time_major
from lrd.cells.ssm.common import causal_depthwise_conv, conv_params, to_width
from lrd.registry import register_mixer
from lrd.scan import linear_scan

__all__ = [
    "RGLRU",
    "rglru",
    "rglru_coefficients",
    "rglru_lambda_init",
    "sqrt_bounded_derivative",
    "MAX_SQRT_GRADIENT",
]

MAX_SQRT_GRADIENT = 1000.0  # bound on d sqrt(x)/dx used by the RG-LRU normalisation


@jax.custom_jvp
def sqrt_bounded_derivative(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` whose derivative is capped at ``MAX_SQRT_GRADIENT`` (finite at ``x = 0``)."""
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_derivative_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = jnp.sqrt(x)
    return y, dx * 0.5 / jnp.maximum(y, 0.5 / MAX_SQRT_GRADIENT)


def rglru_lambda_init(
    key: jax.Array, shape: tuple[int, ...], c: float, a_min: float, a_max: float
) -> jax.Array:
    """``Lambda`` with ``a^c ~ U[a_min, a_max]`` for ``a = sigmoid(Lambda)`` (Griffin Sec. 2.4).

    ``log a = log(U) / c`` and ``Lambda = logit(a) = log a - log(1 - a)``, computed from ``log a`` with
    ``expm1`` so that ``a`` near 1 keeps its precision.
    """
    log_a = jnp.log(jax.random.uniform(key, shape, jnp.float32, a_min, a_max)) / c
    return log_a - jnp.log(-jnp.expm1(log_a))


def rglru(
    v: jax.Array,
    gate_a_kernel: jax.Array,
    gate_a_bias: jax.Array,
    gate_x_kernel: jax.Array,
    gate_x_bias: jax.Array,
    Lambda: jax.Array,
    *,
    c: float = 8.0,
    probe: jax.Array | None = None,
    dtype: str | None = None,
    **scan_options: Any,
) -> jax.Array:
    """The Real-Gated Linear Recurrent Unit (Griffin, De et al. 2024, Sec. 2.4, eqs. 1-4):

    ``r_t = sigmoid(W_a v_t + b_a)`` (recurrence gate), ``i_t = sigmoid(W_x v_t + b_x)`` (input gate),
    ``a_t = a^{c r_t}`` with ``a = sigmoid(Lambda)``, ``h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * v_t)``.

    ``a_t`` is computed in log space, ``log a_t = c r_t log sigmoid(Lambda) = -c r_t softplus(-Lambda)``, and
    ``1 - a_t^2 = -expm1(2 log a_t)`` without cancellation; the square root's derivative is capped
    (:func:`sqrt_bounded_derivative`) since it is unbounded as ``a_t -> 1``.

    One departure from the reference code, on purpose: the reference resets the recurrence at a document's first
    token (``a = 0`` and no ``sqrt(1 - a^2)`` factor there, so ``h_0 = i_0 v_0``). Here the first step is an
    ordinary step from ``h_{-1} = 0``, so ``h_0 = sqrt(1 - a_0^2) i_0 v_0``: every step has the same normalised
    form, which the scan modes and the gradient probe rely on; sequences here never span documents.

    Args:
      v: ``float32[batch, time, H]``; gate kernels ``[H, H]`` and biases ``[H]``; Lambda: ``[H]``;
      probe: ``None`` or ``float32[time, batch, H]``.
      dtype: operand dtype of the two gate projections (``None``: float32, as given).
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan`.

    Returns:
      ``h: float32[batch, time, H]``.
    """
    a, b = rglru_coefficients(
        v, gate_a_kernel, gate_a_bias, gate_x_kernel, gate_x_bias, Lambda, c=c, dtype=dtype
    )
    h = linear_scan(to_time_major(a), to_time_major(b), probe=probe, **scan_options)
    return to_batch_major(h)


def rglru_coefficients(
    v: jax.Array,
    gate_a_kernel: jax.Array,
    gate_a_bias: jax.Array,
    gate_x_kernel: jax.Array,
    gate_x_bias: jax.Array,
    Lambda: jax.Array,
    *,
    c: float = 8.0,
    dtype: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(a_t, sqrt(1 - a_t^2) i_t v_t)``, both ``float32[batch, time, H]``: the recurrence of :func:`rglru`."""
    r = jax.nn.sigmoid(project(v, gate_a_kernel, dtype) + gate_a_bias)
    i = jax.nn.sigmoid(project(v, gate_x_kernel, dtype) + gate_x_bias)
    log_a = -c * r * jax.nn.softplus(-Lambda)
    return jnp.exp(log_a), sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a)) * (i * v)


@register_mixer(
    "rglru",
    family="ssm",
    description="RG-LRU in Griffin's recurrent block: gated real diagonal recurrence (De et al. 2024)",
)
class RGLRU(LinearRecurrentLayer):
    """Griffin recurrent block around the RG-LRU: ``float32[batch, time, d_in] -> float32[batch, time, hidden]``.

    With ``block=True`` (default), the recurrent block of Griffin (De et al. 2024, Sec. 2.4, Fig. 2), RNN width
    ``H = hidden_size`` (the paper uses ``4/3 d_model``; here the width is the model's):

    ``g = GeLU(x W_g + b_g)`` (gate branch), ``v = conv(x W_v + b_v)`` (causal depthwise, width
    ``conv_width``, skipped if 0), ``h = RG-LRU(v)`` (:func:`rglru`), ``out = (h * g) W_o + b_o``.

    With ``block=False``, the RG-LRU alone: ``v`` is ``x`` (projected to ``H`` if ``d_in != H``), output ``h``.

    The gates ``W_a, W_x`` are dense ``[H, H]`` as in the paper's equations (the public RecurrentGemma code uses
    block-diagonal ones). ``Lambda`` is initialised so that ``a^c ~ U[a_min, a_max]`` (paper: [0.9, 0.999]).

    Attributes:
      hidden_size: ``H``.
      c: the scalar constant of ``a_t = a^{c r_t}`` (8 in the paper).
      a_min, a_max: initial range of ``a^c``.
      block: Griffin's recurrent block (True) or the RG-LRU alone (False).
      conv_width: temporal width of the block's convolution (4 in the paper).
      scan_mode, chunk_size, truncation: see :class:`lrd.cells.base.LinearRecurrentLayer`.
    """

    c: float = 8.0
    a_min: float = 0.9
    a_max: float = 0.999
    block: bool = True
    conv_width: int = 4

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("a_min", low=0.0, high=1.0)
        self.require_number("a_max", low=0.0, high=1.0)
        self.require(self.a_min < self.a_max, "a_min", f"need a_min < a_max, got a_max={self.a_max!r}")
        self.require_number("c", low=0.0)
        self.require_bool("block")
        self.require_int("conv_width", 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        width = self.hidden_size
        if self.block:
            gate = jax.nn.gelu(dense(self, x, width, "gate_proj"))
            v = dense(self, x, width, "in_proj")
            if self.conv_width:
                v = causal_depthwise_conv(v, *conv_params(self, width, self.conv_width))
        else:
            v = to_width(self, x, width)
        gate_a_kernel = self.weight("gate_a_kernel", nn.initializers.lecun_normal(), (width, width))
        gate_a_bias = self.param("gate_a_bias", nn.initializers.zeros_init(), (width,))
        gate_x_kernel = self.weight("gate_x_kernel", nn.initializers.lecun_normal(), (width, width))
        gate_x_bias = self.param("gate_x_bias", nn.initializers.zeros_init(), (width,))
        Lambda = self.param(
            "Lambda",
            functools.partial(rglru_lambda_init, c=self.c, a_min=self.a_min, a_max=self.a_max),
            (width,),
        )
        weights = (gate_a_kernel, gate_a_bias, gate_x_kernel, gate_x_bias, Lambda)
        self.record(
            "decay", lambda: rglru_coefficients(v, *weights, c=self.c, dtype=self.dtype)[0]
        )  # a_t: [batch, time, H]
        probe = self.probe(jnp.zeros((x.shape[0], width), jnp.float32), x.shape[1])
        h = rglru(v, *weights, c=self.c, probe=probe, dtype=self.dtype, **self.scan_options())
        if not self.block:
            return h
        return dense(self, h * gate, self.hidden_size, "out_proj")
