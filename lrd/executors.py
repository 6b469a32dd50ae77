"""Where the independent trials of a search run: in this process, or as Ray tasks across a machine or a cluster.

An executor has ``width`` (how many trials it runs at once, which sets the k of the k-section search) and
``run(fn, calls)``, which returns ``[fn(*call) for call in calls]`` in order, computed however it likes. Each trial
is an ordinary resumable run in its own workdir (:func:`lrd.runner.run_experiment`), so where it runs changes
nothing in its result, and a killed search started again reads its finished trials back.

Ray is an optional extra (``pip install -e '.[ray]'``), imported only by :class:`RayExecutor`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from lrd.errors import UsageError

__all__ = ["InlineExecutor", "RayExecutor", "make_executor", "EXECUTORS"]

EXECUTORS = ("serial", "ray")


class InlineExecutor:
    """The parallel protocol run one trial at a time in this process (``width`` sets the k of k-section)."""

    def __init__(self, width: int = 1):
        self.width = width

    def run(self, fn: Callable, calls: Sequence[tuple]) -> list[Any]:
        return [fn(*call) for call in calls]

    def describe(self) -> dict[str, Any]:
        return {"name": "inline", "width": self.width}


def _call(fn: Callable, call: tuple) -> Any:
    # Ray runs this in a worker process; a trial there has no terminal, and JAX there sees the worker's devices
    # (Ray sets CUDA_VISIBLE_DEVICES to the one GPU it assigned).
    return fn(*call)


class RayExecutor:
    """Trials as Ray tasks: one GPU each where the cluster has GPUs, else one CPU each.

    ``address``: ``None`` starts a local Ray on demand (``num_cpus`` CPUs: default all), or joins the cluster
    that ``RAY_ADDRESS`` names; ``"auto"`` or ``"HOST:PORT"`` joins an existing cluster. ``width`` (default: the
    cluster's GPUs, else its CPUs) is how many trials a k-section round submits."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, width: int | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--executor ray needs Ray, an optional extra: pip install -e '.[ray]' (or pip install ray)"
            ) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = num_cpus
            ray.init(**{k: v for k, v in kwargs.items() if v is not None or k == "address"})
            self._started = True
        resources = ray.cluster_resources()
        self.num_gpus = int(resources.get("GPU", 0))
        self.num_cpus = int(resources.get("CPU", 1))
        self.width = width or self.num_gpus or self.num_cpus
        per_task = {"num_gpus": 1, "num_cpus": 0} if self.num_gpus else {"num_gpus": 0, "num_cpus": 1}
        self._remote = ray.remote(**per_task)(_call)

    def run(self, fn: Callable, calls: Sequence[tuple]) -> list[Any]:
        refs = [self._remote.remote(fn, call) for call in calls]
        return self._ray.get(refs)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "ray",
            "width": self.width,
            "cluster_gpus": self.num_gpus,
            "cluster_cpus": self.num_cpus,
        }

    def shutdown(self) -> None:
        """Stop the local Ray this executor started (a cluster it joined is left running)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(name: str, address: str | None = None) -> InlineExecutor | RayExecutor | None:
    """``"serial"`` -> ``None`` (the serial protocol); ``"ray"`` -> a :class:`RayExecutor`."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r} is unknown; allowed values: {', '.join(EXECUTORS)}")
    if name == "serial":
        if address is not None:
            raise UsageError("--ray-address needs --executor ray")
        return None
    return RayExecutor(address)
