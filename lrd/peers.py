"""Implementations outside lrd that ``lrd bench`` measures next to lrd's own, on the same task and batch.

Each peer is the bare setting of the benchmark (inputs -> one LSTM of ``hidden_size`` units -> a linear readout at
every step, the task's loss), written independently of lrd's cells:

* ``flax_lstm``: Flax's ``nn.RNN(nn.OptimizedLSTMCell)`` (its fused-gates cell) and an ``nn.Dense`` readout;
* ``scan_lstm``: a minimal hand-written LSTM, one ``lax.scan`` over ``h @ U`` with the input projection hoisted;
* ``torch_lstm``: PyTorch's ``nn.LSTM`` and ``nn.Linear`` when ``torch`` is installed (it is not a dependency), on
  one thread (``torch.set_num_threads(1)``): on a small shared CPU more threads make its timings meaningless.

:func:`peer_functions` returns ``(forward, forward_and_backward, row)`` closures timed exactly like the mixers'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["PEERS", "peer_functions", "peer_available"]

PEERS = ("flax_lstm", "scan_lstm", "torch_lstm")


def peer_available(name: str) -> bool:
    """Whether the peer can run here (``torch_lstm`` needs PyTorch)."""
    if name != "torch_lstm":
        return True
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class _FlaxLSTM(nn.Module):
    hidden_size: int
    output_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size))(x)
        return nn.Dense(self.output_dim)(h)


def _scan_lstm_init(key: jax.Array, d_in: int, hidden: int, output_dim: int) -> dict[str, jax.Array]:
    k = jax.random.split(key, 3)
    return {
        "W": jax.random.normal(k[0], (d_in, 4 * hidden)) / jnp.sqrt(d_in),
        "U": jax.random.normal(k[1], (hidden, 4 * hidden)) / jnp.sqrt(hidden),
        "b": jnp.zeros((4 * hidden,)),
        "R": jax.random.normal(k[2], (hidden, output_dim)) / jnp.sqrt(hidden),
        "c": jnp.zeros((output_dim,)),
    }


def _scan_lstm_apply(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    xw = jnp.swapaxes(x, 0, 1) @ params["W"] + params["b"]  # [T, B, 4H]
    hidden = params["U"].shape[0]
    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)

    def step(carry, xw_t):
        c, h = carry
        i, f, g, o = jnp.split(xw_t + h @ params["U"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    _, hs = jax.lax.scan(step, (zeros, zeros), xw)
    return jnp.swapaxes(hs, 0, 1) @ params["R"] + params["c"]


def _onehot(task: Any, inputs: jax.Array) -> jax.Array:
    return jax.nn.one_hot(inputs, task.vocab_size) if task.input_kind == "tokens" else inputs


def peer_functions(name: str, task: Any, batch: Any, hidden: int, key: jax.Array) -> dict[str, Any]:
    """``{"forward", "fwd_bwd", "params", "compile_s", "temp_bytes"}`` for peer ``name`` (zero-argument closures)."""
    x = _onehot(task, batch.inputs)
    if name == "flax_lstm":
        module = _FlaxLSTM(hidden, task.output_dim)
        params = module.init(key, x)["params"]

        def apply(p, x):
            return module.apply({"params": p}, x)

    elif name == "scan_lstm":
        params = _scan_lstm_init(key, x.shape[-1], hidden, task.output_dim)
        apply = _scan_lstm_apply
    elif name == "torch_lstm":
        return _torch_functions(task, batch, hidden)
    else:
        raise ValueError(f"unknown peer {name!r}; allowed values: {', '.join(PEERS)}")

    def loss(p, x):
        return task.loss(apply(p, x), batch)

    forward = jax.jit(lambda p, x: apply(p, x)).lower(params, x).compile()
    fwd_bwd = jax.jit(jax.grad(loss)).lower(params, x).compile()
    count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    stats = fwd_bwd.memory_analysis()
    return {
        "forward": lambda: forward(params, x),
        "fwd_bwd": lambda: fwd_bwd(params, x),
        "params": int(count),
        "temp_bytes": getattr(stats, "temp_size_in_bytes", None),
    }


def _torch_functions(task: Any, batch: Any, hidden: int) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    # np.array copies: a JAX array's buffer is read-only, which torch.from_numpy warns about
    x = torch.from_numpy(np.array(_onehot(task, batch.inputs), np.float32))
    target = torch.from_numpy(np.array(batch.targets, np.float32))
    lstm = torch.nn.LSTM(x.shape[-1], hidden, batch_first=True)
    readout = torch.nn.Linear(hidden, task.output_dim)

    def forward() -> Any:
        with torch.no_grad():
            return readout(lstm(x)[0])

    def fwd_bwd() -> Any:
        lstm.zero_grad(set_to_none=True)
        readout.zero_grad(set_to_none=True)
        out = readout(lstm(x)[0])
        loss = (
            (out - target) ** 2
        ).mean()  # a loss of the same cost as the task's; the timing is what matters
        loss.backward()
        return loss

    count = sum(p.numel() for p in [*lstm.parameters(), *readout.parameters()])
    return {"forward": forward, "fwd_bwd": fwd_bwd, "params": int(count), "temp_bytes": None}


def block(value: Any) -> Any:
    """Wait for a JAX result (PyTorch's CPU results are ready when returned)."""
    return jax.block_until_ready(value) if not callable(getattr(value, "detach", None)) else value


Timed = Callable[[], Any]
