"""The maximum learnable time lag of a model on a task, searched automatically.

Protocol (the ``search`` section of :class:`lrd.config.ExperimentConfig`):

1. **Sweep.** Train at each lag of ``search.sweep`` in increasing order, every lag with the same budget
   (``run.steps`` steps, ``run.num_seeds`` seeds vmapped in one program, early stop once every seed is solved).
   A lag is *learnable* when at least ``search.solve_fraction`` of the seeds meet the task's ``solved`` criterion
   on the fixed held-out batch. The sweep stops after ``search.patience`` consecutive unlearnable lags.
2. **Bisection.** Between the largest learnable lag ``lo`` and the smallest unlearnable lag above it ``hi``,
   try the geometric midpoint, move ``lo`` or ``hi``, and stop when ``hi - lo <= max(1, resolution * lo)`` or
   after ``search.max_bisections`` trials.

With a learning-rate grid (``optim.learning_rate`` a list), a lag counts at its best rate; every rate's outcome
is kept in the trial's ``per_rate``.

**In parallel** (``executor=``, e.g. ``lrd lag-search --executor ray``): the whole sweep at once, then rounds of
k-section, ``k`` = the executor's width, at geometrically even lags inside ``(lo, hi)``, until the same resolution
or ``search.max_bisections`` trials after the sweep. With ``k = 1`` a round is the bisection step.

The result, ``max_learnable_lag = lo``, assumes that learnability falls with the lag (the sweep records every
lag it tried, so a non-monotone outcome is visible in ``lag_search.json``). It is a statement about this budget:
more steps or seeds can move it.

Every trial is an ordinary run (:func:`lrd.runner.run_experiment`) in ``workdir/lag_<L>``, so a restarted search
skips finished lags and resumes a half-finished one from its checkpoint. ``workdir/lag_search.json`` is
rewritten after every trial and ``workdir/lag_search.png`` plots the fraction of seeds solved against the lag.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax

from lrd.config import ConfigError, ExperimentConfig
from lrd.distributed import is_primary, sync
from lrd.errors import NumericalFault
from lrd.metrics_log import environment, write_json
from lrd.preflight import check_memory
from lrd.runner import check_mesh, prepare_workdir, run_experiment
from lrd.workdir import WorkdirLock

__all__ = [
    "lag_search",
    "trial_config",
    "next_bisection_lag",
    "plot_lag_search",
    "format_result",
    "summarise",
    "ksection_lags",
]


def trial_config(config: ExperimentConfig, lag: int, root: Path) -> ExperimentConfig:
    """The config of one trial: ``config`` at ``task.lag = lag``, in its own workdir under ``root``."""
    return config.replace(task={"lag": lag}, run={"workdir": str(root / f"lag_{lag:06d}")})


def next_bisection_lag(lo: int, hi: int, resolution: float) -> int | None:
    """The geometric midpoint of ``(lo, hi)`` as an int strictly inside, or ``None`` when they are close enough."""
    if hi - lo <= max(1, resolution * lo):
        return None
    mid = int(round(math.sqrt(lo * hi)))
    return min(max(mid, lo + 1), hi - 1)


def _trial_record(lag: int, phase: str, summary: dict[str, Any], solve_fraction: float) -> dict[str, Any]:
    """One lag's outcome. With a learning-rate grid, the lag counts at its best rate (the MAD protocol): the
    fraction solved, the learnability and ``seeds`` are the best rate's, and ``per_rate`` keeps every rate's."""
    steps = summary["steps_to_solve"]  # per member, rate-major; a member solved if it met the criterion once
    rates = summary.get("learning_rates") or [None]
    num_seeds = len(steps) // len(rates)
    final = summary.get("final_eval", {})

    def seeds_at(j: int) -> list[dict[str, Any]]:
        return [
            {
                "seed": i,
                "solved": steps[j * num_seeds + i] is not None,
                "steps_to_solve": steps[j * num_seeds + i],
                **{f"final_{k}": v[j * num_seeds + i] for k, v in final.items() if len(v) == len(steps)},
            }
            for i in range(num_seeds)
        ]

    groups = [seeds_at(j) for j in range(len(rates))]
    fractions = [sum(s["solved"] for s in group) / num_seeds for group in groups]
    best = max(range(len(rates)), key=lambda j: (fractions[j], -_mean_steps(groups[j])))
    record = {
        "lag": lag,
        "phase": phase,
        "status": summary["status"],
        "fraction_solved": fractions[best],
        "learnable": fractions[best] >= solve_fraction - 1e-12,
        "seeds": groups[best],
        "steps_run": summary.get("steps_run"),
        "chance_loss": summary.get("chance_loss"),
        "wall_time_s": summary.get("wall_time_s"),
        "workdir": summary.get("workdir"),
    }
    if len(rates) > 1:
        record["best_learning_rate"] = rates[best]
        record["per_rate"] = [
            {"learning_rate": rate, "fraction_solved": fractions[j], "seeds": groups[j]}
            for j, rate in enumerate(rates)
        ]
    return record


def _mean_steps(seeds: list[dict[str, Any]]) -> float:
    """Mean steps to solve of the solved seeds (for ties between rates: the faster wins); inf if none."""
    steps = [s["steps_to_solve"] for s in seeds if s["steps_to_solve"] is not None]
    return sum(steps) / len(steps) if steps else float("inf")


def _run_trial(config: ExperimentConfig, lag: int, root: Path, phase: str, progress: bool) -> dict[str, Any]:
    trial = trial_config(config, lag, root)
    try:
        summary = run_experiment(trial, progress=progress, description=f"{config.model.name} lag={lag}")
    except NumericalFault:  # the run wrote its summary with status "numerical_fault": an unlearnable lag
        summary = json.loads((Path(trial.run.workdir) / "summary.json").read_text())
    return _trial_record(lag, phase, summary, config.search.solve_fraction)


def _result(
    config: ExperimentConfig, trials: list[dict[str, Any]], started: float, done: bool
) -> dict[str, Any]:
    learnable = [t["lag"] for t in trials if t["learnable"]]
    lo = max(learnable, default=None)
    above = [t["lag"] for t in trials if not t["learnable"] and (lo is None or t["lag"] > lo)]
    hi = min(above, default=None)
    return {
        "model": config.model.name,
        "task": config.task.name,
        "finished": done,
        "max_learnable_lag": lo,
        "smallest_unlearnable_lag": hi,
        "solve_fraction": config.search.solve_fraction,
        "num_seeds": config.run.num_seeds,
        "steps_per_lag": config.run.steps,
        "trials": sorted(trials, key=lambda t: t["lag"]),
        "order": [t["lag"] for t in trials],
        "device": jax.devices()[0].device_kind,
        "environment": environment(),
        "wall_time_s": time.perf_counter() - started,
        # what the trials cost when they ran (each run's own time; a resumed run's last segment), unlike
        # wall_time_s, which is this call's time and near 0 when the trials are read back
        "trials_wall_time_s": sum(t["wall_time_s"] or 0.0 for t in trials),
        "config": config.to_dict(),
    }


def lag_search(
    config: ExperimentConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
    executor: Any = None,
) -> dict[str, Any]:
    """Run the protocol of the module docstring in ``config.run.workdir``; return (and write) the result.

    ``executor``: ``None`` runs the trials one after another in this process; an executor with ``width`` and
    ``run(fn, calls)`` (e.g. :class:`lrd.executors.RayExecutor`) runs the parallel protocol (the whole sweep at
    once, then k-section with ``width`` midpoints per round) with each trial an ordinary run in its own workdir.
    Every lag of the sweep is validated before anything is written (bisection lags lie between two of them).
    """
    for lag in config.search.sweep:
        try:
            trial = trial_config(config, lag, Path(config.run.workdir or "."))
            if lag == max(config.search.sweep):  # the most memory any trial of the sweep needs
                task = trial.task.build()
                check_memory(trial, task, trial.model.build(task))
                check_mesh(trial)
        except ConfigError as err:
            raise ConfigError(f"search.sweep lag {lag}: {err}") from None
    if is_primary():  # with several processes (jax.distributed), process 0 owns the search's files
        root, _ = prepare_workdir(config, overwrite=overwrite)
    sync("lrd.lag_search.prepare")
    root = Path(config.run.workdir)
    with WorkdirLock(root) if is_primary() else contextlib.nullcontext():
        if executor is None:
            return _search(config, root, overwrite=overwrite, progress=progress, log=log)
        return _search_parallel(config, root, executor, overwrite=overwrite, log=log)


def _remove_trials(root: Path) -> None:
    """Delete a previous search's trial workdirs (``--overwrite``; process 0 only)."""
    if is_primary():
        for trial_dir in root.glob("lag_*"):
            if trial_dir.is_dir():
                shutil.rmtree(trial_dir)


def _search(config: ExperimentConfig, root: Path, *, overwrite: bool, progress: bool, log) -> dict[str, Any]:
    """The body of :func:`lag_search` once its root workdir is prepared and locked."""
    if overwrite:
        _remove_trials(root)
    search = config.search
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []

    def record(lag: int, phase: str) -> dict[str, Any]:
        trial = _run_trial(config, lag, root, phase, progress)
        trials.append(trial)
        seeds = " ".join(
            f"{s['steps_to_solve']}" if s["solved"] else ("-" if s["steps_to_solve"] is None else "x")
            for s in trial["seeds"]
        )
        log(
            f"[lag-search] {config.model.name} {phase:<6} lag={lag:<6} solved {trial['fraction_solved']:.2f} "
            f"-> {'learnable' if trial['learnable'] else 'NOT learnable'} (steps to solve per seed: {seeds})"
        )
        if is_primary():
            write_json(root / "lag_search.json", _result(config, trials, started, done=False))
        return trial

    failures = 0
    for lag in search.sweep:
        if record(lag, "sweep")["learnable"]:
            failures = 0
        else:
            failures += 1
            if failures >= search.patience:
                break
    result = _result(config, trials, started, done=False)
    lo, hi = result["max_learnable_lag"], result["smallest_unlearnable_lag"]
    for _ in range(search.max_bisections):
        if lo is None or hi is None:
            break
        mid = next_bisection_lag(lo, hi, search.resolution)
        if mid is None:
            break
        if record(mid, "bisect")["learnable"]:
            lo = mid
        else:
            hi = mid
    result = _result(config, trials, started, done=True)
    if is_primary():
        write_json(root / "lag_search.json", result)
        plot_lag_search(result, root / "lag_search.png")
    return result


def ksection_lags(lo: int, hi: int, k: int, resolution: float) -> list[int]:
    """Up to ``k`` lags strictly inside ``(lo, hi)`` at geometrically even spacing (``k = 1``: the bisection
    midpoint), or ``[]`` when ``lo`` and ``hi`` are close enough."""
    if next_bisection_lag(lo, hi, resolution) is None:
        return []
    points = (int(round(lo * (hi / lo) ** (i / (k + 1)))) for i in range(1, k + 1))
    return sorted({min(max(p, lo + 1), hi - 1) for p in points})


def _bounds(trials: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    learnable = [t["lag"] for t in trials if t["learnable"]]
    lo = max(learnable, default=None)
    above = [t["lag"] for t in trials if not t["learnable"] and (lo is None or t["lag"] > lo)]
    return lo, min(above, default=None)


def _search_parallel(
    config: ExperimentConfig, root: Path, executor: Any, *, overwrite: bool, log
) -> dict[str, Any]:
    """The parallel protocol: every sweep lag at once, then rounds of k-section (``executor.width`` lags per
    round) between the largest learnable and the smallest unlearnable lag, until the resolution is reached or
    ``search.max_bisections`` trials were spent after the sweep. The same trials give the same result as the
    serial search: each trial is the same resumable run, read back when it is finished."""
    if overwrite:
        _remove_trials(root)
    search = config.search
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []

    def round_of(lags: list[int], phase: str) -> None:
        calls = [(config, lag, root, phase, False) for lag in lags]
        for trial in executor.run(_run_trial, calls):
            trials.append(trial)
            log(
                f"[lag-search] {config.model.name} {phase:<6} lag={trial['lag']:<6} solved "
                f"{trial['fraction_solved']:.2f} -> {'learnable' if trial['learnable'] else 'NOT learnable'}"
            )
        if is_primary():
            write_json(root / "lag_search.json", _result(config, trials, started, done=False))

    round_of(list(search.sweep), "sweep")
    budget = search.max_bisections
    while budget > 0:
        lo, hi = _bounds(trials)
        if lo is None or hi is None:
            break
        lags = ksection_lags(lo, hi, min(executor.width, budget), search.resolution)
        if not lags:
            break
        round_of(lags, "ksect")
        budget -= len(lags)
    result = _result(config, trials, started, done=True)
    result["executor"] = executor.describe()
    if is_primary():
        write_json(root / "lag_search.json", result)
        plot_lag_search(result, root / "lag_search.png")
    return result


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The short form of a :func:`lag_search` result that tables and drivers keep: the two boundary lags, every
    lag tried with its fraction solved, the wall time and the device."""
    return {
        "max_learnable_lag": result["max_learnable_lag"],
        "smallest_unlearnable_lag": result["smallest_unlearnable_lag"],
        "trials": [
            {
                "lag": t["lag"],
                "fraction_solved": t["fraction_solved"],
                "learnable": t["learnable"],
                **(
                    {
                        "best_learning_rate": t["best_learning_rate"],
                        "fraction_solved_per_rate": {
                            str(r["learning_rate"]): r["fraction_solved"] for r in t["per_rate"]
                        },
                    }
                    if "per_rate" in t
                    else {}
                ),
            }
            for t in result["trials"]
        ],
        "wall_time_s": result["wall_time_s"],
        "device": result["device"],
    }


def plot_lag_search(result: dict[str, Any], path: str | Path) -> None:
    """Fraction of seeds solved (top) and steps to solve (bottom) against the lag, log-scaled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = result["trials"]
    lags = [t["lag"] for t in trials]
    fig, (ax_frac, ax_steps) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True)
    ax_frac.plot(lags, [t["fraction_solved"] for t in trials], "o-", color="C0")
    ax_frac.axhline(result["solve_fraction"], color="gray", ls="--", lw=1, label="learnable threshold")
    if result["max_learnable_lag"] is not None:
        ax_frac.axvline(
            result["max_learnable_lag"], color="C2", lw=1, label=f"max lag {result['max_learnable_lag']}"
        )
    ax_frac.set_ylabel("fraction of seeds solved")
    ax_frac.set_ylim(-0.05, 1.05)
    ax_frac.legend(loc="lower left", fontsize=8)
    ax_frac.set_title(
        f"{result['model']} on {result['task']}: {result['steps_per_lag']} steps x {result['num_seeds']} seeds"
    )
    for t in trials:
        steps = [s["steps_to_solve"] for s in t["seeds"] if s["steps_to_solve"] is not None]
        ax_steps.plot([t["lag"]] * len(steps), steps, "o", color="C1", alpha=0.7)
    ax_steps.set_xscale("log")
    ax_steps.set_xlabel("lag (time steps)")
    ax_steps.set_ylabel("steps to solve (per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_result(result: dict[str, Any]) -> str:
    """The search as a table: every lag tried, whether it was learnable, and the steps to solve per seed."""
    lines = [f"{'lag':>6}  {'phase':<6}  {'solved':>6}  learnable  steps to solve"]
    for t in result["trials"]:
        steps = ", ".join(str(s["steps_to_solve"]) for s in t["seeds"])
        lines.append(
            f"{t['lag']:>6}  {t['phase']:<6}  {t['fraction_solved']:>6.2f}  {'yes' if t['learnable'] else 'no':<9}  {steps}"
        )
    lines.append(
        f"max learnable lag of {result['model']} on {result['task']}: {result['max_learnable_lag']} "
        f"(smallest unlearnable: {result['smallest_unlearnable_lag']}; {result['wall_time_s']:.0f} s on "
        f"{result['device']})"
    )
    return "\n".join(lines)
