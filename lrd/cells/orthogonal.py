"""Orthogonal RNNs: a recurrent matrix that is exactly orthogonal whatever the optimizer does, so the linear part
of the recurrence neither shrinks nor grows a gradient.

:class:`ExpRNN` (Lezcano-Casado & Martinez-Rubio, ICML 2019): the recurrent matrix is the matrix exponential of a
skew-symmetric matrix, ``B = expm(A - A^T)`` (``A`` strictly upper triangular, unconstrained), which is orthogonal
for every ``A``; the optimizer works on ``A`` in the Lie algebra. The nonlinearity is modReLU (Arjovsky et al.
2016), ``modrelu(z) = sign(z) * relu(|z| + b)``, whose derivative is 0 or 1::

    h_t = modrelu(W x_t + B h_{t-1}; b)

Initialisation of the skew-symmetric part (the paper's two options, block-diagonal with 2x2 blocks
``[[0, s], [-s, 0]]``, i.e. rotations by ``s``):

* ``"henaff"`` (Henaff et al. 2016): ``s ~ U[-pi, pi]``;
* ``"cayley"`` (Helfrich et al. 2018): ``s = -sqrt((1 - cos u) / (1 + cos u))`` with ``u ~ U[0, pi/2]``.

Shapes: ``x: float32[batch, time, d_in] -> h: float32[batch, time, hidden_size]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import RecurrentCell, to_batch_major, uniform_initializer
from lrd.registry import register_mixer

__all__ = ["ExpRNN", "modrelu", "skew_symmetric_init", "orthogonal_from_skew", "EXPRNN_INITS"]

EXPRNN_INITS = ("henaff", "cayley")


def modrelu(z: jax.Array, bias: jax.Array) -> jax.Array:
    """``sign(z) * relu(|z| + bias)`` (Arjovsky et al. 2016, eq. 8, for real ``z``)."""
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + bias)


def skew_symmetric_init(kind: str) -> Any:
    """Initialiser of the strictly upper-triangular ``A`` of :class:`ExpRNN`: the rotation angles ``s`` of the
    2x2 blocks on the superdiagonal (``A[2i, 2i+1] = s_i``), zeros elsewhere (``EXPRNN_INITS``)."""
    if kind not in EXPRNN_INITS:
        raise ValueError(f"skew_init={kind!r} is unknown; allowed values: {', '.join(EXPRNN_INITS)}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        size = shape[0]
        if kind == "henaff":
            s = jax.random.uniform(key, (size // 2,), dtype, -np.pi, np.pi)
        else:
            u = jax.random.uniform(key, (size // 2,), dtype, 0.0, np.pi / 2)
            s = -jnp.sqrt((1.0 - jnp.cos(u)) / (1.0 + jnp.cos(u)))
        rows = 2 * jnp.arange(size // 2)
        return jnp.zeros(shape, dtype).at[rows, rows + 1].set(s)

    return init


def orthogonal_from_skew(a: jax.Array) -> jax.Array:
    """``expm(A - A^T)`` of the strictly upper-triangular part of ``a``: an orthogonal ``[H, H]`` matrix."""
    upper = jnp.triu(a, 1)
    return jax.scipy.linalg.expm(upper - upper.T)


@register_mixer(
    "exprnn",
    family="orthogonal",
    description="expRNN: orthogonal recurrent matrix expm(A - A^T), modReLU (Lezcano-Casado & Martinez-Rubio 2019)",
)
class ExpRNN(RecurrentCell):
    """expRNN (see module docstring).

    Parameters: ``input_kernel: [d_in, H]`` (LeCun normal), ``skew: [H, H]`` (only its strictly upper triangle is
    used; float32 whatever ``param_dtype``: it defines the recurrence), ``modrelu_bias: [H]`` ``~ U[-0.01, 0.01]``.
    The recurrent product ``h B`` runs in float32.

    Attributes:
      skew_init: ``"henaff"`` | ``"cayley"``.
    """

    skew_init: str = "henaff"

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_choice("skew_init", EXPRNN_INITS)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], h_size))
        skew = self.param("skew", skew_symmetric_init(self.skew_init), (h_size, h_size))
        bias = self.param("modrelu_bias", uniform_initializer(-0.01, 0.01), (h_size,))
        recurrent = orthogonal_from_skew(skew)
        xs, project = self.project_inputs(x, input_kernel, None)

        def step(h: jax.Array, x_t: jax.Array, probe: jax.Array | None) -> tuple[jax.Array, dict]:
            h = modrelu(project(x_t) + h @ recurrent, bias)
            return (h if probe is None else h + probe), {}

        h0 = jnp.zeros((x.shape[0], h_size), jnp.float32)
        return to_batch_major(self.recur(step, h0, xs))

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """Eigenvalues of the recurrent matrix ``expm(A - A^T)``: all of modulus 1."""
        return np.linalg.eigvals(np.asarray(orthogonal_from_skew(jnp.asarray(params["skew"])), np.float64))
