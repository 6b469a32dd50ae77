"""Guards around a run's workdir: one process at a time (a lock file), and a graceful stop on SIGTERM / SIGINT.

* :class:`WorkdirLock`: ``workdir/.lock`` holds the owner's pid, host and start time. A second process gets a
  :class:`lrd.errors.WorkdirError` naming the owner; a lock whose process is gone (same host, pid not alive: a
  ``kill -9``) is stale and taken over with a warning.
* :class:`Watchdog`: if the run makes no progress for ``seconds``, every thread's Python stack is dumped to
  ``workdir/stacks.txt`` (again every ``seconds`` while the stall lasts); the run is not stopped. A file left empty
  is removed at the end. The dump is taken by a Python thread holding the GIL (``sys._current_frames``), so it sees
  a main thread waiting inside XLA (which releases the GIL) but not one spinning in native code that holds it. It
  is not :func:`faulthandler.dump_traceback_later`: faulthandler's timer thread reads the other threads' frames
  *without* the GIL, and with orbax's and execnet's threads running that read can crash the process (a test
  worker died that way under CI).
* :class:`StopSignals`: while active, SIGTERM (a cluster pre-emption) and SIGINT (Ctrl-C) only *request* a stop;
  the training loop checks :attr:`StopSignals.requested` after each evaluation chunk, checkpoints and stops. A second
  signal of the same kind stops at once, as before.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from lrd.errors import WorkdirError

__all__ = ["WorkdirLock", "StopSignals", "Watchdog", "LOCK_NAME", "STACKS_NAME", "require_unlocked"]

LOCK_NAME = ".lock"
STACKS_NAME = "stacks.txt"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class WorkdirLock:
    """``with WorkdirLock(workdir): ...``: exclusive use of ``workdir`` by this process (see module docstring)."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / LOCK_NAME
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def __enter__(self) -> WorkdirLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.owner, f)
            return self
        raise WorkdirError(
            f"run.workdir={str(self.path.parent)!r}: could not take its lock file {self.path.name}"
        )

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            holder = {}
        pid, host = holder.get("pid"), holder.get("host")
        if isinstance(pid, int) and host == self.owner["host"] and not _alive(pid):
            warnings.warn(
                f"{self.path}: the process {pid} that held this workdir is gone (killed?); taking the lock over",
                stacklevel=3,
            )
            self.path.unlink(missing_ok=True)
            return
        raise WorkdirError(
            f"run.workdir={str(self.path.parent)!r} is in use by process {pid} on {host} since "
            f"{holder.get('since', '?')}; wait for it to finish or stop it (if it is gone, delete {self.path})"
        )

    def __exit__(self, *exc: Any) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def require_unlocked(workdir: str | Path) -> None:
    """Raise :class:`WorkdirError` if a live process holds ``workdir``'s lock (before deleting anything in it)."""
    path = Path(workdir) / LOCK_NAME
    if path.exists():
        lock = WorkdirLock(workdir)
        lock._take_over_if_stale()  # raises for a live holder; removes a stale lock


class StopSignals:
    """``with StopSignals() as stop: ... if stop.requested: ...`` (see module docstring).

    Outside the main thread (where Python cannot install handlers) it does nothing and ``requested`` stays False.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested == name:  # the same signal twice: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.requested = name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class Watchdog:
    """``with Watchdog(workdir, seconds) as dog: ... dog.progress() ...`` (see module docstring; 0 seconds: off)."""

    def __init__(self, workdir: str | Path, seconds: float):
        self.path = Path(workdir) / STACKS_NAME
        self.seconds = seconds
        self._last_progress = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self, *_: Any) -> None:
        """Restart the countdown (usable as a training callback)."""
        self._last_progress = time.monotonic()

    def _dump(self, stalled_for: float) -> None:
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        lines = [f"# no progress for {stalled_for:.1f} s at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"]
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident():
                continue
            lines.append(f"\nThread {ident:#x} ({names.get(ident, '?')}), most recent call last:\n")
            lines.extend(traceback.format_stack(frame))
        try:
            with self.path.open("a") as file:
                file.write("".join(lines))
        except OSError as error:  # evidence is best effort; never take the run down
            print(f"lrd: watchdog could not write {self.path}: {error}", file=sys.stderr)

    def _watch(self) -> None:
        dumped_at = -math.inf  # a stall is dumped once every `seconds`, not continuously
        while True:
            due = max(self._last_progress, dumped_at) + self.seconds
            if self._stopped.wait(max(due - time.monotonic(), 0.0)):
                return
            now = time.monotonic()
            if now >= max(self._last_progress, dumped_at) + self.seconds:
                self._dump(now - self._last_progress)
                dumped_at = now

    def __enter__(self) -> Watchdog:
        if self.seconds > 0:
            self.progress()
            self._thread = threading.Thread(target=self._watch, name="lrd-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stopped.set()
        self._thread.join()
        self._thread = None
