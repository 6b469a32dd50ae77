"""Synthetic and real sequence tasks; each registers itself by name in :mod:`lrd.registry`."""

from lrd.tasks.base import Batch, ClassificationTask, RegressionTask, Task

__all__ = ["Batch", "Task", "ClassificationTask", "RegressionTask"]
