"""Classic recurrent cells: Elman RNN, IRNN, LSTM, GRU, IndRNN.

Each module runs its recurrence through :func:`lrd.scan.bptt_scan`, with the input projection hoisted out of the
time loop on accelerators and computed in the step on CPU (:meth:`lrd.cells.base.RecurrentCell.project_inputs`). The
step functions are pure and are exported so tests can compare them with hand-written equations.

Weight layout (shared with PyTorch so weights can be copied across; see ``tests/test_cells_classic.py``):

* LSTM gates are packed ``[i, f, g, o]`` (input, forget, cell candidate, output), like ``torch.nn.LSTM``.
  ``input_kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``, ``bias = bias_ih + bias_hh``.
* GRU gates are packed ``[r, z, n]`` (reset, update, candidate), like ``torch.nn.GRU``. The reset gate
  multiplies the *projected* previous state including its bias, ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``,
  so the GRU keeps two biases: ``input_bias = bias_ih`` and ``recurrent_bias = bias_hh``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import (
    RECURRENT_INITS,
    RecurrentCell,
    add_probe,
    gate_blocks_initializer,
    recurrent_initializer,
    to_batch_major,
    uniform_initializer,
)
from lrd.registry import register_mixer

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
}

# f'(a) written in terms of the output y = f(a), so the forward pass's outputs give it (diagnostics record it).
ACTIVATION_DERIVATIVES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": lambda y: 1.0 - y**2,
    "sigmoid": lambda y: y * (1.0 - y),
    "relu": lambda y: (y > 0).astype(y.dtype),
    "linear": jnp.ones_like,
}
# sup f': the constant of the textbook bound ||dh_T/dh_t|| <= (||U|| sup f')^(T-t).
ACTIVATION_DERIVATIVE_MAX: dict[str, float] = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is unknown; allowed values: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------------------------------------------
# Pure step functions. ``xw`` is the already-projected input of one step, ``[batch, G*hidden]``.


def elman_step(
    h: jax.Array, xw: jax.Array, recurrent_kernel: jax.Array, activation, probe: jax.Array | None = None
) -> jax.Array:
    """Elman (1990): ``h_t = act(W x_t + b + U h_{t-1})`` (plus the gradient probe, if given)."""
    return add_probe(activation(xw + h @ recurrent_kernel), probe)


def lstm_update(
    carry: tuple[jax.Array, jax.Array],
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    probe: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[tuple[jax.Array, jax.Array], dict[str, jax.Array]]:
    """:func:`lstm_step` and its forget gate ``{"forget_gate": sigmoid(f)}``.

    A probe ``(p_c, p_h)`` is added to ``c_t`` *before* ``h_t`` is computed from it, and to ``h_t``: the gradient
    with respect to ``p_c`` is then the total ``dL/dc_t``, through ``h_t`` as well as through ``c_{t+1}``.
    """
    c, h = carry
    gates = xw + h @ recurrent_kernel
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    forget = jax.nn.sigmoid(f)
    c = add_probe(forget * c + jax.nn.sigmoid(i) * jnp.tanh(g), None if probe is None else probe[0])
    h = add_probe(jax.nn.sigmoid(o) * jnp.tanh(c), None if probe is None else probe[1])
    return (c, h), {"forget_gate": forget}


def lstm_step(
    carry: tuple[jax.Array, jax.Array],
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    probe: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

    ``[i, f, g, o] = W x_t + b + U h_{t-1}``; ``c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)``;
    ``h_t = sigmoid(o) tanh(c_t)``. ``carry = (c, h)``; see :func:`lstm_update` for the probe.
    """
    return lstm_update(carry, xw, recurrent_kernel, probe)[0]


def gru_update(
    h: jax.Array,
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    recurrent_bias: jax.Array,
    probe: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`gru_step` and its update gate ``{"forget_gate": z}`` (the weight of ``h_{t-1}`` in ``h_t``)."""
    hu = h @ recurrent_kernel + recurrent_bias
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hu, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    return add_probe((1.0 - z) * n + z * h, probe), {"forget_gate": z}


def gru_step(
    h: jax.Array,
    xw: jax.Array,
    recurrent_kernel: jax.Array,
    recurrent_bias: jax.Array,
    probe: jax.Array | None = None,
) -> jax.Array:
    """GRU (Cho et al. 2014), in the cuDNN/PyTorch form.

    ``r = sigmoid(W_r x + b_ir + U_r h + b_hr)``, ``z = sigmoid(W_z x + b_iz + U_z h + b_hz)``,
    ``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``, ``h_t = (1 - z) n + z h_{t-1}``.
    """
    return gru_update(h, xw, recurrent_kernel, recurrent_bias, probe)[0]


# ----------------------------------------------------------------------------------------------------------------
# Modules


@register_mixer("rnn", family="classic", description="Elman RNN, tanh (Elman 1990)")
@register_mixer("rnn_relu", family="classic", description="Elman RNN, relu", activation="relu")
@register_mixer("rnn_sigmoid", family="classic", description="Elman RNN, sigmoid", activation="sigmoid")
@register_mixer(
    "irnn",
    family="classic",
    description="IRNN: relu RNN with identity recurrent init (Le et al. 2015)",
    activation="relu",
    recurrent_init="identity",
)
class ElmanRNN(RecurrentCell):
    """Elman RNN ``h_t = act(W x_t + U h_{t-1} + b)``: ``float32[batch, time, d_in] -> [batch, time, hidden]``.

    Attributes:
      activation: ``tanh`` | ``sigmoid`` | ``relu`` | ``linear`` (the identity: a linear RNN, whose gradients
        scale exactly like powers of ``U``; a baseline for the diagnostics).
      recurrent_init: ``orthogonal`` | ``normal`` | ``identity`` (see :func:`recurrent_initializer`).
      spectral_radius: spectral radius of ``U`` at initialisation.
    """

    activation: str = "tanh"
    recurrent_init: str = "orthogonal"
    spectral_radius: float = 1.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_choice("activation", tuple(ACTIVATIONS))
        self.require_choice("recurrent_init", RECURRENT_INITS)
        self.require_number("spectral_radius", low=0.0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        act = _activation(self.activation)
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], h_size))
        bias = self.param("bias", nn.initializers.zeros_init(), (h_size,))
        recurrent_kernel = self.weight(
            "recurrent_kernel",
            recurrent_initializer(self.recurrent_init, self.spectral_radius),
            (h_size, h_size),
        )
        xs, project = self.project_inputs(x, input_kernel, bias)
        h0 = jnp.zeros((x.shape[0], h_size), x.dtype)
        hs = self.recur(lambda h, x_t, p: (elman_step(h, project(x_t), recurrent_kernel, act, p), {}), h0, xs)
        hs = to_batch_major(hs)
        self.record("activation_derivative", lambda: ACTIVATION_DERIVATIVES[self.activation](hs))
        return hs

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """Eigenvalues of the recurrent weight ``U`` (the transition of the linearised recurrence)."""
        return np.linalg.eigvals(np.asarray(params["recurrent_kernel"], np.float64))


@register_mixer("lstm", family="classic", description="LSTM with forget gate (Hochreiter & Schmidhuber 1997)")
class LSTM(RecurrentCell):
    """LSTM: ``float32[batch, time, d_in] -> [batch, time, hidden]`` (the ``h`` sequence).

    Attributes:
      forget_bias: added to the forget-gate bias at initialisation (1.0 as in Gers et al. 2000 /
        Jozefowicz et al. 2015 helps long lags; 0.0 matches PyTorch's default).
    """

    STATE_NAMES: ClassVar[tuple[str, ...]] = ("c", "h")

    forget_bias: float = 1.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("forget_bias")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 4 * h_size))
        recurrent_kernel = self.weight(
            "recurrent_kernel", gate_blocks_initializer(nn.initializers.orthogonal(), 4), (h_size, 4 * h_size)
        )

        def bias_init(key, shape, dtype=jnp.float32):
            return jnp.zeros(shape, dtype).at[h_size : 2 * h_size].set(self.forget_bias)

        bias = self.param("bias", bias_init, (4 * h_size,))
        xs, project = self.project_inputs(x, input_kernel, bias)
        zeros = jnp.zeros((x.shape[0], h_size), x.dtype)
        hs = self.recur(
            lambda carry, x_t, p: lstm_update(carry, project(x_t), recurrent_kernel, p),
            (zeros, zeros),
            xs,
            emit=lambda carry: carry[1],
        )
        return to_batch_major(hs)


@register_mixer("gru", family="classic", description="GRU (Cho et al. 2014), cuDNN/PyTorch form")
class GRU(RecurrentCell):
    """GRU: ``float32[batch, time, d_in] -> [batch, time, hidden]``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 3 * h_size))
        input_bias = self.param("input_bias", nn.initializers.zeros_init(), (3 * h_size,))
        recurrent_kernel = self.weight(
            "recurrent_kernel", gate_blocks_initializer(nn.initializers.orthogonal(), 3), (h_size, 3 * h_size)
        )
        recurrent_bias = self.param("recurrent_bias", nn.initializers.zeros_init(), (3 * h_size,))
        xs, project = self.project_inputs(x, input_kernel, input_bias)
        h0 = jnp.zeros((x.shape[0], h_size), x.dtype)
        hs = self.recur(
            lambda h, x_t, p: gru_update(h, project(x_t), recurrent_kernel, recurrent_bias, p), h0, xs
        )
        return to_batch_major(hs)


# ----------------------------------------------------------------------------------------------------------------
# IndRNN (Li, Li, Cook, Zhu & Gao 2018)


def indrnn_step(
    h: jax.Array,
    xw: jax.Array,
    recurrent_weight: jax.Array,
    activation,
    recurrent_max: float | None = None,
    *,
    probe: jax.Array | None = None,
) -> jax.Array:
    """IndRNN (Li et al. 2018, Eq. 2): ``h_t = act(W x_t + b + u * h_{t-1})``, ``u`` a vector (elementwise).

    Each unit sees only its own past, so ``dh_{n,t}/dh_{n,s} = prod_{r=s+1}^{t} u_n act'_{n,r}``: with relu the
    gradient over a lag ``T`` is ``u_n^T`` while the unit is active, bounded by clipping ``|u_n|``. With
    ``recurrent_max`` set, ``u`` is clipped to ``[-recurrent_max, recurrent_max]`` before use.
    """
    if recurrent_max is not None:
        recurrent_weight = jnp.clip(recurrent_weight, -recurrent_max, recurrent_max)
    return add_probe(activation(xw + recurrent_weight * h), probe)


@register_mixer("indrnn", family="classic", description="IndRNN: per-unit recurrent weights (Li et al. 2018)")
class IndRNN(RecurrentCell):
    """Independently recurrent network ``h_t = act(W x_t + u * h_{t-1} + b)``: ``[batch, time, d_in] -> [.., hidden]``.

    Li, Li, Cook, Zhu & Gao, "Independently Recurrent Neural Network (IndRNN): Building A Longer and Deeper RNN",
    CVPR 2018, Eq. 2. The recurrent weight is a vector ``u`` (``recurrent_weight: [hidden]``), not a matrix; units
    interact only through the next layer (or the readout).

    The paper keeps long-term gradients neither exploding nor vanishing by constraining ``|u_n|`` (for relu,
    ``|u_n| <= 2^(1/T)`` bounds the growth over ``T`` steps by 2). Here ``recurrent_max`` applies that bound as a
    clip inside the forward pass (the paper clips the weights after each update instead; both keep the effective
    ``u`` in range, the clip in the forward simply gives zero gradient to a weight beyond the bound).

    Attributes:
      activation: ``relu`` (default, as in the paper) | ``tanh`` | ``sigmoid``.
      recurrent_init_min, recurrent_init_max: ``u ~ U[min, max)`` at initialisation.
      recurrent_max: ``None`` (no constraint) or the bound on ``|u|``, e.g. ``2 ** (1 / T)`` for relu.
    """

    activation: str = "relu"
    recurrent_init_min: float = 0.0
    recurrent_init_max: float = 1.0
    recurrent_max: float | None = None

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_choice("activation", tuple(ACTIVATIONS))
        self.require_number("recurrent_init_min")
        self.require_number("recurrent_init_max")
        self.require(
            self.recurrent_init_min <= self.recurrent_init_max,
            "recurrent_init_min",
            f"need recurrent_init_min <= recurrent_init_max, got recurrent_init_max={self.recurrent_init_max!r}",
        )
        if self.recurrent_max is not None:
            self.require_number("recurrent_max", low=0.0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        act = _activation(self.activation)
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], h_size))
        bias = self.param("bias", nn.initializers.zeros_init(), (h_size,))
        recurrent_weight = self.param(
            "recurrent_weight",
            uniform_initializer(self.recurrent_init_min, self.recurrent_init_max),
            (h_size,),
        )
        xs, project = self.project_inputs(x, input_kernel, bias)
        h0 = jnp.zeros((x.shape[0], h_size), x.dtype)
        hs = self.recur(
            lambda h, x_t, p: (
                indrnn_step(h, project(x_t), recurrent_weight, act, self.recurrent_max, probe=p),
                {},
            ),
            h0,
            xs,
        )
        hs = to_batch_major(hs)
        self.record("activation_derivative", lambda: ACTIVATION_DERIVATIVES[self.activation](hs))
        return hs

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """The diagonal recurrent weight ``u`` (clipped to ``recurrent_max`` as in the forward pass)."""
        u = np.asarray(params["recurrent_weight"], np.float64)
        return u if self.recurrent_max is None else np.clip(u, -self.recurrent_max, self.recurrent_max)


__all__ = [
    "ElmanRNN",
    "LSTM",
    "GRU",
    "IndRNN",
    "elman_step",
    "lstm_step",
    "lstm_update",
    "gru_step",
    "gru_update",
    "ACTIVATION_DERIVATIVES",
    "ACTIVATION_DERIVATIVE_MAX",
    "indrnn_step",
    "ACTIVATIONS",
]
