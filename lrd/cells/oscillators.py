"""Oscillator RNNs: second-order ODEs discretised so that gradients neither vanish nor explode over long spans.

Both cells carry a position ``y`` and a velocity ``z`` per hidden unit and output the positions ``y_t``.

* :class:`CoRNN` (Rusch & Mishra, ICLR 2021, eq. 3 in the form of the authors' code): a network of coupled,
  damped, driven oscillators ``y'' = tanh(W y + W~ y' + V u + b) - gamma y - epsilon y'``, discretised
  explicitly in ``z`` and implicitly in ``y``::

      z_t = z_{t-1} + dt * (tanh(W y_{t-1} + W~ z_{t-1} + V u_t + b) - gamma * y_{t-1} - epsilon * z_{t-1})
      y_t = y_{t-1} + dt * z_t

  The paper bounds the hidden states and shows that the gradients cannot explode (its Sec. 3); with the
  authors' adding hyperparameters the gradient at initialisation nevertheless decays by about 0.32 per step
  (``experiments/results/grad_flow/cornn_init``): the damping ``1 - dt * epsilon = 0.1`` dominates.
* :class:`UnICORNN` (Rusch & Mishra, ICML 2021, eq. 5 and the authors' code): *uncoupled* oscillators (a diagonal
  recurrent weight ``w``), each with a learned time step ``dt * sigmoid(c)``, integrated by symplectic Euler::

      z_t = z_{t-1} - dt * sigmoid(c) * (tanh(w * y_{t-1} + V u_t + b) + alpha * y_{t-1})
      y_t = y_{t-1} + dt * sigmoid(c) * z_t

  The map is invertible in closed form (the authors' CUDA backward reconstructs the states backwards instead of
  storing them); here the backward pass is JAX's, which stores them. The paper stacks several such layers, each
  preceded by a dense projection: use ``--model.num_layers`` in the block setting for that.

Shapes: ``x: float32[batch, time, d_in] -> y: float32[batch, time, hidden_size]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.cells.base import RecurrentCell, add_probe, to_batch_major, uniform_initializer
from lrd.registry import register_mixer

__all__ = ["CoRNN", "UnICORNN", "cornn_step", "unicornn_step"]


def cornn_step(
    carry: tuple[jax.Array, jax.Array],
    xw: jax.Array,
    y_kernel: jax.Array,
    z_kernel: jax.Array,
    dt: float,
    gamma: float,
    epsilon: float,
    probe: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One coRNN step (module docstring); ``carry = (y, z)``, ``xw = V u_t + b``, both ``[batch, hidden]``.

    A probe ``(p_y, p_z)`` is added to ``z_t`` before ``y_t`` is computed from it, and to ``y_t``, so its gradient
    is the total derivative with respect to each leaf.
    """
    y, z = carry
    drive = jnp.tanh(y @ y_kernel + z @ z_kernel + xw)
    z = add_probe(z + dt * (drive - gamma * y - epsilon * z), None if probe is None else probe[1])
    y = add_probe(y + dt * z, None if probe is None else probe[0])
    return y, z


def unicornn_step(
    carry: tuple[jax.Array, jax.Array],
    xw: jax.Array,
    w: jax.Array,
    step_size: jax.Array,
    alpha: float,
    probe: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One UnICORNN step (module docstring); ``step_size = dt * sigmoid(c)``, ``w``: ``[hidden]``."""
    y, z = carry
    z = add_probe(z - step_size * (jnp.tanh(w * y + xw) + alpha * y), None if probe is None else probe[1])
    y = add_probe(y + step_size * z, None if probe is None else probe[0])
    return y, z


class _Oscillator(RecurrentCell):
    """What both oscillator cells share: the ``(y, z)`` state, probed as ``y`` then ``z``, and the hyperparameter
    checks."""

    STATE_NAMES: ClassVar[tuple[str, ...]] = ("y", "z")

    dt: float = 0.06

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("dt", low=0.0)

    def _run(self, x: jax.Array, input_kernel: jax.Array, bias: jax.Array, step: Any) -> jax.Array:
        xs, project = self.project_inputs(x, input_kernel, bias)
        zeros = jnp.zeros((x.shape[0], self.hidden_size), jnp.float32)
        ys = self.recur(
            lambda carry, x_t, p: (step(carry, project(x_t), p), {}),
            (zeros, zeros),
            xs,
            emit=lambda carry: carry[0],
        )
        return to_batch_major(ys)


@register_mixer(
    "cornn",
    family="oscillator",
    description="coRNN: coupled damped oscillators, IMEX discretisation (Rusch & Mishra 2021)",
)
class CoRNN(_Oscillator):
    """coRNN (see module docstring).

    Defaults are the authors' adding-problem setting: ``dt = 0.06``, ``gamma = 66``, ``epsilon = 15``. Parameters:
    ``input_kernel: [d_in, H]``, ``bias: [H]``, ``y_kernel`` (``W``) and ``z_kernel`` (``W~``): ``[H, H]``, each
    initialised uniformly in ``+-1/sqrt(d_in + 2H)``, the default of the one dense layer over ``[u, z, y]`` in the
    authors' code.

    Attributes:
      dt: the time step. gamma: the restoring force on ``y``. epsilon: the damping of ``z``.
    """

    gamma: float = 66.0
    epsilon: float = 15.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("gamma", low=0.0, strict=False)
        self.require_number("epsilon", low=0.0, strict=False)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        bound = (x.shape[-1] + 2 * h_size) ** -0.5
        init = uniform_initializer(-bound, bound)
        input_kernel = self.weight("input_kernel", init, (x.shape[-1], h_size))
        bias = self.param("bias", init, (h_size,))
        y_kernel = self.weight("y_kernel", init, (h_size, h_size))
        z_kernel = self.weight("z_kernel", init, (h_size, h_size))
        return self._run(
            x,
            input_kernel,
            bias,
            lambda carry, xw, p: cornn_step(
                carry, xw, y_kernel, z_kernel, self.dt, self.gamma, self.epsilon, p
            ),
        )


@register_mixer(
    "unicornn",
    family="oscillator",
    description="UnICORNN: uncoupled oscillators, symplectic Euler, learned time steps (Rusch & Mishra 2021)",
)
class UnICORNN(_Oscillator):
    """UnICORNN (see module docstring).

    Parameters: ``input_kernel: [d_in, H]`` (LeCun normal), ``bias: [H]`` (zeros), the diagonal recurrent weight
    ``w: [H]`` ``~ U[0, 1]`` and the time-step logits ``c: [H]`` ``~ U[-0.1, 0.1]``, as in the authors' code.

    Attributes:
      dt: the largest time step (each unit's is ``dt * sigmoid(c)``). alpha: the restoring force.
    """

    dt: float = 0.1
    alpha: float = 1.0

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_number("alpha", low=0.0, strict=False)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        h_size = self.hidden_size
        input_kernel = self.weight("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], h_size))
        bias = self.param("bias", nn.initializers.zeros_init(), (h_size,))
        w = self.param("w", uniform_initializer(0.0, 1.0), (h_size,))
        c = self.param("c", uniform_initializer(-0.1, 0.1), (h_size,))
        step_size = self.dt * jax.nn.sigmoid(c)
        return self._run(
            x, input_kernel, bias, lambda carry, xw, p: unicornn_step(carry, xw, w, step_size, self.alpha, p)
        )
