"""The lag atlas: the maximum learnable lag of many mixers on several tasks, under one stated protocol.

    python experiments/atlas.py --models lstm,gru,rnn --tasks adding,copy --workdir runs/atlas \
        --out experiments/results/atlas_cpu2
    python experiments/atlas.py --smoke --workdir /tmp/atlas --out /tmp/atlas      # seconds, tiny sizes

Protocol (written into ``atlas.json`` under ``"protocol"``):

* each task's preset in ``experiments/configs/`` sets the hidden size, optimizer, steps per lag, seeds, evaluation
  cadence, sweep and bisection (``adding``: hidden 64, 1500 steps, 2 seeds; ``copy``: hidden 128, 3000 steps,
  2 seeds); ``--steps``, ``--num-seeds`` and ``--hidden-size`` override them for every mixer alike;
* the setting follows the family: ``bare`` (input -> one cell -> readout, the 1997 setting) for the nonlinear
  recurrent cells (families classic, oscillator, orthogonal), one pre-norm residual block with an MLP for the
  others (a linear recurrence or attention alone has no nonlinearity between memory and readout: in the bare
  setting minGRU, minLSTM, S5 and IndRNN all failed adding at lag 10, measured);
* a lag is learnable when at least ``search.solve_fraction`` of the seeds meet the task's criterion within the
  budget (the lag search of :mod:`lrd.lag_search`);
* ``--match-params N`` sizes each mixer instead of one hidden size for all: per task and mixer, the hidden size of
  :data:`HIDDEN_LADDER` whose whole model has the parameter count nearest ``N`` (on a log scale; the ladder's steps
  are at most 1.5x, so the nearest is within about 1.5x of ``N`` for any mixer whose count grows with width); a
  mixer that cannot come within 2x is an error before anything trains;
* next to each maximum lag: the parameter count of the whole model, its state size (the real numbers one
  sequence carries from step to step, summed over layers; for softmax attention the keys and values *per
  position*, a memory that grows with the sequence: ``state_per_position``), and the decay per step of the loss
  gradient at initialisation (:func:`lrd.diagnostics.run_grad_flow` at the task's preset lag, the slowest-decaying
  state leaf), the mechanism the gradient-flow notebooks test, and the same decay *after training*
  (:func:`trained_decay`: the trained model of the trial at the maximum learnable lag).

Every (task, mixer) search is an ordinary resumable lag search in ``WORKDIR/TASK/MIXER``: the same command run
again reads finished trials back and continues an unfinished one from its checkpoint. Writes ``OUT.json`` (every
search in full), ``OUT.csv`` (the table) and ``OUT.png`` (one row per mixer, every lag tried, coloured by the
fraction of seeds that solved it; the maximum learnable lag marked).

Runtime: the smoke run takes about a minute on a 2-core CPU; a full CPU atlas of every mixer on adding and copy is
hours (the GRU's adding search alone took 24 minutes), to be run in the background and resumed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from lrd.cells.base import PROBE_COLLECTION
from lrd.config import load_config
from lrd.diagnostics import run_grad_flow
from lrd.errors import ConfigError, Preempted, UsageError
from lrd.executors import make_executor
from lrd.lag_search import lag_search, summarise
from lrd.metrics_log import environment, write_json
from lrd.models import count_params
from lrd.registry import get_mixer, mixer_names

BARE_FAMILIES = ("classic", "oscillator", "orthogonal")
DEFAULT_MODELS = ("rnn", "lstm", "gru")
DEFAULT_TASKS = ("adding", "copy")
TASKS = ("adding", "copy", "selective_copy", "temporal_order")  # the presets the atlas protocol covers
# The hidden sizes --match-params chooses from: neighbours at most 1.5x apart, up to 4096 for the cells whose
# parameters grow only linearly with their width (IndRNN, uRNN, UnICORNN).
HIDDEN_LADDER = (
    *(4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256),
    *(320, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096),
)
MATCH_FACTOR = 2.0  # --match-params: every mixer's count within this factor of the target, or an error


class ParameterMatchError(ConfigError):
    """``--match-params`` cannot size a mixer within :data:`MATCH_FACTOR` of the target (raised before any search)."""


SMOKE = {  # section -> overrides, tiny sizes for a test of the driver
    "model": {"hidden_size": 8},
    "run": {"steps": 20, "eval_every": 10, "checkpoint_every": 20, "eval_batch_size": 32, "num_seeds": 2},
    "optim": {"batch_size": 8},
    "search": {"sweep": (4, 8), "max_bisections": 0},
}


def setting_of(mixer: str) -> str:
    """The atlas's setting for ``mixer``: ``bare`` for nonlinear recurrent cells, ``block`` for the rest."""
    return "bare" if get_mixer(mixer).family in BARE_FAMILIES else "block"


def search_config(task: str, mixer: str, root: Path, *, smoke: bool = False, **overrides: Any):
    """The lag-search config of one atlas cell: the task preset for ``mixer``, the family's setting, overrides."""
    config = load_config(f"{task}:model={mixer}")
    sections: dict[str, dict[str, Any]] = {
        "model": {"setting": setting_of(mixer)},
        "run": {"workdir": str(root / task / mixer), "tensorboard": False},
    }
    if smoke:
        for section, values in SMOKE.items():
            sections.setdefault(section, {}).update(values)
    for key, value in overrides.items():
        if value is not None:
            section, field = {
                "steps": ("run", "steps"),
                "num_seeds": ("run", "num_seeds"),
                "hidden_size": ("model", "hidden_size"),
                "sweep": ("search", "sweep"),
                "learning_rate": ("optim", "learning_rate"),
                "max_bisections": ("search", "max_bisections"),
            }[key]
            sections.setdefault(section, {})[field] = value
    return config.replace(**sections)


def model_size(config, *, state: bool = True) -> dict[str, Any]:
    """``{"params", "state_size", "state_per_position"}`` of ``config``'s model, from shapes (one example sequence
    is sampled; the model is only traced): the parameter count; the real numbers (a complex one counts twice) of
    every layer's probed recurrent state at one step, for one sequence (a short convolution's buffer of the last
    few inputs, as in Mamba-2, is not counted); and whether any layer's state is per position of a memory that
    grows with the sequence (softmax attention) rather than a fixed state carried along. ``state=False``: the
    parameter count only."""
    task = config.task.build()
    model = config.model.build(task)
    example = task.sample(jax.random.PRNGKey(0), 1).inputs
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
    size: dict[str, Any] = {"params": count_params(shapes["params"])}
    if state:
        _, probes = jax.eval_shape(lambda v: model.apply(v, example, mutable=[PROBE_COLLECTION]), shapes)
        size["state_size"] = sum(  # a probe leaf is [time, batch, ...]
            math.prod(leaf.shape[2:]) * (2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else 1)
            for leaf in jax.tree_util.tree_leaves(probes)
        )
        size["state_per_position"] = any(get_mixer(m).cls.STATE_PER_POSITION for m in config.model.mixers)
    return size


def match_hidden_size(task: str, mixer: str, target: int, root: Path, **kwargs: Any) -> int:
    """The hidden size of :data:`HIDDEN_LADDER` whose ``(task, mixer)`` model (:func:`search_config` with
    ``kwargs``) has the parameter count nearest ``target`` on a log scale; :class:`ParameterMatchError` when none
    comes within :data:`MATCH_FACTOR`. Sizes the mixer does not accept (heads that do not divide it, ...) are
    skipped."""
    best: tuple[float, int, int] | None = None
    for hidden in HIDDEN_LADDER:
        try:
            config = search_config(task, mixer, root, **{**kwargs, "hidden_size": hidden})
        except ConfigError:
            continue
        params = model_size(config, state=False)["params"]
        gap = abs(math.log(params / target))
        if best is None or gap < best[0]:
            best = (gap, hidden, params)
        if params > MATCH_FACTOR * target:
            break  # counts grow with the width: the rest are further away
    if best is None or best[0] > math.log(MATCH_FACTOR):
        nearest = "no hidden size is valid" if best is None else f"the nearest, {best[1]}, gives {best[2]}"
        raise ParameterMatchError(
            f"--match-params {target}: {mixer} on {task} cannot come within {MATCH_FACTOR:g}x of it over the "
            f"hidden sizes {HIDDEN_LADDER[0]}..{HIDDEN_LADDER[-1]} ({nearest} parameters)"
        )
    return best[1]


def _slowest_decay(flow: dict[str, Any]) -> tuple[float | None, str | None]:
    """The slope per step of the slowest-decaying probed leaf of a :func:`run_grad_flow` result, and the leaf."""
    slopes = {leaf: value for leaf, value in flow["slope_per_step"].items() if value is not None}
    slowest = max(slopes, key=slopes.get) if slopes else None
    return (None if slowest is None else slopes[slowest]), slowest


def describe(config) -> dict[str, Any]:
    """Parameter count, state size and the initial gradient decay of ``config``'s model at its preset lag."""
    size = model_size(config)
    flow = run_grad_flow(config.replace(run={"num_seeds": 1}))
    slope, leaf = _slowest_decay(flow)
    return {
        **size,
        "grad_slope_per_step_at_init": slope,
        "grad_slope_leaf": leaf,
        "grad_slope_window": flow["slope_window"],
        "grad_slope_lag": config.task.lag,
    }


def trained_decay(config, result: dict[str, Any]) -> dict[str, Any]:
    """The gradient's decay per step *after training*, measured as at initialisation (same lag, window and
    held-out batch): the newest checkpoint of the search's trial at its maximum learnable lag (its first trial
    when no lag was learnable), the seeds of the rate that trial counted at. Empty when no trial has a checkpoint
    (a search recorded before its trials kept their workdirs)."""
    trials = [t for t in result["trials"] if (Path(t.get("workdir", "")) / "checkpoints").is_dir()]
    if not trials:
        return {}
    best = result.get("max_learnable_lag")
    trial = next((t for t in trials if t["lag"] == best), None) or min(trials, key=lambda t: t["lag"])
    rates, seeds = list(config.optim.learning_rates), config.run.num_seeds
    rate = trial.get("best_learning_rate", rates[0])
    first = seeds * (rates.index(rate) if rate in rates else 0)  # members are rate-major
    flow = run_grad_flow(config, from_workdir=trial["workdir"], members=list(range(first, first + seeds)))
    slope, leaf = _slowest_decay(flow)
    return {
        "grad_slope_per_step_trained": slope,
        "grad_slope_trained_leaf": leaf,
        "grad_slope_trained_at_lag": trial["lag"],
        "grad_slope_trained_rate": rate,
        "grad_slope_trained_step": flow["source"]["step"],
    }


def run_atlas(
    models: list[str],
    tasks: list[str],
    root: Path,
    *,
    smoke: bool = False,
    log=print,
    on_cell=None,
    executor: Any = None,
    match_params: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Every (task, mixer) lag search, in order, resumable; returns the atlas (see module docstring).

    ``match_params``: size each (task, mixer) to this parameter count (:func:`match_hidden_size`; all of them are
    sized, and any that cannot be matched raises, before the first search). ``on_cell(atlas)``, if given, is
    called with the atlas so far after every search (the driver writes its files then, so a long atlas shows its
    table while it runs). ``executor`` runs each search's trials in parallel (:mod:`lrd.executors`; ``None``:
    serially, in this process). A search that stops with an error (say, out of memory at its longest lag) keeps
    the trials it finished, from its ``lag_search.json``, next to the error; the atlas goes on."""
    hidden = {(t, m): overrides.get("hidden_size") for t in tasks for m in models}
    if match_params is not None:
        hidden = {
            (t, m): match_hidden_size(t, m, match_params, root, smoke=smoke, **overrides) for t, m in hidden
        }
    configs = {
        (t, m): search_config(t, m, root, smoke=smoke, **{**overrides, "hidden_size": hidden[t, m]})
        for t, m in hidden
    }
    started = time.perf_counter()
    cells = []
    for (task, mixer), config in configs.items():
        log(f"[atlas] {task} / {mixer} ({config.model.setting}) in {config.run.workdir}")
        try:
            result = lag_search(config, progress=False, log=log, executor=executor)
        except (ConfigError, Preempted):
            raise
        except Exception as err:  # e.g. out of memory: recorded in the cell, and the atlas goes on
            message = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
            log(f"[atlas] {task} / {mixer}: the search stopped with {message}; recorded, going on")
            partial = _partial_search(Path(config.run.workdir))
            cells.append(
                {
                    **_cell_head(task, mixer, config),
                    **(
                        {**summarise(partial), "search": partial}
                        if partial
                        else {"max_learnable_lag": None, "smallest_unlearnable_lag": None, "trials": []}
                    ),
                    "error": message,
                }
            )
            if on_cell is not None:
                on_cell(_atlas(configs, cells, overrides, smoke, started, match_params))
            continue
        cells.append(
            {
                **_cell_head(task, mixer, config),
                **summarise(result),
                "search_wall_time_s": result["trials_wall_time_s"],
                **describe(config),
                **trained_decay(config, result),
                "search": result,
            }
        )
        if on_cell is not None:
            on_cell(_atlas(configs, cells, overrides, smoke, started, match_params))
    return _atlas(configs, cells, overrides, smoke, started, match_params)


def _partial_search(workdir: Path) -> dict[str, Any] | None:
    """The ``lag_search.json`` a search left in ``workdir`` (its finished trials), or ``None``."""
    try:
        return json.loads((workdir / "lag_search.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cell_head(task: str, mixer: str, config) -> dict[str, Any]:
    """What every atlas cell starts with: where it is and how the mixer was set up."""
    return {
        "task": task,
        "mixer": mixer,
        "family": get_mixer(mixer).family,
        "setting": config.model.setting,
        "hidden_size": config.model.hidden_size,
    }


def _atlas(configs, cells, overrides, smoke, started, match_params=None) -> dict[str, Any]:
    tasks = list(dict.fromkeys(task for task, _ in configs))
    first = next(iter(configs.values()))
    return {
        "protocol": {
            "settings": {"bare": list(BARE_FAMILIES), "block": "every other family"},
            "presets": {t: f"experiments/configs/{t}.py" for t in tasks},
            "budgets": {
                t: _budget(next(c for (task, _), c in configs.items() if task == t), match_params)
                for t in tasks
            },
            "match_params": match_params,
            "solve_fraction": first.search.solve_fraction,
            "overrides": {k: v for k, v in overrides.items() if v is not None},
            "smoke": smoke,
        },
        "cells": cells,
        "device": jax.devices()[0].device_kind,
        "environment": environment(),
        "wall_time_s": time.perf_counter() - started,
    }


def _budget(config, match_params: int | None = None) -> dict[str, Any]:
    """What one task's searches were given, after the overrides: the same for every mixer (but the hidden size,
    per mixer under ``match_params``: ``"matched to N params"``, each cell holding its own)."""
    return {
        "hidden_size": config.model.hidden_size
        if match_params is None
        else f"matched to {match_params} params",
        "steps": config.run.steps,
        "num_seeds": config.run.num_seeds,
        "batch_size": config.optim.batch_size,
        "learning_rates": list(config.optim.learning_rates),
        "eval_every": config.run.eval_every,
        "sweep": list(config.search.sweep),
        "max_bisections": config.search.max_bisections,
        "solve_fraction": config.search.solve_fraction,
    }


def write_table(atlas: dict[str, Any], path: Path) -> None:
    columns = (
        "task",
        "mixer",
        "family",
        "setting",
        "hidden_size",
        "params",
        "state_size",
        "state_per_position",
        "max_learnable_lag",
        "smallest_unlearnable_lag",
        "grad_slope_per_step_at_init",
        "grad_slope_per_step_trained",
        "search_wall_time_s",
        "error",
    )
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(atlas["cells"])


def plot_atlas(atlas: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(c["task"] for c in atlas["cells"]))
    mixers = list(dict.fromkeys(c["mixer"] for c in atlas["cells"]))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(5.5 * len(tasks), 0.45 * len(mixers) + 1.6), squeeze=False
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        for row, mixer in enumerate(mixers):
            cell = next((c for c in atlas["cells"] if c["task"] == task and c["mixer"] == mixer), None)
            if cell is None:
                continue
            if "error" in cell:
                ax.text(1, row, f"  search failed: {cell['error'][:60]}", va="center", fontsize=7, color="C3")
            lags = [t["lag"] for t in cell["trials"]]
            ax.scatter(
                lags, [row] * len(lags), c=[t["fraction_solved"] for t in cell["trials"]], cmap="viridis",
                vmin=0, vmax=1, s=40, edgecolors="k", linewidths=0.3,
            )  # fmt: skip
            if cell["max_learnable_lag"] is not None:
                ax.plot([cell["max_learnable_lag"]] * 2, [row - 0.35, row + 0.35], "r-", lw=2)
        ax.set(
            xscale="log",
            yticks=range(len(mixers)),
            yticklabels=mixers,
            xlabel="lag",
            ylim=(len(mixers) - 0.5, -0.5),
        )
        ax.set_title(f"{task}: every lag tried; red, the maximum learnable lag", fontsize=10)
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="viridis")
    fig.colorbar(scale, ax=axes[0].tolist(), label="fraction of seeds solved")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated mixers, or 'all'")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task presets")
    parser.add_argument("--workdir", default="runs/atlas", help="root of the lag-search workdirs")
    parser.add_argument("--out", required=True, help="output stem: writes OUT.json, OUT.csv and OUT.png")
    parser.add_argument("--steps", type=int, help="steps per lag for every mixer (default: the preset's)")
    parser.add_argument("--num-seeds", type=int, help="seeds per lag (default: the preset's)")
    parser.add_argument("--hidden-size", type=int, help="hidden size (default: the preset's)")
    parser.add_argument(
        "--match-params",
        type=int,
        help="size every mixer to about this many parameters (the nearest hidden size; within 2x, or an error)",
    )
    parser.add_argument("--sweep", help="comma-separated sweep lags for every task (default: the preset's)")
    parser.add_argument(
        "--max-bisections", type=int, help="bisection trials per search (default: the preset's)"
    )
    parser.add_argument(
        "--learning-rate",
        help="a rate or a comma-separated grid, trained as a vmapped axis; a lag counts at its best rate "
        "(default: the preset's)",
    )
    parser.add_argument(
        "--executor",
        default="serial",
        choices=("serial", "ray"),
        help="ray: each search's trials as Ray tasks (the parallel protocol); needs the [ray] extra",
    )
    parser.add_argument("--ray-address", help="join this Ray cluster (default: a local Ray started here)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = parser.parse_args(argv)
    models = mixer_names() if args.models == "all" else args.models.split(",")
    unknown = [m for m in models if m not in mixer_names()]
    if unknown:
        parser.exit(
            2, f"atlas: --models {','.join(unknown)} unknown; allowed values: {', '.join(mixer_names())}\n"
        )
    tasks = args.tasks.split(",")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        parser.exit(2, f"atlas: --tasks {','.join(bad)} has no preset; allowed values: {', '.join(TASKS)}\n")
    try:
        sweep = None if args.sweep is None else tuple(int(lag) for lag in args.sweep.split(","))
    except ValueError:
        parser.exit(2, f"atlas: --sweep {args.sweep!r} must be comma-separated positive integers\n")
    if sweep is not None and (min(sweep) < 1 or list(sweep) != sorted(set(sweep))):
        parser.exit(2, f"atlas: --sweep {args.sweep!r} must be strictly increasing positive integers\n")
    if args.max_bisections is not None and args.max_bisections < 0:
        parser.exit(2, f"atlas: --max-bisections {args.max_bisections} must be >= 0\n")
    rates = None
    if args.learning_rate is not None:
        try:
            rates = tuple(float(rate) for rate in args.learning_rate.split(","))
        except ValueError:
            parser.exit(
                2, f"atlas: --learning-rate {args.learning_rate!r} must be numbers, comma-separated\n"
            )
        if min(rates) <= 0 or len(set(rates)) != len(rates):
            parser.exit(
                2, f"atlas: --learning-rate {args.learning_rate!r} must be distinct positive numbers\n"
            )
        rates = rates[0] if len(rates) == 1 else rates
    if args.match_params is not None and (args.match_params < 1 or args.hidden_size is not None):
        parser.exit(2, "atlas: --match-params must be a positive count, and not given with --hidden-size\n")
    if args.ray_address is not None and args.executor != "ray":
        parser.exit(2, "atlas: --ray-address needs --executor ray\n")
    out = Path(args.out)
    existing = next(folder for folder in (out.parent, *out.parent.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        parser.exit(2, f"atlas: --out {args.out!r}: cannot write under {str(existing)!r}\n")

    def write_outputs(atlas: dict[str, Any]) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out.with_suffix(".json"), atlas)
        write_table(atlas, out.with_suffix(".csv"))
        plot_atlas(atlas, out.with_suffix(".png"))

    try:
        executor = make_executor(args.executor, args.ray_address)
    except UsageError as err:
        parser.exit(2, f"atlas: {err}\n")
    try:
        atlas = _run(args, models, tasks, sweep, rates, write_outputs, executor)
    except ParameterMatchError as err:  # raised before any search trained or wrote
        parser.exit(2, f"atlas: {err}\n")
    finally:
        if executor is not None:
            executor.shutdown()
    write_outputs(atlas)
    for cell in atlas["cells"]:
        print(
            f"{cell['task']:<8} {cell['mixer']:<16} {cell['setting']:<5} params {cell.get('params')!s:>7}  max lag "
            f"{cell['max_learnable_lag']!s:>6}  (fails at {cell['smallest_unlearnable_lag']!s:>6})  "
            f"grad decay/step at init {cell.get('grad_slope_per_step_at_init')}"
            + (f"  ERROR {cell['error']}" if "error" in cell else "")
        )
    print(f"wrote {out.with_suffix('.json')}, .csv, .png")
    return 0


def _run(args, models, tasks, sweep, rates, write_outputs, executor) -> dict[str, Any]:
    return run_atlas(
        models,
        tasks,
        Path(args.workdir),
        smoke=args.smoke,
        log=lambda line: print(line, file=sys.stderr),
        steps=args.steps,
        num_seeds=args.num_seeds,
        hidden_size=args.hidden_size,
        sweep=sweep,
        max_bisections=args.max_bisections,
        learning_rate=rates,
        match_params=args.match_params,
        on_cell=write_outputs,
        executor=executor,
    )


if __name__ == "__main__":
    raise SystemExit(main())
