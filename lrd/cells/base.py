"""What every cell shares: the scan options, the probe variable, and recurrent-weight initialisers."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PROBE_COLLECTION = "probes"

__all__ = [
    "PROBE_COLLECTION",
    "RecurrentCell",
    "probe_variable",
    "to_time_major",
    "to_batch_major",
    "recurrent_initializer",
    "RECURRENT_INITS",
]


class RecurrentCell(nn.Module):
    """Base for modules driven by :func:`lrd.scan.bptt_scan`: ``x: [batch, time, d_in] -> [batch, time, hidden]``.

    Attributes:
      hidden_size: width of the hidden state and of the output.
      truncation: truncated-BPTT length ``k`` (``None``: full BPTT).
      unroll: ``lax.scan`` unroll factor.
      remat: rematerialise each step in the backward pass.
    """

    hidden_size: int
    truncation: int | None = None
    unroll: int = 1
    remat: bool = False

    def scan_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrd.scan.bptt_scan`."""
        return {"truncation": self.truncation, "unroll": self.unroll, "remat": self.remat}


def probe_variable(module: nn.Module, like: Any, num_steps: int, name: str = "state") -> Any | None:
    """Zeros ``[time, *leaf.shape]`` for each leaf of ``like`` in the ``"probes"`` collection, or ``None``.

    The probe exists only when the caller asks for it: by passing ``mutable=["probes"]`` (to create it) or by
    supplying a ``"probes"`` collection (to differentiate with respect to it) to ``apply``. ``init`` never makes
    one (it would otherwise, since every collection is mutable during init). Otherwise the scan runs unprobed.
    """
    if module.is_initializing():
        return None
    if not (module.is_mutable_collection(PROBE_COLLECTION) or module.has_variable(PROBE_COLLECTION, name)):
        return None

    def zeros():
        return jax.tree_util.tree_map(lambda leaf: jnp.zeros((num_steps,) + leaf.shape, leaf.dtype), like)

    return module.variable(PROBE_COLLECTION, name, zeros).value


def to_time_major(x: jax.Array) -> jax.Array:
    """``[batch, time, ...] -> [time, batch, ...]``."""
    return jnp.swapaxes(x, 0, 1)


def to_batch_major(x: jax.Array) -> jax.Array:
    """``[time, batch, ...] -> [batch, time, ...]``."""
    return jnp.swapaxes(x, 0, 1)


RECURRENT_INITS = ("orthogonal", "normal", "identity")


def recurrent_initializer(kind: str, spectral_radius: float = 1.0):
    """A ``[hidden, hidden]`` initialiser whose spectral radius is (about) ``spectral_radius``.

    * ``orthogonal``: ``rho * Q`` with ``Q`` Haar-orthogonal; every eigenvalue has modulus exactly ``rho``.
    * ``normal``: i.i.d. ``N(0, rho^2 / H)``; by the circular law the spectrum fills the disc of radius ``rho``.
    * ``identity``: ``rho * I`` (IRNN, Le et al. 2015).
    """
    if kind not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init={kind!r} is unknown; allowed values: {', '.join(RECURRENT_INITS)}")
    if spectral_radius <= 0:
        raise ValueError(f"spectral_radius must be > 0, got {spectral_radius!r}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = shape
        if kind == "orthogonal":
            return spectral_radius * nn.initializers.orthogonal()(key, shape, dtype)
        if kind == "normal":
            return jax.random.normal(key, shape, dtype) * (spectral_radius / np.sqrt(rows))
        return spectral_radius * jnp.eye(rows, cols, dtype=dtype)

    return init


def gate_blocks_initializer(base, num_gates: int):
    """Initialise a ``[hidden, num_gates * hidden]`` kernel as ``num_gates`` independent ``[hidden, hidden]`` blocks."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = shape
        width = cols // num_gates
        keys = jax.random.split(key, num_gates)
        return jnp.concatenate([base(k, (rows, width), dtype) for k in keys], axis=1)

    return init
