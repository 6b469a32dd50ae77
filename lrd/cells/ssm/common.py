"""Pieces shared by the SSM layers: input width, short causal convolution, zero-order hold, complex parameters."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import dense, operand_dtype, project, uniform_initializer

__all__ = [
    "to_width",
    "conv_params",
    "causal_depthwise_conv",
    "zoh",
    "complex_from_parts",
    "pairs",
    "unpair",
    "log_uniform_initializer",
    "inverse_softplus",
    "check_time_scales",
    "real_times_complex",
    "real_part_of_product",
]


def to_width(module: nn.Module, x: jax.Array, width: int) -> jax.Array:
    """``x`` itself when ``d_in == width``, else the projection ``x W_in + b_in`` (``input_kernel``, ``input_bias``)."""
    if x.shape[-1] == width:
        return x
    return dense(module, x, width, "input")


def conv_params(module: nn.Module, width: int, conv_width: int) -> tuple[jax.Array, jax.Array]:
    """Depthwise causal conv parameters: kernel ``U(+-1/sqrt(conv_width))`` (PyTorch's Conv1d default), bias 0."""
    bound = 1.0 / math.sqrt(conv_width)
    kernel = module.param("conv_kernel", uniform_initializer(-bound, bound), (conv_width, width))
    bias = module.param("conv_bias", nn.initializers.zeros_init(), (width,))
    return kernel, bias


def causal_depthwise_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Causal depthwise 1-D convolution: ``y_t = b + sum_{k=0}^{W-1} kernel[k] * x_{t-W+1+k}`` (zeros before 0).

    ``x: float32[batch, time, channels]``, ``kernel: [W, channels]`` (``kernel[W-1]`` weighs the current step, as
    PyTorch's ``Conv1d(padding=W-1)`` truncated to the first ``time`` outputs), ``bias: [channels]``.
    """
    width, num_steps = kernel.shape[0], x.shape[1]
    padded = jnp.pad(x, ((0, 0), (width - 1, 0), (0, 0)))
    y = sum(kernel[k] * padded[:, k : k + num_steps] for k in range(width))
    return y + bias


def zoh(lam: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Zero-order hold for a diagonal ``x' = Lambda x + B u``: ``(Lambda_bar, (Lambda_bar - 1) / Lambda)``.

    ``Lambda_bar = exp(Delta Lambda)`` and ``B_bar = (Delta Lambda)^{-1} (exp(Delta Lambda) - I) Delta B
    = ((Lambda_bar - 1) / Lambda) B`` (S4D, Gu et al. 2022, Sec. 2; S5, Smith et al. 2023, Sec. 2.2/3).
    """
    lam_bar = jnp.exp(lam * step)
    return lam_bar, (lam_bar - 1.0) / lam


def real_times_complex(u: jax.Array, w: jax.Array, dtype: str | None = None) -> jax.Array:
    """``u @ w`` for a real ``u`` and a complex ``w``; with a narrow ``dtype``, as two real products (there is no
    bfloat16 complex) in that operand dtype, accumulated in float32."""
    if operand_dtype(dtype) is None:
        return u.astype(w.dtype) @ w
    return jax.lax.complex(project(u, jnp.real(w), dtype), project(u, jnp.imag(w), dtype))


def real_part_of_product(h: jax.Array, w: jax.Array, dtype: str | None = None) -> jax.Array:
    """``Re(h @ w)`` for complex ``h`` and ``w``; with a narrow ``dtype``, as ``Re h Re w - Im h Im w`` in that
    operand dtype, accumulated in float32."""
    if operand_dtype(dtype) is None:
        return jnp.real(h @ w)
    return project(jnp.real(h), jnp.real(w), dtype) - project(jnp.imag(h), jnp.imag(w), dtype)


def complex_from_parts(re: jax.Array, im: jax.Array) -> jax.Array:
    """``re + i im``."""
    return jax.lax.complex(re, im)


def pairs(z: jax.Array) -> jax.Array:
    """``complex[...] -> float32[..., 2]`` (real, imaginary)."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(jnp.float32)


def unpair(p: jax.Array) -> jax.Array:
    """``float32[..., 2] -> complex64[...]``."""
    return complex_from_parts(p[..., 0], p[..., 1])


def log_uniform_initializer(low: float, high: float):
    """Initialiser for ``log x`` with ``log x ~ U[log low, log high)`` (timescales, S4/S5/Mamba)."""
    return uniform_initializer(math.log(low), math.log(high))


def inverse_softplus(y: jax.Array) -> jax.Array:
    """``x`` with ``softplus(x) = y`` (``y > 0``): ``y + log(-expm1(-y))``."""
    return y + jnp.log(-jnp.expm1(-y))


def check_time_scales(module: Any, low: str = "dt_min", high: str = "dt_max") -> None:
    """``0 < module.low <= module.high``, reported on the field ``low``."""
    module.require_number(low, low=0.0)
    module.require_number(high, low=0.0)
    module.require(
        getattr(module, low) <= getattr(module, high),
        low,
        f"need {low} <= {high}, got {high}={getattr(module, high)!r}",
    )
