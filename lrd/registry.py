"""Name -> constructor registries for sequence mixers (cells/layers) and tasks.

A cell file registers its module class with :func:`register_mixer`; a task file registers its class with
:func:`register_task`. ``lrd list`` prints both. Modules are registered as classes, and built with
``build_mixer(name, hidden_size=..., **options)``. Every module under ``lrd/cells/`` and ``lrd/tasks/`` is imported
the first time a name is looked up, so adding a cell is one new file and no edit elsewhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from lrd.errors import ConfigError

__all__ = [
    "MixerSpec",
    "TaskSpec",
    "register_mixer",
    "register_task",
    "mixer_names",
    "task_names",
    "get_mixer",
    "get_task",
    "build_mixer",
    "mixer_defaults",
    "build_task",
]


@dataclasses.dataclass(frozen=True)
class MixerSpec:
    """A registered sequence mixer: its name, module class, family and preset options."""

    name: str
    cls: type
    family: str
    description: str
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task: its name, class and one-line description."""

    name: str
    cls: type
    description: str


_MIXERS: dict[str, MixerSpec] = {}
_TASKS: dict[str, TaskSpec] = {}
_LOADED = False

# Packages whose modules register mixers and tasks when imported. A new file in one of them is found by itself.
_PACKAGES = ("lrd.cells", "lrd.tasks")


def _load_all() -> None:
    """Import every module of :data:`_PACKAGES` once (an import error in one of them is a real error)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for package_name in _PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(info.name)


def register_mixer(name: str, *, family: str, description: str, **defaults: Any) -> Callable[[type], type]:
    """Class decorator: register a Linen mixer module under ``name`` (``defaults`` preset its fields)."""

    def decorate(cls: type) -> type:
        if name in _MIXERS and _MIXERS[name].cls is not cls:
            raise ValueError(f"mixer name {name!r} is already registered by {_MIXERS[name].cls.__name__}")
        _MIXERS[name] = MixerSpec(name, cls, family, description, dict(defaults))
        return cls

    return decorate


def register_task(name: str, *, description: str) -> Callable[[type], type]:
    """Class decorator: register a task class under ``name``."""

    def decorate(cls: type) -> type:
        if name in _TASKS and _TASKS[name].cls is not cls:
            raise ValueError(f"task name {name!r} is already registered by {_TASKS[name].cls.__name__}")
        _TASKS[name] = TaskSpec(name, cls, description)
        return cls

    return decorate


def mixer_names() -> list[str]:
    """All registered mixer names, sorted."""
    _load_all()
    return sorted(_MIXERS)


def task_names() -> list[str]:
    """All registered task names, sorted."""
    _load_all()
    return sorted(_TASKS)


def get_mixer(name: str) -> MixerSpec:
    """The spec registered under ``name``; a clear error listing the allowed names otherwise."""
    _load_all()
    if name not in _MIXERS:
        raise ConfigError(f"unknown model name {name!r}; allowed values: {', '.join(sorted(_MIXERS))}")
    return _MIXERS[name]


def get_task(name: str) -> TaskSpec:
    """The task spec registered under ``name``; a clear error listing the allowed names otherwise."""
    _load_all()
    if name not in _TASKS:
        raise ConfigError(f"unknown task name {name!r}; allowed values: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def mixer_defaults(name: str) -> dict[str, Any]:
    """``{option: default}`` of the mixer ``name``: its class's fields, with the registered presets applied."""
    from lrd.cells.base import option_defaults

    spec = get_mixer(name)
    return {**option_defaults(spec.cls), **spec.defaults}


def build_mixer(name: str, hidden_size: int, *, module_name: str | None = None, **options: Any):
    """Instantiate the mixer ``name`` with ``hidden_size`` and options overriding its registered defaults.

    An option the mixer does not have is an error listing the ones it has. ``module_name`` names the submodule
    when built inside a parent's ``@nn.compact`` method.
    """
    spec = get_mixer(name)
    allowed = mixer_defaults(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"mixer {name!r} has no option(s) {unknown}; allowed options: {', '.join(sorted(allowed))}"
        )
    kwargs = {**spec.defaults, **options}
    if module_name is not None:
        kwargs["name"] = module_name
    return spec.cls(hidden_size=hidden_size, **kwargs)


def build_task(name: str, **options: Any):
    """Instantiate the task ``name`` with its options (e.g. ``lag=100``)."""
    spec = get_task(name)
    fields = {f.name for f in dataclasses.fields(spec.cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(
            f"task {name!r} has no option(s) {unknown}; allowed options: {', '.join(sorted(fields))}"
        )
    return spec.cls(**options)
