"""Run logs as data: ``metrics.jsonl`` (canonical), TensorBoard event files (tensorboardX, no TensorFlow needed).

``metrics.jsonl`` holds one JSON object per (evaluation step, member: a seed at a learning rate)::

    {"step": 500, "seed": 0, "learning_rate": 0.001, "train_loss": ..., "train_grad_norm": ..., "train_<metric>": ...,
     "eval_loss": ..., "eval_<metric>": ..., "solved": false, "num_skipped": 0, "steps_per_s": 812.4,
     "wall_time_s": 12.3}

``train_*`` values are means over the steps since the previous evaluation; ``eval_*`` values are on the fixed
held-out batch. ``pandas.read_json(path, lines=True)`` reads the file directly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "read_metrics", "truncate_metrics", "write_json", "environment"]


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings a reader can turn back into floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def environment() -> dict[str, Any]:
    """Where a result was made: device, number of devices, library versions, Python, machine."""
    import platform
    from importlib.metadata import version

    import flax
    import jax
    import optax

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` (a torn last line, from a killed run, is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | Path, last_step: int) -> list[dict[str, Any]]:
    """Drop records after ``last_step`` (a resumed run logs them again); return the records kept."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    path = Path(path)
    if path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    return kept


class MetricsLogger:
    """A :func:`lrd.train.train` callback appending per-seed records to ``metrics.jsonl`` (and TensorBoard)."""

    def __init__(
        self, workdir: str | Path, *, tensorboard: bool = True, history: Sequence[dict[str, Any]] = ()
    ):
        """``history``: the ``metrics.jsonl`` records a resumed run keeps. TensorBoard event files cannot be
        truncated, so on a resume they are written anew from those records, and no step appears twice."""
        self.path = Path(workdir) / "metrics.jsonl"
        self._t0 = time.perf_counter()
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            directory = Path(workdir) / "tensorboard"
            if directory.exists():
                shutil.rmtree(directory)
            self._writer = SummaryWriter(logdir=str(directory))
            self._write_events(history)

    def records(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The per-member rows of one evaluation record of :func:`lrd.train.train` (a row names its learning
        rate only when the run has a grid of them)."""
        num_members = len(record["solved"])
        seeds = record.get("seed", list(range(num_members)))
        rates = record.get("learning_rate", [None] * num_members)
        rows = []
        for member in range(num_members):  # seed x learning rate, rate-major
            row: dict[str, Any] = {"step": int(record["step"]), "seed": int(seeds[member])}
            if rates[member] is not None:
                row["learning_rate"] = float(rates[member])
            for key, values in record["train_mean"].items():
                if key != "finite":
                    row[f"train_{key}"] = _clean(float(values[member]))
            for key, values in record["eval"].items():
                row[f"eval_{key}"] = _clean(float(values[member]))
            row["solved"] = bool(record["solved"][member])
            row["num_skipped"] = int(record["num_skipped"][member])
            row["steps_per_s"] = float(record["steps_per_s"])
            row["wall_time_s"] = time.perf_counter() - self._t0
            rows.append(row)
        return rows

    def __call__(self, state: Any, record: dict[str, Any]) -> None:
        rows = self.records(record)
        with self.path.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        self._write_events(rows)

    def _write_events(self, rows: Sequence[dict[str, Any]]) -> None:
        if self._writer is None or not rows:
            return
        timed = set()
        for row in rows:
            member = f"seed{row['seed']}" + (f"_lr{row['learning_rate']:g}" if "learning_rate" in row else "")
            for key, value in row.items():
                if key.startswith(("train_", "eval_")) and isinstance(value, float):
                    split, _, name = key.partition("_")
                    self._writer.add_scalar(f"{split}/{name}/{member}", value, row["step"])
            if row["step"] not in timed:
                timed.add(row["step"])
                self._writer.add_scalar("steps_per_s", row["steps_per_s"], row["step"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
