"""Orthogonal and unitary RNNs: a recurrent matrix that is exactly orthogonal (unitary) whatever the optimizer does,
so the linear part of the recurrence neither shrinks nor grows a gradient.

:class:`URNN` (Arjovsky, Shah & Bengio, ICML 2016, eq. 6): ``N`` complex units, the unitary recurrent matrix a
product of cheap unitary factors, ``W = D3 R2 F^-1 D2 P R1 F D1`` (``D_j = diag(exp(i theta_j))``, ``R_j = I - 2 v_j
v_j^* / ||v_j||^2`` complex reflections, ``F`` the unitary DFT, ``P`` a fixed random permutation), applied in
``O(N log N)`` without forming ``W``; complex modReLU ``modrelu(z) = relu(|z| + b) z / |z|``::

    h_t = modrelu(W h_{t-1} + V x_t; b),    output [Re h_t, Im h_t]

so ``hidden_size = 2N`` real features. Initialisation as in the paper: ``theta ~ U[-pi, pi]``, reflection vectors
``~ U[-1, 1]`` (real and imaginary parts), ``V`` Glorot-uniform in each part, ``b = 0``, ``h_0 = 0``.

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

from lrd.cells.base import RecurrentCell, add_probe, project, to_batch_major, uniform_initializer
from lrd.registry import register_mixer

__all__ = [
    "ExpRNN",
    "URNN",
    "modrelu",
    "complex_modrelu",
    "skew_symmetric_init",
    "orthogonal_from_skew",
    "urnn_transition",
    "EXPRNN_INITS",
]

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
            return add_probe(h, probe), {}

        h0 = jnp.zeros((x.shape[0], h_size), jnp.float32)
        return to_batch_major(self.recur(step, h0, xs))

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """Eigenvalues of the recurrent matrix ``expm(A - A^T)``: all of modulus 1."""
        return np.linalg.eigvals(np.asarray(orthogonal_from_skew(jnp.asarray(params["skew"])), np.float64))


def complex_modrelu(z: jax.Array, bias: jax.Array) -> jax.Array:
    """``relu(|z| + bias) z / |z|`` (Arjovsky et al. 2016, eq. 8); ``|z|`` is taken as ``sqrt(|z|^2 + 1e-12)`` so
    that the gradient stays finite at ``z = 0`` (a relative change below 1e-12 for ``|z| ~ 1``)."""
    modulus = jnp.sqrt(jnp.real(z) ** 2 + jnp.imag(z) ** 2 + 1e-12)
    return z * (jax.nn.relu(modulus + bias) / modulus)


def _reflect(h: jax.Array, v: jax.Array) -> jax.Array:
    """``(I - 2 v v^* / ||v||^2) h`` for rows ``h: [batch, N]`` and a complex ``v: [N]``."""
    inner = h @ jnp.conj(v)  # <h, v> per row
    return h - (2.0 / jnp.sum(jnp.abs(v) ** 2)) * inner[:, None] * v[None, :]


def urnn_transition(
    h: jax.Array, thetas: jax.Array, reflections: jax.Array, permutation: np.ndarray
) -> jax.Array:
    """``W h`` for ``W = D3 R2 F^-1 D2 P R1 F D1`` applied right to left (``thetas: [3, N]``, ``reflections:
    complex [2, N]``), each factor unitary, on rows ``h: complex[batch, N]``."""
    h = h * jnp.exp(1j * thetas[0])
    h = jnp.fft.fft(h, axis=-1, norm="ortho")
    h = _reflect(h, reflections[0])
    h = h[:, permutation]
    h = h * jnp.exp(1j * thetas[1])
    h = jnp.fft.ifft(h, axis=-1, norm="ortho")
    h = _reflect(h, reflections[1])
    return h * jnp.exp(1j * thetas[2])


@register_mixer(
    "urnn",
    family="orthogonal",
    description="uRNN: unitary recurrence D3 R2 F^-1 D2 P R1 F D1, complex modReLU (Arjovsky et al. 2016)",
)
class URNN(RecurrentCell):
    """uRNN (see module docstring): ``float32[batch, time, d_in] -> [batch, time, hidden_size]`` with
    ``hidden_size = 2N`` (even).

    Parameters (float32 whatever ``param_dtype``, but for ``V``): ``thetas: [3, N]``, ``reflections: [2, N, 2]``
    (real and imaginary parts), ``V: [d_in, N, 2]``, ``modrelu_bias: [N]``. The permutation ``P`` is fixed by
    ``permutation_seed``.

    Attributes:
      permutation_seed: seed of the fixed permutation ``P``.
    """

    permutation_seed: int = 0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require(
            self.hidden_size % 2 == 0, "hidden_size", "must be even (N complex units give 2N features)"
        )
        self.require_int("permutation_seed", 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        n = self.hidden_size // 2
        thetas = self.param("thetas", uniform_initializer(-np.pi, np.pi), (3, n))
        parts = self.param("reflections", uniform_initializer(-1.0, 1.0), (2, n, 2))
        reflections = jax.lax.complex(parts[..., 0], parts[..., 1])
        bound = float(np.sqrt(6.0 / (x.shape[-1] + 2 * n)))
        kernel = self.weight("V", uniform_initializer(-bound, bound), (x.shape[-1], n, 2))
        bias = self.param("modrelu_bias", nn.initializers.zeros_init(), (n,))
        permutation = np.random.default_rng(self.permutation_seed).permutation(n)
        projected = project(x, kernel.reshape(x.shape[-1], 2 * n), self.dtype).reshape(*x.shape[:2], n, 2)
        xs = jnp.swapaxes(jax.lax.complex(projected[..., 0], projected[..., 1]), 0, 1)  # [T, B, N]

        def step(h: jax.Array, vx_t: jax.Array, probe: jax.Array | None) -> tuple[jax.Array, dict]:
            h = complex_modrelu(urnn_transition(h, thetas, reflections, permutation) + vx_t, bias)
            return add_probe(h, probe), {}

        h0 = jnp.zeros((x.shape[0], n), jnp.complex64)
        hs = to_batch_major(self.recur(step, h0, xs))
        return jnp.concatenate([jnp.real(hs), jnp.imag(hs)], axis=-1)
