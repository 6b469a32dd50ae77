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

:class:`ScoRNN` (Helfrich, Willmott & Ye, ICML 2018): the recurrent matrix is a *scaled Cayley transform* of a
skew-symmetric ``A``, ``W = (I + A)^{-1} (I - A) D``, with ``D`` a fixed diagonal of ``+-1``. The Cayley
transform alone reaches only orthogonal matrices without eigenvalue -1; every orthogonal matrix is ``(I + A)^{-1}
(I - A) D`` for some such ``D`` (and some ``A`` with entries in ``[-1, 1]``), so the paper fixes ``D`` with ``rho``
minus ones (its hyperparameter, here ``num_negative``). With ``D`` fixed, ``W`` ranges over the orthogonal matrices
of determinant ``(-1)^rho`` for which ``W D`` has no eigenvalue -1 (a dense subset). Same modReLU step as expRNN,
in the paper's column convention ``h_t = modrelu(U x_t + W h_{t-1}; b)``, i.e. ``h W^T`` on rows.

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
    "ScoRNN",
    "URNN",
    "modrelu",
    "complex_modrelu",
    "skew_symmetric_init",
    "orthogonal_from_skew",
    "scaled_cayley",
    "scaling_diagonal",
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


def scaling_diagonal(size: int, num_negative: int) -> np.ndarray:
    """The diagonal of scoRNN's ``D``: ``size - num_negative`` ones, then ``num_negative`` minus ones (the
    placement of the authors' code; any placement gives the same family of ``W``, up to relabelling units)."""
    if not 0 <= num_negative <= size:
        raise ValueError(f"num_negative must be in [0, {size}], got {num_negative!r}")
    return np.concatenate([np.ones(size - num_negative), -np.ones(num_negative)]).astype(np.float32)


def scaled_cayley(a: jax.Array, diagonal: jax.Array) -> jax.Array:
    """``W = (I + S)^{-1} (I - S) D`` with ``S = triu(a, 1) - triu(a, 1)^T`` and ``D = diag(diagonal)``
    (Helfrich et al. 2018): an orthogonal ``[H, H]`` matrix, by one LU solve (``I + S`` is invertible for
    every skew ``S``: its eigenvalues are ``1 + i mu``, ``mu`` real)."""
    upper = jnp.triu(a, 1)
    skew = upper - upper.T
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jnp.linalg.solve(eye + skew, (eye - skew) * jnp.asarray(diagonal, a.dtype)[None, :])


@register_mixer(
    "scornn",
    family="orthogonal",
    description="scoRNN: orthogonal recurrent matrix (I + A)^-1 (I - A) D, modReLU (Helfrich, Willmott & Ye 2018)",
)
class ScoRNN(RecurrentCell):
    """scoRNN (Helfrich, Willmott & Ye, "Orthogonal Recurrent Neural Networks with Scaled Cayley Transform",
    ICML 2018): ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.

    The step (column vectors as in the paper, ``h W^T`` on the rows here)::

        W   = (I + A)^{-1} (I - A) D          A skew-symmetric, D = diag(+-1) fixed
        h_t = modrelu(U x_t + W h_{t-1}; b)   modrelu(z) = sign(z) relu(|z| + b),  h_0 = 0

    ``W`` is orthogonal for every skew ``A``, and ``det W = det D = (-1)^num_negative`` whatever training does (a
    Cayley transform has determinant 1), so ``num_negative`` is a discrete choice that gradient steps never change.

    **Parameters.** ``input_kernel: [d_in, H]`` (``U``, LeCun normal, in ``param_dtype``), ``skew: [H, H]``
    (float32 whatever ``param_dtype``; only its strictly upper triangle ``A_up`` is used, ``A = A_up - A_up^T``, as
    :class:`ExpRNN` does), ``modrelu_bias: [H]`` (zeros, as in the authors' code). ``W`` is rebuilt from ``A`` by
    one ``O(H^3)`` solve per call, outside the time loop; the recurrent product ``h W^T`` runs in float32.

    **Initialisation** (the paper's "Cayley initialisation"): ``A`` block diagonal with 2x2 blocks ``[[0, s],
    [-s, 0]]``, ``s = -sqrt((1 - cos u) / (1 + cos u)) = -tan(u / 2)``, ``u ~ U[0, pi/2]``, which is
    :func:`skew_symmetric_init` ``("cayley")``. The Cayley transform of such a block is the rotation by ``-u``, so
    before ``D`` the eigenvalues ``e^{+-iu}`` spread over the right half of the unit circle; ``D`` then negates
    ``num_negative`` columns. The sign of ``s`` is that of the authors' code (and of expRNN's); it does not matter:
    flipping it in a block is conjugation by ``diag(1, -1)``, which commutes with ``D`` and with modReLU and maps
    the sign-symmetric initialisation of ``U`` and of a readout to itself, so the model is the same in
    distribution.

    **Training is the paper's algorithm, by autodiff.** The paper updates ``A`` by ``A <- A - lr dL/dA`` with
    (its gradient theorem) ``dL/dA = V^T - V``, ``V = (I + A)^{-T} (dL/dW) (D + W^T)``. Differentiating ``W(A)``
    gives ``dW = -(I + A)^{-1} dA (W + D)``, so the gradient with respect to ``A`` taken as a free matrix is
    ``G = -V``, and the paper's formula is that gradient made skew, ``G - G^T``. Autodiff through the solve of
    :func:`scaled_cayley` computes the gradient with respect to the strictly upper triangle, ``triu(V^T - V, 1)``:
    the paper's matrix, one entry per independent coordinate. A plain gradient step on ``A_up`` moves ``A =
    A_up - A_up^T`` by exactly ``-lr (V^T - V)``, the paper's update; an element-wise optimizer (RMSprop, Adam) on
    ``A_up`` gives the update the authors' code gets by applying it to the full matrix ``A`` (entries ``(i, j)``
    and ``(j, i)`` receive opposite gradients, so the same moment estimates up to sign). Parametrisation as
    ``A = M - M^T`` with a free ``M`` would double the step. The tests check the gradient against the paper's
    formula. Not reproduced: the paper trains ``A`` with its own optimizer and learning rate (RMSprop, 1e-4 or
    1e-3), the rest with another; here one optimizer trains every parameter.

    Attributes:
      num_negative: ``rho``, the number of -1 entries of ``D`` (placed last), in ``[0, hidden_size]``. ``None``
        (default): ``hidden_size // 2``, the paper's choice for the adding (n = 170, rho = 85) and copying
        (n = 190, rho = 95) problems, the tasks of this codebase; for pixel MNIST the paper used ``n / 10``.
    """

    num_negative: int | None = None

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("num_negative", 0, optional=True)
        self.require(
            self.num_negative is None or self.num_negative <= self.hidden_size,
            "num_negative",
            f"must be <= hidden_size={self.hidden_size} (the number of -1 entries of D)",
        )

    @nn.nowrap
    def scaling(self) -> np.ndarray:
        """The diagonal of ``D`` (``float32[hidden_size]``)."""
        rho = self.hidden_size // 2 if self.num_negative is None else self.num_negative
        return scaling_diagonal(self.hidden_size, rho)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], h_size))
        skew = self.param("skew", skew_symmetric_init("cayley"), (h_size, h_size))
        bias = self.param("modrelu_bias", nn.initializers.zeros_init(), (h_size,))
        recurrent_rows = scaled_cayley(skew, self.scaling()).T  # h_t W^T for row states
        xs, project = self.project_inputs(x, input_kernel, None)

        def step(h: jax.Array, x_t: jax.Array, probe: jax.Array | None) -> tuple[jax.Array, dict]:
            h = modrelu(project(x_t) + h @ recurrent_rows, bias)
            return add_probe(h, probe), {}

        h0 = jnp.zeros((x.shape[0], h_size), jnp.float32)
        return to_batch_major(self.recur(step, h0, xs))

    @nn.nowrap
    def recurrent_matrix(self, params: Mapping[str, Any]) -> jax.Array:
        """``W = (I + A)^{-1} (I - A) D`` from this module's ``params`` (column convention, as in the paper)."""
        return scaled_cayley(jnp.asarray(params["skew"], jnp.float32), self.scaling())

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """Eigenvalues of ``W``: all of modulus 1."""
        return np.linalg.eigvals(np.asarray(self.recurrent_matrix(params), np.float64))


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
