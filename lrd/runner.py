"""One experiment in a workdir: validated config, resumable training, checkpoints, metrics and a summary.

``run_experiment(config)`` writes into ``config.run.workdir``::

    config.json       the resolved config (a restart must match it, or be told to overwrite)
    checkpoints/      orbax checkpoints of the seed-stacked train state (run.checkpoint_every cadence + end)
    metrics.jsonl     one record per (evaluation, seed), see lrd.metrics_log
    tensorboard/      event files (tensorboardX)
    summary.json      status (completed | numerical_fault | preempted), per-seed solved / steps_to_solve / final
                      held-out metrics, device, wall time
    .lock             while a process trains in it: its pid and host (a second process is refused)
    stacks.txt        only if no evaluation completed for run.watchdog_s: every thread's stack (a hang's evidence)

A run killed at any point and restarted with the same command resumes from its newest readable checkpoint; the
data stream of every step is a pure function of ``(seed key, step)``, so it finishes with the same parameters and
metrics as an uninterrupted run (bit for bit on CPU). A completed run is not trained again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from lrd.checkpoint import Checkpointer
from lrd.config import ConfigError, ExperimentConfig, config_diff
from lrd.distributed import is_primary, mesh_shape, sync, to_host
from lrd.errors import NumericalFault, Preempted, WorkdirError
from lrd.metrics_log import MetricsLogger, environment, read_metrics, truncate_metrics, write_json
from lrd.preflight import check_memory
from lrd.tasks.base import Task
from lrd.train import (
    TrainSettings,
    TrainState,
    init_members,
    per_rate,
    train,
    train_settings,
    unit_optimizer,
)
from lrd.workdir import StopSignals, Watchdog, WorkdirLock, require_unlocked

__all__ = [
    "NumericalFault",
    "WorkdirError",
    "Experiment",
    "build_experiment",
    "train_in_memory",
    "run_experiment",
    "prepare_workdir",
    "steps_to_solve_from_metrics",
    "finished_summary",
]

RUN_FILES = ("config.json", "checkpoints", "metrics.jsonl", "tensorboard", "summary.json")
# Sections of config.json that define a run; a run's workdir is refused to a config that differs in them.
# (``bench`` and ``diagnostics`` only steer ``lrd bench`` and ``lrd grad-flow``, so a change of their defaults
# must not lock old workdirs.)
RUN_SECTIONS = ("model", "task", "optim", "run", "search")


class Experiment(NamedTuple):
    """What a config builds: the task, the model and the training settings."""

    task: Task
    model: nn.Module
    settings: TrainSettings


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Task, model and settings of ``config``, checked before any compute: a task with data to load (MNIST) checks
    it is there, and training must fit in the device's memory (:func:`lrd.preflight.check_memory`)."""
    task = config.task.build()
    prepare = getattr(task, "prepare", None)
    if callable(prepare):
        prepare()  # e.g. MNIST: fail now, with instructions, if the data is missing
    model = config.model.build(task)
    check_memory(config, task, model)
    check_mesh(config)
    return Experiment(task, model, train_settings(config))


def check_mesh(config: ExperimentConfig) -> None:
    """``run.mesh`` must fit the visible devices (the rest of it is checked by the config)."""
    settings = train_settings(config)
    try:
        mesh_shape(settings.mesh, settings.num_members, settings.batch_size, jax.device_count())
    except ValueError as err:
        raise ConfigError(str(err)) from None


def describe(config: ExperimentConfig, task: Task) -> str:
    """The progress-bar label of a run: model, task and sequence length."""
    return f"{config.model.name} {config.task.name} lag={task.seq_len}"


def train_in_memory(config: ExperimentConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` without a workdir (``lrd train``'s quick look); return the summary."""
    task, model, settings = build_experiment(config)
    _, summary = train(model, task, settings, progress=progress, description=describe(config, task))
    summary["model"] = config.model.name
    return summary


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict in canonical form (older files gain new defaults) restricted to :data:`RUN_SECTIONS`, without
    ``run.workdir`` and ``run.mesh``: where a run lives and how it is laid out over devices are not what it is (a
    run checkpointed on 8 devices resumes on 1)."""
    try:
        config = ExperimentConfig.from_dict(config).to_dict()
    except ConfigError:
        pass  # an old config the current rules reject: compare it as written
    comparable = {name: config.get(name) for name in RUN_SECTIONS}
    if isinstance(comparable.get("run"), dict):
        comparable["run"] = {k: v for k, v in comparable["run"].items() if k not in ("workdir", "mesh")}
    return comparable


def finished_summary(config: ExperimentConfig) -> dict[str, Any] | None:
    """The summary of ``config``'s run if its workdir holds that same run (by content, as :func:`prepare_workdir`
    decides) and it finished; else ``None``. Reads only: nothing is created, locked or written."""
    workdir = Path(config.run.workdir)
    try:
        written = json.loads((workdir / "config.json").read_text())
        summary = json.loads((workdir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = not config_diff(_comparable(written), _comparable(config.to_dict()))
    return summary if same and summary.get("status") == "completed" else None


def prepare_workdir(config: ExperimentConfig, *, overwrite: bool = False) -> tuple[Path, dict | None]:
    """Create the workdir or check it holds this same run; return it and an existing summary, if any.

    A run is identified by its config's content, not by the spelling of its path: ``runs/a``, ``runs/a/`` and the
    absolute path are the same run, and a moved or copied workdir resumes. A workdir whose ``config.json`` differs
    raises :class:`WorkdirError` listing the differences, unless ``overwrite``, which deletes the previous run's
    files (and only those). Nothing is written when the workdir already holds this run, so a finished run in a
    read-only workdir is read back; a workdir that must be written and cannot be is a :class:`WorkdirError`.
    """
    if config.run.workdir is None:
        raise ConfigError("run.workdir is required (e.g. --run.workdir runs/adding_lstm)")
    workdir = Path(config.run.workdir)
    new = config.to_dict()
    config_path = workdir / "config.json"
    summary_path = workdir / "summary.json"
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"run.workdir={str(workdir)!r} exists and is not a directory")
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else None
    same = False
    if config_path.exists():
        diff = config_diff(_comparable(json.loads(config_path.read_text())), _comparable(new))
        same = not diff
        if diff and not overwrite:
            finished = previous is not None and previous.get("status") == "completed"
            raise WorkdirError(
                f"run.workdir={str(workdir)!r} holds {'a finished' if finished else 'another'} run with a "
                f"different config ({'; '.join(diff)}); choose another run.workdir, or pass --overwrite to "
                "delete that run's checkpoints, metrics and summary and start this one there"
            )
    elif workdir.exists() and any(workdir.iterdir()) and not overwrite:
        raise WorkdirError(
            f"run.workdir={str(workdir)!r} is not empty and holds no config.json (not an lrd run); "
            "choose another run.workdir"
        )
    if same and not overwrite:
        if not (previous is not None and previous.get("status") == "completed"):
            _require_writable(workdir)
        return workdir, previous
    if overwrite:
        require_unlocked(workdir)  # never delete the files of a run another process is training
    try:
        if overwrite:
            for name in RUN_FILES:
                target = workdir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        workdir.mkdir(parents=True, exist_ok=True)
        _require_writable(workdir)
        write_json(config_path, new)
    except OSError as err:
        raise WorkdirError(f"run.workdir={str(workdir)!r} cannot be written: {err.strerror or err}") from None
    return workdir, None


def _require_writable(workdir: Path) -> None:
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(f"run.workdir={str(workdir)!r} is not writable; choose another run.workdir")


def _member_of(record: dict[str, Any], num_seeds: int, learning_rates: Sequence[Any]) -> int | None:
    """The members-axis position of a ``metrics.jsonl`` record (a record without a rate is at the first rate)."""
    rate = record.get("learning_rate", learning_rates[0])
    if rate not in learning_rates or record["seed"] >= num_seeds:
        return None
    return list(learning_rates).index(rate) * num_seeds + record["seed"]


def steps_to_solve_from_metrics(
    records: Sequence[dict[str, Any]], num_seeds: int, learning_rates: Sequence[Any] = (None,)
) -> list[int | None]:
    """The first evaluation step at which each member (seed x rate, rate-major) met the task's criterion
    (``None`` if never)."""
    first: list[int | None] = [None] * (num_seeds * len(learning_rates))
    for record in sorted(records, key=lambda r: r["step"]):
        member = _member_of(record, num_seeds, learning_rates)
        if record.get("solved") and member is not None and first[member] is None:
            first[member] = int(record["step"])
    return first


class _NoLogger:
    """The metrics logger of a process other than 0 (which writes nothing)."""

    def __call__(self, state: TrainState, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _FaultGuard:
    """Raise :class:`NumericalFault` when a seed skipped too many steps in one evaluation interval."""

    def __init__(self, max_fraction: float, start_step: int, start_skipped: np.ndarray):
        self.max_fraction = max_fraction
        self.step = start_step
        self.skipped = np.asarray(start_skipped)

    def __call__(self, state: TrainState, record: dict[str, Any]) -> None:
        steps = record["step"] - self.step
        skipped = np.asarray(record["num_skipped"]) - self.skipped
        bad = np.flatnonzero(skipped > self.max_fraction * steps)
        if bad.size:
            raise NumericalFault(
                f"seed(s) {bad.tolist()} skipped {skipped[bad].tolist()} of the {steps} steps between step "
                f"{self.step} and step {record['step']} because the loss or a gradient was NaN/Inf "
                f"(limit run.max_skip_fraction={self.max_fraction}); stopping. The last checkpoint holds finite "
                "parameters; try a smaller optim.learning_rate or optim.clip_norm"
            )
        self.step = record["step"]
        self.skipped = np.asarray(record["num_skipped"])


def run_experiment(
    config: ExperimentConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callable[[TrainState, dict[str, Any]], None]] = (),
    description: str = "",
) -> dict[str, Any]:
    """Train (or resume, or return the finished) run of ``config``; return its summary (also in summary.json)."""
    task, model, settings = build_experiment(config)
    if is_primary():  # with several processes (jax.distributed), process 0 owns the workdir's files
        workdir, previous = prepare_workdir(config, overwrite=overwrite)
    sync("lrd.prepare_workdir")
    if not is_primary():
        workdir = Path(config.run.workdir)
        summary_path = workdir / "summary.json"
        previous = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if previous is not None and previous.get("status") == "completed":
        return previous
    lock = WorkdirLock(workdir) if is_primary() else contextlib.nullcontext()
    with lock, StopSignals() as stop, Watchdog(workdir, config.run.watchdog_s) as watchdog:
        return _train_in_workdir(
            config,
            workdir,
            task,
            model,
            settings,
            stop,
            (watchdog.progress, *callbacks),
            progress=progress,
            description=description,
        )


def _train_in_workdir(
    config: ExperimentConfig,
    workdir: Path,
    task: Task,
    model: nn.Module,
    settings: TrainSettings,
    stop: StopSignals,
    callbacks: Sequence[Callable[[TrainState, dict[str, Any]], None]],
    *,
    progress: bool,
    description: str,
) -> dict[str, Any]:
    """The body of :func:`run_experiment` once the workdir is prepared and locked."""
    with Checkpointer(workdir / "checkpoints", keep=config.run.keep_checkpoints) as checkpointer:
        return _train_with(
            config, workdir, task, model, settings, stop, callbacks, checkpointer, progress, description
        )


def _train_with(
    config: ExperimentConfig,
    workdir: Path,
    task: Task,
    model: nn.Module,
    settings: TrainSettings,
    stop: StopSignals,
    callbacks: Sequence[Callable[[TrainState, dict[str, Any]], None]],
    checkpointer: Checkpointer,
    progress: bool,
    description: str,
) -> dict[str, Any]:
    """Restore or initialise, train with the callbacks, write the summary (the checkpointer is closed by the
    caller whatever happens)."""
    optimizer = unit_optimizer(settings)
    like = jax.eval_shape(lambda: init_members(model, task, optimizer, settings))
    restored = checkpointer.restore_latest(like)
    # The scan modes "auto" resolves to: saved with every checkpoint, so a resume under other modes (another
    # backend, or a default changed since) is said: the same function, equal to float rounding, not bit for bit.
    scan_modes = config.model.resolved_scan_modes()
    meta = {"scan_modes": scan_modes}  # what every checkpoint of this process records
    if restored is None:
        state, resumed_from = init_members(model, task, optimizer, settings), None
    else:
        state, saved = restored
        resumed_from = int(saved["step"])
        if saved.get("scan_modes", scan_modes) != scan_modes:
            warnings.warn(
                f"{workdir}: resuming from step {resumed_from} with scan modes {scan_modes}; the run so far used "
                f"{saved['scan_modes']}: the same function to float rounding, but not a bit-for-bit resume",
                stacklevel=2,
            )
    start_step = int(to_host(state.step).reshape(-1)[0])
    history = truncate_metrics(workdir / "metrics.jsonl", start_step) if is_primary() else []

    last_evaluation = [start_step]

    def save_on_cadence(state: TrainState, record: dict[str, Any]) -> None:
        # After the first evaluation at or past each multiple of run.checkpoint_every. It depends on the step
        # numbers only (evaluations fall at multiples of eval_every and at the end), so resumes save the same.
        every = config.run.checkpoint_every
        if record["step"] // every > last_evaluation[0] // every:
            checkpointer.save(record["step"], state, meta)
        last_evaluation[0] = record["step"]

    def stop_if_requested(state: TrainState, record: dict[str, Any]) -> None:
        if stop.requested:
            if record["step"] not in checkpointer.steps():
                checkpointer.save(record["step"], state, meta)
            raise Preempted(stop.requested, record["step"])

    logger = (
        MetricsLogger(workdir, tensorboard=config.run.tensorboard, history=history)
        if is_primary()
        else _NoLogger()
    )
    guard = _FaultGuard(config.run.max_skip_fraction, start_step, to_host(state.num_skipped))
    status, error, preempted = "completed", None, None
    t0 = time.perf_counter()
    try:
        state, summary = train(
            model,
            task,
            settings,
            state=state,
            callbacks=(logger, guard, save_on_cadence, stop_if_requested, *callbacks),
            progress=progress,
            description=description or describe(config, task),
        )
        final_step = int(to_host(state.step).reshape(-1)[0])
        if final_step not in checkpointer.steps():
            checkpointer.save(final_step, state, meta)
    except NumericalFault as err:
        status, error = "numerical_fault", str(err)
        summary = {"steps_run": guard.step, "num_skipped": guard.skipped.tolist()}
    except Preempted as err:
        status, error, preempted = "preempted", str(err), err
        summary = {"steps_run": err.step, "num_skipped": guard.skipped.tolist()}
    finally:
        logger.close()

    sync("lrd.metrics_written")  # every process reads the metrics process 0 wrote
    records = read_metrics(workdir / "metrics.jsonl")
    rates = list(settings.learning_rates) if len(settings.learning_rates) > 1 else [None]
    last = [r for r in records if r["step"] == max((r["step"] for r in records), default=-1)]
    last.sort(key=lambda r: _member_of(r, settings.num_seeds, rates) or 0)
    steps_to_solve = steps_to_solve_from_metrics(records, settings.num_seeds, rates)
    summary.update(
        status=status,
        error=error,
        model=config.model.name,
        task_name=config.task.name,
        seq_len=task.seq_len,
        chance_loss=float(task.chance_loss),
        num_seeds=settings.num_seeds,
        learning_rates=list(settings.learning_rates),
        steps_to_solve=steps_to_solve,
        per_rate=[
            {"learning_rate": group["learning_rate"], "steps_to_solve": group["values"]}
            for group in per_rate(settings, steps_to_solve)
        ],
        final_eval={
            k[len("eval_") :]: [r[k] for r in last]
            for k in (last[0] if last else {})
            if k.startswith("eval_")
        },
        solved=[bool(r["solved"]) for r in last],
        resumed_from=resumed_from,
        wall_time_s=time.perf_counter() - t0,
        device=jax.devices()[0].device_kind,
        environment=environment(),
        scan_modes=config.model.resolved_scan_modes(),
        workdir=str(workdir),
    )
    if is_primary():
        write_json(workdir / "summary.json", summary)
    if status == "numerical_fault":
        raise NumericalFault(error)
    if preempted is not None:
        raise preempted
    return summary
