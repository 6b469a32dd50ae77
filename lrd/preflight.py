"""A preflight memory check: reject a config whose training cannot fit in the device's memory, before any compute.

Without it an absurd size (``--hidden-size 1000000000``) reaches XLA, which aborts the process with no message
naming the field. The estimate is a *lower bound*, so it never rejects a run that fits:

* parameters: counted from the model's shapes (``jax.eval_shape`` of its ``init``: nothing is allocated), times 4
  copies in training (parameters, gradients and Adam's two moments), times the seeds trained together;
* activations: the hidden sequence ``[batch, time, hidden]`` of every layer that the backward pass keeps, per seed.

Both in float32 bytes. The device's memory is the GPU/TPU allocator's limit where the backend reports one, and the
machine's physical memory on CPU.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from lrd.errors import ConfigError

__all__ = ["memory_estimate", "device_memory", "check_memory"]

BYTES = 4  # float32


def device_memory() -> int | None:
    """Bytes of memory of this process's first device (``None`` when unknown)."""
    device = jax.local_devices()[0]
    stats = getattr(device, "memory_stats", lambda: None)()
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimate(config: Any, task: Any, model: Any) -> dict[str, int]:
    """``{"parameters", "parameter_bytes", "activation_bytes", "total_bytes"}`` of training ``config`` (lower bound)."""
    example = jax.ShapeDtypeStruct((1, task.seq_len, *_input_tail(task)), _input_dtype(task))
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), example)["params"]
    parameters = int(sum(np.prod(leaf.shape, dtype=object) for leaf in jax.tree_util.tree_leaves(shapes)))
    seeds = config.run.num_seeds
    parameter_bytes = 4 * parameters * BYTES * seeds
    activation_bytes = (
        config.optim.batch_size
        * task.seq_len
        * config.model.hidden_size
        * config.model.num_layers
        * BYTES
        * seeds
    )
    return {
        "parameters": parameters,
        "parameter_bytes": parameter_bytes,
        "activation_bytes": activation_bytes,
        "total_bytes": parameter_bytes + activation_bytes,
    }


def _input_tail(task: Any) -> tuple[int, ...]:
    return () if task.input_kind == "tokens" else (task.input_dim,)


def _input_dtype(task: Any) -> Any:
    return np.int32 if task.input_kind == "tokens" else np.float32


def check_memory(config: Any, task: Any, model: Any, *, available: int | None = None) -> dict[str, int]:
    """Raise :class:`ConfigError` when the lower bound of :func:`memory_estimate` exceeds the device's memory."""
    estimate = memory_estimate(config, task, model)
    available = device_memory() if available is None else available
    if available is None or estimate["total_bytes"] <= available:
        return estimate
    if estimate["parameter_bytes"] >= estimate["activation_bytes"]:
        field = f"model.hidden_size={config.model.hidden_size}"
        what = (
            f"{estimate['parameters']:.3g} parameters per model, x4 for gradients and Adam moments, x"
            f"{config.run.num_seeds} seed(s)"
        )
        advice = "a smaller model.hidden_size or model.num_layers, or fewer run.num_seeds"
    else:
        field = f"optim.batch_size={config.optim.batch_size}, task.lag={config.task.lag}"
        what = (
            f"the hidden sequences kept for the backward pass: batch x time x hidden x layers x seeds = "
            f"{config.optim.batch_size} x {task.seq_len} x {config.model.hidden_size} x "
            f"{config.model.num_layers} x {config.run.num_seeds} floats"
        )
        advice = "a smaller optim.batch_size, task.lag or model.hidden_size, or fewer run.num_seeds"
    raise ConfigError(
        f"{field}: training needs at least {_gib(estimate['total_bytes'])} ({what}), more than the "
        f"{_gib(available)} of {jax.devices()[0].platform} memory; use {advice}"
    )


def _gib(count: int) -> str:
    return f"{count / 2**30:.3g} GiB"
