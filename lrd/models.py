"""SequenceModel: encoder -> mixers -> per-step readout, in the two settings the field compares.

* ``setting="bare"``: the classic 1997 setting. Inputs (one-hot for token tasks) feed straight into a stack of
  ``num_layers`` cells, the last cell's state is read out by one linear layer at every step.
* ``setting="block"``: the modern setting. Inputs are embedded to ``hidden_size`` (``d_model``), then
  ``num_layers`` pre-norm residual blocks ``x + mixer(norm(x))`` and ``x + MLP(norm(x))``, a final norm and a
  linear readout.

``mixers`` is a pattern of registered names cycled over the layers, so ``("rglru", "rglru", "attention")`` with
``num_layers=6`` is a 2:1 hybrid. Task heads read out at every step; the task's mask picks the scored steps.

Models are built from a validated :class:`lrd.config.ModelConfig` (``ModelConfig.build(task)``, or
:func:`build_model`, which makes one), so every option a mixer receives was checked before any compute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.config import NORMS, SETTINGS, ModelConfig
from lrd.registry import build_mixer

INPUT_KINDS = ("real", "tokens")

__all__ = ["SequenceModel", "SETTINGS", "NORMS", "build_model", "count_params"]


def _dense(features: int, name: str, dtype: str, param_dtype: str) -> nn.Dense:
    """``nn.Dense`` with operands in ``dtype`` (float32 default), weights stored in ``param_dtype``."""
    return nn.Dense(features, name=name, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(param_dtype))


class MLP(nn.Module):
    """Position-wise ``Dense(ratio * d) -> GELU -> Dense(d)`` (operands in ``dtype``, result float32)."""

    ratio: int = 4
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = _dense(self.ratio * width, "up", self.dtype, self.param_dtype)(x)
        x = _dense(width, "down", self.dtype, self.param_dtype)(nn.gelu(x))
        return x.astype(jnp.float32)


def _norm(kind: str, name: str) -> nn.Module:
    return nn.LayerNorm(name=name) if kind == "layernorm" else nn.RMSNorm(name=name)


class SequenceModel(nn.Module):
    """``inputs -> float32[batch, time, output_dim]`` (see module docstring).

    Attributes:
      mixers: pattern of registered mixer names, cycled over ``num_layers``.
      hidden_size: cell width (bare) or ``d_model`` (block).
      output_dim: readout width (classes or regression targets).
      input_kind: ``"real"`` (inputs ``float32[batch, time, d_in]``) or ``"tokens"`` (``int32[batch, time]``).
      vocab_size: number of token ids when ``input_kind == "tokens"``.
      setting: ``"bare"`` or ``"block"``.
      num_layers: number of mixer layers.
      mixer_options: per-mixer-name options, as resolved and checked by
        :meth:`lrd.config.ModelConfig.mixer_options`, e.g. ``{"lstm": {"forget_bias": 1.0, "truncation": 50}}``.
      norm: ``"layernorm"`` or ``"rmsnorm"`` (block setting).
      mlp_ratio: MLP expansion in the block setting (0 disables the MLP sublayer).
      dtype, param_dtype: operand dtype of the encoder's and MLPs' matmuls and storage dtype of their weights and
        the embedding (the mixers get theirs in ``mixer_options``); norms, readout and residual stream are float32.
    """

    mixers: tuple[str, ...]
    hidden_size: int
    output_dim: int
    input_kind: str = "real"
    vocab_size: int = 0
    setting: str = "bare"
    num_layers: int = 1
    mixer_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    norm: str = "layernorm"
    mlp_ratio: int = 4
    dtype: str = "float32"
    param_dtype: str = "float32"

    def _mixer(self, layer: int) -> nn.Module:
        name = self.mixers[layer % len(self.mixers)]
        options = self.mixer_options.get(name, {})
        return build_mixer(name, self.hidden_size, module_name=f"layer{layer}_{name}", **options)

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.setting == "bare":
            x = jax.nn.one_hot(inputs, self.vocab_size) if self.input_kind == "tokens" else inputs
            for layer in range(self.num_layers):
                x = self._mixer(layer)(x)
            return nn.Dense(self.output_dim, name="readout")(x)

        if self.input_kind == "tokens":
            embed = nn.Embed(
                self.vocab_size, self.hidden_size, name="embed", param_dtype=jnp.dtype(self.param_dtype)
            )
            x = embed(inputs).astype(jnp.float32)
        else:
            x = _dense(self.hidden_size, "encoder", self.dtype, self.param_dtype)(inputs).astype(jnp.float32)
        for layer in range(self.num_layers):
            x = x + self._mixer(layer)(_norm(self.norm, f"layer{layer}_norm_mixer")(x))
            if self.mlp_ratio:
                x = x + MLP(self.mlp_ratio, self.dtype, self.param_dtype, name=f"layer{layer}_mlp")(
                    _norm(self.norm, f"layer{layer}_norm_mlp")(x)
                )
        x = _norm(self.norm, "final_norm")(x)
        return nn.Dense(self.output_dim, name="readout")(x)


def build_model(
    mixers: str | tuple[str, ...] | list[str],
    task: Any,
    *,
    hidden_size: int = 64,
    setting: str = "bare",
    num_layers: int = 1,
    mixer_options: Mapping[str, Mapping[str, Any]] | None = None,
    truncation: int | None = None,
    scan_mode: str | None = None,
    norm: str = "layernorm",
    mlp_ratio: int = 4,
    dtype: str = "float32",
    param_dtype: str = "float32",
) -> SequenceModel:
    """A :class:`SequenceModel` whose input and output sizes match ``task``: ``ModelConfig(...).build(task)``.

    ``mixers`` is one name, a tuple of names, or a ``+``-joined pattern such as ``"lstm+attention"``; the other
    arguments are the fields of :class:`lrd.config.ModelConfig` (``mixer_options`` is its ``options``) and are
    validated there, once.
    """
    name = mixers if isinstance(mixers, str) else "+".join(mixers)
    config = ModelConfig(
        name=name,
        hidden_size=hidden_size,
        num_layers=num_layers,
        setting=setting,
        norm=norm,
        mlp_ratio=mlp_ratio,
        dtype=dtype,
        param_dtype=param_dtype,
        truncation=truncation,
        scan_mode=scan_mode,
        options=dict(mixer_options or {}),
    )
    return config.build(task)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree (complex counts as 2)."""
    return int(
        sum(leaf.size * (2 if jnp.iscomplexobj(leaf) else 1) for leaf in jax.tree_util.tree_leaves(params))
    )
