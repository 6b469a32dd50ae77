"""What the notebooks in ``notebooks/`` share: where results live, the smoke switch, loading or making a result.

A notebook reads its result files from ``experiments/results/`` when they are there (the full-size experiments, made
by the commands its text gives) and otherwise runs a small experiment in-process, whose files go to a scratch
folder, never into ``experiments/results``. ``LRD_SMOKE=1`` forces the small experiments, so CI can execute the
notebooks in seconds without touching the committed results.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrd.metrics_log import write_json

__all__ = ["SMOKE", "repo_root", "load_or_make", "scratch_dir"]

SMOKE = os.environ.get("LRD_SMOKE", "") not in ("", "0")


def repo_root(start: Path | None = None) -> Path:
    """The repository root: the first of ``start`` (default: the working directory) and its parents that holds
    ``experiments/`` and ``lrd/`` (a notebook runs from ``notebooks/``, a script from anywhere in the tree)."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / "experiments").is_dir() and (candidate / "lrd").is_dir():
            return candidate
    raise FileNotFoundError(f"no lrd repository (a folder with experiments/ and lrd/) at or above {start}")


@functools.cache
def scratch_dir() -> Path:
    """A temporary folder for the small experiments' files (one per process)."""
    return Path(tempfile.mkdtemp(prefix="lrd-notebook-"))


def load_or_make(relative: str, make_small: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], Path]:
    """``(result, path)``: ``experiments/results/RELATIVE`` if it exists (and not in smoke mode), else the result of
    ``make_small()``, written under :func:`scratch_dir`. Figures belong next to ``path``."""
    full = repo_root() / "experiments" / "results" / relative
    if full.is_file() and not SMOKE:
        return json.loads(full.read_text()), full
    reason = "LRD_SMOKE=1" if SMOKE else f"{full} not found"
    print(
        f"{relative}: {reason}; running a small experiment instead (its numbers are not the committed ones)"
    )
    path = scratch_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    result = make_small()
    write_json(path, result)
    return result, path
