"""The errors lrd raises on purpose, in one module that imports nothing else of lrd.

* :class:`UsageError`: the user asked for something impossible; the command line prints it as one line and exits
  with status 2, before any compute.
* :class:`ConfigError`: an invalid config value; the message names the field (``model.hidden_size``) and, for
  names, the allowed values.
* :class:`OptionError`: a mixer option that is invalid or that the mixer cannot honour (``truncation`` on
  softmax attention, ``chunk_size`` with a sequential scan). It carries the option's name so that the config can
  report it under the path the user typed (``model.truncation`` or ``model.options.lru.truncation``).
* :class:`WorkdirError`: the workdir holds a different run, or something that is not a run.
* :class:`NumericalFault`: training skipped too many steps for a NaN/Inf loss or gradient.
* :class:`Preempted`: a run stopped on SIGTERM/SIGINT after writing a checkpoint.

All but :class:`NumericalFault` and :class:`Preempted` are ``ValueError``\\ s, so library callers can catch the usual type.
"""

from __future__ import annotations

__all__ = ["UsageError", "ConfigError", "OptionError", "WorkdirError", "NumericalFault", "Preempted"]


class UsageError(ValueError):
    """A user error: ``lrd`` prints ``lrd COMMAND: error: MESSAGE`` and exits with status 2."""


class ConfigError(UsageError):
    """An invalid config value; the message names the field (``section.field``)."""


class OptionError(ConfigError):
    """A mixer option that is invalid or cannot be honoured by the mixer.

    ``str(error)`` is ``"OWNER.FIELD=VALUE: DETAIL"``; :attr:`field` and :attr:`detail` let a caller that knows
    where the option came from re-state it under that path.
    """

    def __init__(self, owner: str, field: str, value: object, detail: str):
        self.owner, self.field, self.value, self.detail = owner, field, value, detail
        super().__init__(f"{owner}.{field}={value!r}: {detail}")


class WorkdirError(ConfigError):
    """The workdir holds a different run (or something that is not a run)."""


class NumericalFault(RuntimeError):
    """Too many steps skipped for non-finite losses or gradients."""


class Preempted(RuntimeError):
    """A run stopped on request (SIGTERM, SIGINT) after checkpointing; the same command resumes it."""

    def __init__(self, signal_name: str, step: int):
        self.signal_name, self.step = signal_name, step
        super().__init__(
            f"stopped by {signal_name} at step {step} (checkpoint saved); the same command resumes"
        )
