"""SequenceModel: encoder -> mixers -> per-step readout, in the two settings the field compares.

* ``mode="bare"``: the classic 1997 setting. Inputs (one-hot for token tasks) feed straight into a stack of
  ``num_layers`` cells, the last cell's state is read out by one linear layer at every step.
* ``mode="block"``: the modern setting. Inputs are embedded to ``hidden_size`` (``d_model``), then ``num_layers``
  pre-norm residual blocks ``x + mixer(norm(x))`` and ``x + MLP(norm(x))``, a final norm and a linear readout.

``mixers`` is a pattern of registered names cycled over the layers, so ``("rglru", "rglru", "attention")`` with
``num_layers=6`` is a 2:1 hybrid. Task heads read out at every step; the task's mask picks the scored steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrd.registry import build_mixer, get_mixer

MODES = ("bare", "block")
NORMS = ("layernorm", "rmsnorm")
INPUT_KINDS = ("real", "tokens")

__all__ = ["SequenceModel", "MODES", "NORMS", "build_model"]


def _mixer_fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_mixer(name).cls)}


class MLP(nn.Module):
    """Position-wise ``Dense(ratio * d) -> GELU -> Dense(d)``."""

    ratio: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.ratio * width, name="up")(x)
        return nn.Dense(width, name="down")(nn.gelu(x))


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
      mode: ``"bare"`` or ``"block"``.
      num_layers: number of mixer layers.
      mixer_options: per-mixer-name options, e.g. ``{"lstm": {"forget_bias": 1.0}}``.
      scan_options: options given to every mixer that has them (``truncation``, ``unroll``, ``remat``,
        ``scan_mode``...); a mixer without such a field ignores it.
      norm: ``"layernorm"`` or ``"rmsnorm"`` (block mode).
      mlp_ratio: MLP expansion in block mode (0 disables the MLP sublayer).
    """

    mixers: tuple[str, ...]
    hidden_size: int
    output_dim: int
    input_kind: str = "real"
    vocab_size: int = 0
    mode: str = "bare"
    num_layers: int = 1
    mixer_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    scan_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    norm: str = "layernorm"
    mlp_ratio: int = 4

    def _mixer(self, layer: int) -> nn.Module:
        name = self.mixers[layer % len(self.mixers)]
        fields = _mixer_fields(name)
        options = {k: v for k, v in self.scan_options.items() if k in fields}
        options.update(self.mixer_options.get(name, {}))
        return build_mixer(name, self.hidden_size, module_name=f"layer{layer}_{name}", **options)

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.mode == "bare":
            x = jax.nn.one_hot(inputs, self.vocab_size) if self.input_kind == "tokens" else inputs
            for layer in range(self.num_layers):
                x = self._mixer(layer)(x)
            return nn.Dense(self.output_dim, name="readout")(x)

        if self.input_kind == "tokens":
            x = nn.Embed(self.vocab_size, self.hidden_size, name="embed")(inputs)
        else:
            x = nn.Dense(self.hidden_size, name="encoder")(inputs)
        for layer in range(self.num_layers):
            x = x + self._mixer(layer)(_norm(self.norm, f"layer{layer}_norm_mixer")(x))
            if self.mlp_ratio:
                x = x + MLP(self.mlp_ratio, name=f"layer{layer}_mlp")(
                    _norm(self.norm, f"layer{layer}_norm_mlp")(x)
                )
        x = _norm(self.norm, "final_norm")(x)
        return nn.Dense(self.output_dim, name="readout")(x)


def validate_model_args(
    mixers: tuple[str, ...], hidden_size: int, mode: str, num_layers: int, norm: str = "layernorm"
) -> None:
    """Raise ``ValueError`` naming the bad field before anything is built."""
    if not mixers:
        raise ValueError("model.mixers must name at least one mixer")
    for name in mixers:
        get_mixer(name)  # unknown names raise with the allowed list
    if mode not in MODES:
        raise ValueError(f"model.mode={mode!r} is unknown; allowed values: {', '.join(MODES)}")
    if norm not in NORMS:
        raise ValueError(f"model.norm={norm!r} is unknown; allowed values: {', '.join(NORMS)}")
    if not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"model.hidden_size must be a positive int, got {hidden_size!r}")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"model.num_layers must be a positive int, got {num_layers!r}")


def build_model(
    mixers: str | tuple[str, ...] | list[str],
    task: Any,
    *,
    hidden_size: int = 64,
    mode: str = "bare",
    num_layers: int = 1,
    mixer_options: Mapping[str, Mapping[str, Any]] | None = None,
    scan_options: Mapping[str, Any] | None = None,
    norm: str = "layernorm",
    mlp_ratio: int = 4,
) -> SequenceModel:
    """A :class:`SequenceModel` whose input and output sizes match ``task``.

    ``mixers`` is one name, a tuple of names, or a ``+``-joined pattern such as ``"lstm+attention"``.
    """
    if isinstance(mixers, str):
        mixers = tuple(m.strip() for m in mixers.split("+"))
    mixers = tuple(mixers)
    validate_model_args(mixers, hidden_size, mode, num_layers, norm)
    tokens = task.input_kind == "tokens"
    return SequenceModel(
        mixers=mixers,
        hidden_size=hidden_size,
        output_dim=task.output_dim,
        input_kind=task.input_kind,
        vocab_size=task.vocab_size if tokens else 0,
        mode=mode,
        num_layers=num_layers,
        mixer_options=dict(mixer_options or {}),
        scan_options=dict(scan_options or {}),
        norm=norm,
        mlp_ratio=mlp_ratio,
    )


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree (complex counts as 2)."""
    return int(
        sum(leaf.size * (2 if jnp.iscomplexobj(leaf) else 1) for leaf in jax.tree_util.tree_leaves(params))
    )
