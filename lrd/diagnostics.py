"""Gradient flow through time: why a model can or cannot learn a lag, measured for any mixer and task.

:func:`grad_flow` measures, on one batch and for one or several parameter sets (seeds, stacked on a leading axis):

* **the loss gradient against distance**: ``||dL/dh_t||`` for every leaf of every layer's probed state (the
  gradient probe of :mod:`lrd.scan`: for an LSTM the cell state ``c`` and the output ``h`` separately, for an SSM
  its complex state), per example, as a function of the distance ``d = T - 1 - t`` from the last step. Curves are
  the mean and quantiles of ``log ||dL/dh_t||`` (natural log) over examples and seeds;
* **the fitted decay per step**: the least-squares slope of that mean log-norm against ``d`` over a window of
  distances (:attr:`lrd.config.DiagnosticsConfig.window`), in nats per step: ``-0.1`` means the gradient shrinks by
  ``e^-0.1`` per step of distance;
* **the predictions** for an Elman layer ``h_t = f(W x_t + U h_{t-1})``, whose Jacobian ``dh_t/dh_{t-1} =
  diag(f'_t) U`` gives the textbook bound ``||dh_T/dh_t|| <= (||U|| sup f')^(T-t)`` (Hochreiter 1991; Bengio,
  Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013): the slope ``log(rho(U) * sup f')`` with ``rho`` the
  spectral radius, and ``log(rho(U) * rms f')`` with ``f'`` measured on the forward pass;
* **the Jacobian product** ``||dy_{T-1}/dh_t||_F`` of each layer's last output with respect to its state at
  ``t``, estimated from random unit projections ``v``: ``E ||J^T v||^2 = ||J||_F^2 / width``;
* **spectra** of fixed transitions (:meth:`lrd.cells.base.Mixer.spectrum`) and **statistics of the internals**
  cells record (forget gates, decays, ``f'``), per layer.

``lrd grad-flow`` (:func:`run_grad_flow`) runs it from a config, at initialisation or on a run's checkpoint, and
writes ``grad_flow.json`` (schema: :func:`grad_flow`) and ``grad_flow.png``; ``--sweep KEY=V1,V2,...`` repeats it
over the values of one field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import INTERMEDIATES, PROBE_COLLECTION
from lrd.errors import ConfigError
from lrd.registry import build_mixer, get_mixer

__all__ = [
    "grad_flow",
    "leaf_names",
    "fit_slope",
    "run_grad_flow",
    "run_sweep",
    "plot_grad_flow",
    "plot_sweep",
    "QUANTILES",
]

QUANTILES = (0.1, 0.5, 0.9)


# ----------------------------------------------------------------------------------------------------------------
# The model's layers and probed leaves.


def _layers(model: Any) -> list[tuple[str, str]]:
    """``[(module name, mixer name)]`` of a :class:`lrd.models.SequenceModel`, in order."""
    return [
        (f"layer{i}_{model.mixers[i % len(model.mixers)]}", model.mixers[i % len(model.mixers)])
        for i in range(model.num_layers)
    ]


def _mixer_module(model: Any, mixer: str) -> Any:
    """The (unbound) mixer module ``mixer`` of ``model``, with the options the model gives it."""
    return build_mixer(mixer, model.hidden_size, **model.mixer_options.get(mixer, {}))


def leaf_names(model: Any) -> list[str]:
    """``["layer0_lstm/c", "layer0_lstm/h", ...]``: the probed leaves of ``model``, named by ``STATE_NAMES``."""
    names = []
    for layer, mixer in _layers(model):
        state_names = get_mixer(mixer).cls.STATE_NAMES
        names.extend(f"{layer}/{name}" for name in state_names)
    return names


def _named_leaves(tree: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """A probe-shaped tree (``{layer: {"state": leaves}}``) as ``{"layer/leaf": array}``."""
    out = {}
    for layer, mixer in _layers(model):
        if layer not in tree:
            continue
        leaves = jax.tree_util.tree_leaves(tree[layer]["state"])
        names = get_mixer(mixer).cls.STATE_NAMES
        if len(names) != len(leaves):
            raise ValueError(f"{mixer}: STATE_NAMES {names} do not match its {len(leaves)} probed leaves")
        out.update({f"{layer}/{name}": leaf for name, leaf in zip(names, leaves, strict=True)})
    return out


# ----------------------------------------------------------------------------------------------------------------
# The measurement (one parameter set; vmapped over seeds by grad_flow).


def _example_norms(grad: jax.Array) -> jax.Array:
    """``[time, batch, ...] -> [time, batch]``: the norm of each example's gradient at each step."""
    axes = tuple(range(2, grad.ndim))
    return jnp.sqrt(jnp.sum(jnp.abs(grad) ** 2, axis=axes)) if axes else jnp.abs(grad)


def _measure(
    model: Any,
    params: Any,
    batch: Any,
    loss: Callable,
    key: jax.Array,
    jacobian_samples: int,
) -> tuple[dict, dict, dict]:
    """``(loss-gradient norms {leaf: [T, B]}, Jacobian norms {leaf: [T, B]}, internals {layer: {name: array}})``."""
    _, state = model.apply({"params": params}, batch.inputs, mutable=[PROBE_COLLECTION])
    probes = state[PROBE_COLLECTION]

    def total_loss(probes):
        outputs, recorded = model.apply(
            {"params": params, PROBE_COLLECTION: probes}, batch.inputs, mutable=[INTERMEDIATES]
        )
        return loss(outputs, batch), recorded.get(INTERMEDIATES, {})

    grads, internals = jax.grad(total_loss, has_aux=True)(probes)
    grad_norms = {name: _example_norms(g) for name, g in _named_leaves(grads, model).items()}

    jacobian_norms = {}
    for index, (layer, _) in enumerate(_layers(model)):
        if layer not in probes:
            continue

        def last_output(layer_probe, v, layer=layer):
            merged = {**probes, layer: layer_probe}
            _, captured = model.apply(
                {"params": params, PROBE_COLLECTION: merged},
                batch.inputs,
                capture_intermediates=lambda module, method, layer=layer: (
                    module.name == layer and method == "__call__"
                ),
                mutable=[INTERMEDIATES],
            )
            (y,) = captured[INTERMEDIATES][layer]["__call__"]  # [batch, time, width]
            return jnp.sum(jnp.real(y[:, -1]) * v)

        width = model.hidden_size
        v = jax.random.normal(
            jax.random.fold_in(key, index), (jacobian_samples, batch.inputs.shape[0], width)
        )
        v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
        projected = jax.vmap(jax.grad(last_output), in_axes=(None, 0))(probes[layer], v)
        norms = jax.tree_util.tree_map(lambda g: jax.vmap(_example_norms)(g), projected)  # [K, T, B] per leaf
        frobenius = jax.tree_util.tree_map(
            lambda n, width=width: jnp.sqrt(width * jnp.mean(n**2, axis=0)), norms
        )
        jacobian_norms.update(_named_leaves({layer: frobenius}, model))
    return grad_norms, jacobian_norms, internals


# ----------------------------------------------------------------------------------------------------------------
# Summaries (host side, float64).


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(x, np.float64))


def fit_slope(distance: np.ndarray, log_norm: np.ndarray, window: Sequence[int]) -> float | None:
    """Least-squares slope of ``log_norm`` against ``distance`` over ``window = [lo, hi]`` (finite points only).

    ``None`` when fewer than two finite points fall in the window (say, a sequence shorter than ``lo``, or a
    gradient that is exactly zero there).
    """
    distance, log_norm = np.asarray(distance, np.float64), np.asarray(log_norm, np.float64)
    keep = (distance >= window[0]) & (distance <= window[1]) & np.isfinite(log_norm)
    if keep.sum() < 2:
        return None
    slope, _ = np.polyfit(distance[keep], log_norm[keep], 1)
    return float(slope)


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, to 6 significant digits (float32 carries about 7); inf/NaN become ``null`` (a zero
    gradient has ``log = -inf``)."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in np.asarray(values, np.float64).ravel()]


def _curve(norms: np.ndarray) -> dict[str, Any]:
    """``norms: [seeds, T, B]`` -> curve against distance: mean and quantiles of log-norm over seeds x examples."""
    logs = _log(norms)  # [S, T, B]
    per_step = np.moveaxis(logs, 1, 0).reshape(logs.shape[1], -1)[::-1]  # [distance, S*B]
    with np.errstate(invalid="ignore"):
        mean = per_step.mean(axis=1)
        quantiles = {f"q{round(100 * q):02d}": np.quantile(per_step, q, axis=1) for q in QUANTILES}
    return {
        "distance": list(range(per_step.shape[0])),
        "log_grad_norm": _json_floats(mean),
        **{name: _json_floats(values) for name, values in quantiles.items()},
    }


RETAINING = ("forget_gate", "decay")  # internals that multiply the state from one step to the next


def _summary(name: str, values: np.ndarray) -> dict[str, Any]:
    """Statistics of a recorded internal ``[seeds, batch, time, units]``: overall, and of the per-unit means.

    For a gate that multiplies the state (``forget_gate``, ``decay``), also the *retention* against distance:
    ``log prod_{s=t+1}^{T-1} f_s``, the factor by which that gate alone scales what the state held at ``t`` by the
    last step (the constant error carousel's factor, for an LSTM), for the best-retaining unit of each sequence and
    for the median unit, averaged over sequences and seeds.
    """
    values = np.asarray(values, np.float64)
    units = values.reshape(-1, values.shape[-1]).mean(axis=0)
    summary = {
        "mean": float(values.mean()),
        "rms": float(np.sqrt(np.mean(values**2))),
        "quantiles": {f"q{round(100 * q):02d}": float(np.quantile(values, q)) for q in QUANTILES},
        "unit_means": _json_floats(units),
        "unit_mean_quantiles": {f"q{round(100 * q):02d}": float(np.quantile(units, q)) for q in QUANTILES},
    }
    if name in RETAINING and values.ndim == 4:
        log_f = _log(np.abs(values))  # [S, B, T, U]
        # retention[t] = sum_{s > t} log f_s: a reversed cumulative sum, shifted by one step.
        later = np.cumsum(log_f[:, :, ::-1], axis=2)[:, :, ::-1]
        retention = np.concatenate([later[:, :, 1:], np.zeros_like(later[:, :, :1])], axis=2)[:, :, ::-1]
        summary["retention"] = {
            "distance": list(range(values.shape[2])),
            "log_best_unit": _json_floats(retention.max(axis=-1).mean(axis=(0, 1))),
            "log_median_unit": _json_floats(np.median(retention, axis=-1).mean(axis=(0, 1))),
        }
    return summary


def _elman_prediction(
    mixer_cls: type, module: Any, spectra: list[np.ndarray], internals: dict
) -> dict | None:
    """The two predicted slopes of an Elman layer, or ``None`` for other mixers.

    Not for IndRNN: with a diagonal ``u`` every unit decays at its own rate ``log(|u_n| f'_n)`` and the norm follows
    the slowest unit, which neither a spectral radius times an rms derivative nor the bound describes.
    """
    from lrd.cells.classic import ACTIVATION_DERIVATIVE_MAX, ElmanRNN

    if not issubclass(mixer_cls, ElmanRNN) or "activation_derivative" not in internals:
        return None
    rho = float(np.mean([np.max(np.abs(s)) for s in spectra]))
    rms = float(np.sqrt(np.mean(np.asarray(internals["activation_derivative"], np.float64) ** 2)))
    return {
        "spectral_radius": rho,
        "max_fprime": ACTIVATION_DERIVATIVE_MAX[module.activation],
        "rms_fprime": rms,
        "log_rho_max_fprime": float(np.log(rho * ACTIVATION_DERIVATIVE_MAX[module.activation])),
        "log_rho_rms_fprime": float(np.log(rho * rms)) if rms > 0 else None,
    }


def grad_flow(
    model: Any,
    params: Any,
    batch: Any,
    loss: Callable[[jax.Array, Any], jax.Array],
    *,
    window: Sequence[int] = (5, 60),
    jacobian_samples: int = 4,
    leaves: Sequence[str] = (),
    stacked: bool = False,
    key: jax.Array | None = None,
) -> dict[str, Any]:
    """Gradient flow of ``model`` with ``params`` on ``batch`` under ``loss(outputs, batch)`` (module docstring).

    Args:
      model: a :class:`lrd.models.SequenceModel`.
      params: its parameters; with ``stacked=True``, several sets stacked on a leading seed axis (vmapped).
      batch: a :class:`lrd.tasks.base.Batch`; ``loss``: e.g. ``task.loss``.
      window: ``[lo, hi]`` distances of the slope fit; ``jacobian_samples``: projections per example.
      leaves: leaf names to report (see :func:`leaf_names`); empty: all.

    Returns a JSON-able dict::

        {"curves": {LEAF: {"distance": [...], "log_grad_norm": [...], "q10": [...], "q50": [...], "q90": [...]}},
         "slope_per_step": {LEAF: float | None}, "slope_window": [lo, hi],
         "predicted_slope_per_step": {"log_rho_max_fprime": float | None, "log_rho_rms_fprime": float | None},
         "predictions_by_layer": {LAYER: {...}}, "jacobian": {LEAF: {"distance", "log_norm"}},
         "jacobian_slope_per_step": {LEAF: float | None}, "spectra": {LAYER: {...}},
         "internals": {LAYER: {NAME: {...}}}, "num_seeds": int, "batch_size": int, "seq_len": int}
    """
    all_leaves = leaf_names(model)
    unknown = sorted(set(leaves) - set(all_leaves))
    if unknown:
        raise ConfigError(f"diagnostics.leaves {unknown} unknown; allowed values: {', '.join(all_leaves)}")
    if not stacked:
        params = jax.tree_util.tree_map(lambda leaf: leaf[None], params)
    num_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(0) if key is None else key, num_seeds)
    measure = jax.jit(
        jax.vmap(lambda p, k: _measure(model, p, batch, loss, k, jacobian_samples)),
    )
    grad_norms, jacobian_norms, internals = jax.tree_util.tree_map(np.asarray, measure(params, keys))
    chosen = [name for name in all_leaves if not leaves or name in leaves]

    curves = {name: _curve(grad_norms[name]) for name in chosen if name in grad_norms}
    slopes = {
        name: fit_slope(np.asarray(c["distance"]), np.asarray(c["log_grad_norm"], float), window)
        for name, c in ((n, _nan(c)) for n, c in curves.items())
    }
    jacobian = {}
    for name in chosen:
        if name in jacobian_norms:
            curve = _curve(jacobian_norms[name])
            jacobian[name] = {"distance": curve["distance"], "log_norm": curve["log_grad_norm"]}
    jacobian_slopes = {
        name: fit_slope(np.asarray(j["distance"]), np.asarray(_nan_list(j["log_norm"])), window)
        for name, j in jacobian.items()
    }

    spectra, internal_stats, predictions = {}, {}, {}
    for layer, mixer in _layers(model):
        module = _mixer_module(model, mixer)
        per_seed = [
            module.spectrum(jax.tree_util.tree_map(lambda leaf, i=i: np.asarray(leaf)[i], params[layer]))
            for i in range(num_seeds)
        ]
        if per_seed[0] is not None:
            spectra[layer] = {
                "spectral_radius_per_seed": [float(np.max(np.abs(s))) for s in per_seed],
                "abs": _json_floats(np.abs(per_seed[0])),
                "real": _json_floats(np.real(per_seed[0])),
                "imag": _json_floats(np.imag(per_seed[0])),
            }
        recorded = {name: values[0] for name, values in internals.get(layer, {}).items()}
        if recorded:
            internal_stats[layer] = {name: _summary(name, values) for name, values in recorded.items()}
        prediction = _elman_prediction(get_mixer(mixer).cls, module, per_seed, recorded)
        if prediction is not None:
            predictions[layer] = prediction
    first = next(iter(predictions.values()), {})
    return {
        "curves": curves,
        "slope_per_step": slopes,
        "slope_window": list(window),
        "predicted_slope_per_step": {
            "log_rho_max_fprime": first.get("log_rho_max_fprime"),
            "log_rho_rms_fprime": first.get("log_rho_rms_fprime"),
        },
        "predictions_by_layer": predictions,
        "jacobian": jacobian,
        "jacobian_slope_per_step": jacobian_slopes,
        "spectra": spectra,
        "internals": internal_stats,
        "num_seeds": int(num_seeds),
        "batch_size": int(batch.inputs.shape[0]),
        "seq_len": int(batch.inputs.shape[1]),
    }


def _nan_list(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]


def _nan(curve: dict[str, Any]) -> dict[str, Any]:
    return {**curve, "log_grad_norm": _nan_list(curve["log_grad_norm"])}


# ----------------------------------------------------------------------------------------------------------------
# From a config: `lrd grad-flow`.


def _restore_params(config: Any, workdir: Path, model: Any, task: Any) -> tuple[Any, int]:
    """The stacked parameters of the newest readable checkpoint of the run in ``workdir``, and its step."""
    from lrd.checkpoint import Checkpointer
    from lrd.train import init_members, train_settings, unit_optimizer

    settings = train_settings(config)
    like = jax.eval_shape(lambda: init_members(model, task, unit_optimizer(settings), settings))
    with Checkpointer(workdir / "checkpoints") as checkpointer:
        restored = checkpointer.restore_latest(like)
    if restored is None:
        raise ConfigError(f"--from-workdir {str(workdir)!r} holds no readable checkpoint")
    state, meta = restored
    return state.params, int(meta["step"])


def run_grad_flow(
    config: Any, *, from_workdir: str | Path | None = None, members: Sequence[int] | None = None
) -> dict[str, Any]:
    """:func:`grad_flow` of ``config``'s model on its task: at initialisation (``run.num_seeds`` seeds from
    ``run.seed``), or with the newest checkpoint of the run in ``from_workdir`` (its members: seeds x learning rates,
    rate-major; ``members``: only those indices, e.g. one rate's seeds). One batch of ``optim.batch_size``
    held-out sequences. Returns the result with the model, task, lag, source and config added."""
    from lrd.metrics_log import environment
    from lrd.runner import build_experiment
    from lrd.train import held_out_batch, init_states, make_optimizer

    task, model, settings = build_experiment(config)
    if from_workdir is not None:
        params, step = _restore_params(config, Path(from_workdir), model, task)
        if members is not None:
            params = jax.tree_util.tree_map(lambda leaf: leaf[np.asarray(members)], params)
        source = {"kind": "checkpoint", "workdir": str(from_workdir), "step": step, "members": members}
    else:
        optimizer = make_optimizer(
            settings.learning_rates[0], settings.clip_norm, settings.weight_decay, settings.optimizer
        )
        params = init_states(model, task, optimizer, settings.seed, settings.num_seeds).params
        source = {"kind": "init", "seed": settings.seed}
    batch = held_out_batch(task, config.optim.batch_size, settings.eval_seed)
    diagnostics = config.diagnostics
    result = grad_flow(
        model,
        params,
        batch,
        task.loss,
        window=diagnostics.window,
        jacobian_samples=diagnostics.jacobian_samples,
        leaves=diagnostics.leaves,
        stacked=True,
        key=jax.random.PRNGKey(config.run.seed),
    )
    return {
        "model": config.model.name,
        "task": config.task.name,
        "lag": task.seq_len,
        "setting": config.model.setting,
        "source": source,
        **result,
        "device": environment()["device"],
        "environment": environment(),
        "config": config.to_dict(),
    }


def run_sweep(configs: Mapping[str, Any], *, from_workdir: str | Path | None = None, log=None) -> dict:
    """:func:`run_grad_flow` for each ``{label: config}``; ``{"runs": {label: result}}`` in the given order."""
    runs = {}
    for label, config in configs.items():
        runs[label] = run_grad_flow(config, from_workdir=from_workdir)
        if log is not None:
            slopes = ", ".join(f"{k}={_fmt(v)}" for k, v in runs[label]["slope_per_step"].items())
            log(f"[grad-flow] {label}: slope per step {slopes}")
    return {"runs": runs}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _curve_arrays(curve: Mapping[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(curve["distance"], float), np.asarray(_nan_list(curve[key]), float)


def plot_grad_flow(result: Mapping[str, Any], path: str | Path) -> None:
    """Log gradient norm against distance per leaf (mean, 10-90% band, fitted slope), and the Jacobian norm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_grad, ax_jac) = plt.subplots(1, 2, figsize=(11, 4.2))
    lo, hi = result["slope_window"]
    for i, (name, curve) in enumerate(result["curves"].items()):
        color = f"C{i % 10}"
        distance, mean = _curve_arrays(curve, "log_grad_norm")
        _, q10 = _curve_arrays(curve, "q10")
        _, q90 = _curve_arrays(curve, "q90")
        slope = result["slope_per_step"].get(name)
        ax_grad.plot(distance, mean, color=color, label=f"{name}: slope {_fmt(slope)}/step")
        ax_grad.fill_between(distance, q10, q90, color=color, alpha=0.2, lw=0)
        if slope is not None:
            keep = (distance >= lo) & (distance <= hi) & np.isfinite(mean)
            intercept = np.mean(mean[keep] - slope * distance[keep])
            ax_grad.plot(distance[keep], intercept + slope * distance[keep], "--", color="k", lw=1)
    predicted = result["predicted_slope_per_step"]
    if predicted.get("log_rho_max_fprime") is not None:
        ax_grad.set_title(
            f"predicted: log(rho max f') {_fmt(predicted['log_rho_max_fprime'])}, "
            f"log(rho rms f') {_fmt(predicted['log_rho_rms_fprime'])}",
            fontsize=9,
        )
    ax_grad.axvspan(lo, hi, color="0.9", zorder=0)
    ax_grad.set_xlabel("distance T-1-t (steps)")
    ax_grad.set_ylabel("log ||dL/dh_t||")
    ax_grad.legend(fontsize=7)
    for i, (name, curve) in enumerate(result["jacobian"].items()):
        distance, log_norm = _curve_arrays(curve, "log_norm")
        slope = result["jacobian_slope_per_step"].get(name)
        ax_jac.plot(distance, log_norm, color=f"C{i % 10}", label=f"{name}: slope {_fmt(slope)}/step")
    ax_jac.set_xlabel("distance T-1-t (steps)")
    ax_jac.set_ylabel("log ||dy_T/dh_t||_F")
    ax_jac.legend(fontsize=7)
    fig.suptitle(
        f"{result['model']} on {result['task']} (T={result['lag']}, {result['source']['kind']}, "
        f"{result['num_seeds']} seed(s) x {result['batch_size']} sequences)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(sweep: Mapping[str, Any], path: str | Path, leaf: str | None = None) -> None:
    """Mean log gradient norm against distance, one line per swept value (first leaf unless ``leaf``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (label, result) in enumerate(sweep["runs"].items()):
        name = leaf or next(iter(result["curves"]))
        distance, mean = _curve_arrays(result["curves"][name], "log_grad_norm")
        ax.plot(
            distance, mean, color=f"C{i % 10}", label=f"{label}: {_fmt(result['slope_per_step'][name])}/step"
        )
    ax.set_xlabel("distance T-1-t (steps)")
    ax.set_ylabel("log ||dL/dh_t||")
    ax.set_title(sweep.get("title", ""), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
