"""Checkpoints of the (seed-stacked) train state through orbax's ``CheckpointManager``.

* ``save`` writes ``{"state": TrainState as a dict of arrays, "meta": JSON}`` at a step, synchronously, then keeps
  the newest ``keep`` steps. Orbax writes into a temporary directory and renames it when complete, so a run killed
  mid-save leaves no half checkpoint that looks finished.
* A state with any non-finite leaf is never written (``save`` warns and returns ``False``).
* The state is saved as whole host arrays (gathered from every device and process), so a checkpoint written
  on N devices restores on M; the run lays it out over its mesh again.
* ``meta`` carries a SHA-256 digest of every array; ``restore_latest`` checks it and, when the newest checkpoint is
  unreadable or its digest does not match, warns and falls back to the one before.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrd.distributed import to_host
from lrd.train import TrainState

__all__ = ["Checkpointer", "state_digest", "all_finite"]


def _leaves(tree: Any) -> list[np.ndarray]:
    return jax.tree_util.tree_leaves(to_host(tree))


def state_digest(tree: Any) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    digest = hashlib.sha256()
    for leaf in _leaves(tree):
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def all_finite(tree: Any) -> bool:
    """True when no floating-point leaf holds a NaN or an infinity."""
    return all(
        bool(np.all(np.isfinite(leaf))) for leaf in _leaves(tree) if np.issubdtype(leaf.dtype, np.inexact)
    )


class Checkpointer:
    """Save / restore :class:`lrd.train.TrainState` (any leading seed axis) under ``directory``."""

    def __init__(self, directory: str | Path, *, keep: int = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, meta: dict[str, Any] | None = None) -> bool:
        """Write ``state`` at ``step`` unless it holds a non-finite value (then warn and return ``False``)."""
        if not all_finite(state):
            warnings.warn(
                f"not writing the checkpoint at step {step}: the state holds NaN or Inf", stacklevel=2
            )
            return False
        host_state = to_host(state._asdict())  # whole arrays: a checkpoint restores on any mesh
        meta = dict(meta or {}, step=int(step), digest=state_digest(host_state))
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(host_state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()
        return True

    def restore(self, step: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """The state saved at ``step``, with the structure, shapes and dtypes of ``like``; raises if corrupt."""
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
            like._asdict(),
        )
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
        )
        meta = dict(restored["meta"])
        state_dict = jax.tree_util.tree_map(np.asarray, restored["state"])
        if meta.get("digest") != state_digest(state_dict):
            raise ValueError(f"checkpoint at step {step} does not match its digest (corrupt file)")
        state = TrainState(**state_dict)
        if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(like):
            raise ValueError(f"checkpoint at step {step} has a different structure from the model's state")
        return state, meta

    def restore_latest(self, like: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest readable checkpoint (falling back past corrupt ones with a warning), or ``None``."""
        for step in reversed(self.steps()):
            try:
                return self.restore(step, like)
            except Exception as err:  # orbax raises many types for damaged files
                quarantine = self._quarantine(step)
                warnings.warn(
                    f"checkpoint at step {step} in {self.directory} is unreadable ({type(err).__name__}: "
                    f"{str(err)[:200]}); moved it to {quarantine.name} and falling back to the previous one",
                    stacklevel=2,
                )
        return None

    def _quarantine(self, step: int) -> Path:
        """Move a damaged step out of orbax's way (kept for inspection) so the resumed run can save it anew."""
        source = self.directory / str(step)
        target = self.directory / f"corrupt-{step}-{int(time.time())}"
        if source.exists():
            source.rename(target)
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
