"""Typed, validated experiment configs: the one config path of every ``lrd`` command.

An :class:`ExperimentConfig` has seven sections, each a frozen dataclass validated in ``__post_init__``:

* ``model``  (:class:`ModelConfig`): mixer name or ``+``-pattern, sizes, setting, model-wide mixer options
  (``truncation``, ``scan_mode``) and per-mixer options;
* ``task``   (:class:`TaskConfig`): task name, lag, task options;
* ``optim``  (:class:`OptimConfig`): optimizer, learning rate, clipping, batch size;
* ``run``    (:class:`RunConfig`): workdir, steps, seeds, evaluation and checkpoint cadence, fault limits;
* ``search`` (:class:`SearchConfig`): the max-lag search protocol (used by ``lrd lag-search`` only);
* ``bench``  (:class:`BenchConfig`): which mixers ``lrd bench`` times and how (used by ``lrd bench`` only);
* ``diagnostics`` (:class:`DiagnosticsConfig`): what ``lrd grad-flow`` measures (used by it only).

Every bad value fails at construction, before any compute, with a :class:`lrd.errors.ConfigError` (a
``ValueError``) whose message names the field (``model.hidden_size``) and, for names, the allowed values. Each
field is validated in exactly one place: here, or, for mixer options, in the mixer's own
:meth:`lrd.cells.base.Mixer.check`, which :class:`ModelConfig` calls and re-states under the path the user typed.

Config files live in ``experiments/configs/*.py`` and define ``get_config(arg=None) -> ExperimentConfig``; they
are loaded by path or by preset name, with an optional argument after a colon (``adding:model=gru``, see
:func:`load_config` and :func:`parse_config_arg`). Overrides are ``section.field=value`` strings
(:func:`apply_overrides`); values are parsed according to the field's type, and ``task.options.min_lag=10`` sets
one entry of a mapping field. A config round-trips through JSON (:meth:`ExperimentConfig.to_dict` /
:meth:`ExperimentConfig.from_dict`), which is what a run writes to ``workdir/config.json``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrd.errors import ConfigError, OptionError

__all__ = [
    "ConfigError",
    "ModelConfig",
    "TaskConfig",
    "OptimConfig",
    "RunConfig",
    "SearchConfig",
    "BenchConfig",
    "DiagnosticsConfig",
    "ExperimentConfig",
    "OPTIMIZERS",
    "SETTINGS",
    "MODEL_WIDE_OPTIONS",
    "load_config",
    "parse_config_arg",
    "apply_overrides",
    "check_unique",
    "parse_override_args",
    "config_diff",
]

OPTIMIZERS = ("adam", "adamw", "rmsprop")  # see lrd.train.make_optimizer
SETTINGS = ("bare", "block")  # the two model settings, see lrd.models
NORMS = ("layernorm", "rmsnorm")
PRECISION_FIELDS = ("dtype", "param_dtype")
MODEL_WIDE_OPTIONS = ("truncation", "scan_mode", *PRECISION_FIELDS)  # given to every mixer of the pattern
PRESET_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


# ----------------------------------------------------------------------------------------------------------------
# Field checks shared by the sections.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(field: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{field} must be a positive int, got {value!r}")


def _non_negative_int(field: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{field} must be an int >= 0, got {value!r}")


def _positive_float(field: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{field} must be a finite number > 0, got {value!r}")


def _fraction(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{field} must be in (0, 1], got {value!r}")


def _choice(field: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is unknown; allowed values: {', '.join(allowed)}")


def _bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be true or false, got {value!r}")


def _mapping(field: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{field} must be a mapping with string keys, got {value!r}")


# ----------------------------------------------------------------------------------------------------------------
# Sections.


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: ``name`` is a mixer (``lrd list``) or a ``+``-joined pattern such as ``"lstm+attention"``.

    ``setting`` is ``"bare"`` (inputs -> cells -> readout, the 1997 setting) or ``"block"`` (pre-norm residual
    blocks, the modern setting); see :mod:`lrd.models`.

    ``truncation`` (truncated BPTT) and ``scan_mode`` (which equivalent algorithm) are model-wide: they are given
    to *every* mixer of the pattern, and a mixer that cannot honour them is an error naming the mixers that can.
    ``options`` maps a mixer name to options of that mixer, e.g. ``{"rnn": {"spectral_radius": 0.9}}``; an entry
    there overrides a model-wide value for that mixer (``model.options.lstm.truncation`` truncates only the LSTM
    of an ``lstm+attention`` hybrid).

    ``dtype`` / ``param_dtype`` (model-wide too, and for the model's own encoder, MLPs and embedding): the operand
    dtype of the projection matmuls and the storage dtype of the weight matrices, ``"float32"`` (default) or
    ``"bfloat16"`` (``dtype`` also ``"float16"``). Products accumulate in float32; states, gates, decays, norms,
    the readout and the loss stay float32 (see :mod:`lrd.cells.base`).
    """

    name: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    setting: str = "bare"
    norm: str = "layernorm"
    mlp_ratio: int = 4
    truncation: int | None = None
    scan_mode: str | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def mixers(self) -> tuple[str, ...]:
        """The pattern as a tuple of mixer names, cycled over the layers."""
        return tuple(m.strip() for m in self.name.split("+"))

    def __post_init__(self) -> None:
        from lrd.registry import mixer_names

        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"model.name must be a mixer name, got {self.name!r}")
        allowed = mixer_names()
        for mixer in self.mixers:
            _choice("model.name", mixer, allowed)
        _positive_int("model.hidden_size", self.hidden_size)
        _positive_int("model.num_layers", self.num_layers)
        _choice("model.setting", self.setting, SETTINGS)
        _choice("model.norm", self.norm, NORMS)
        _non_negative_int("model.mlp_ratio", self.mlp_ratio)
        if self.truncation is not None:
            _positive_int("model.truncation", self.truncation)
        if self.scan_mode is not None and not isinstance(self.scan_mode, str):
            raise ConfigError(f"model.scan_mode must be a name or None, got {self.scan_mode!r}")
        from lrd.cells.base import FLOAT_DTYPES, PARAM_DTYPES

        _choice("model.dtype", self.dtype, FLOAT_DTYPES)
        _choice("model.param_dtype", self.param_dtype, PARAM_DTYPES)
        _mapping("model.options", self.options)
        for mixer, options in self.options.items():
            if mixer not in self.mixers:
                raise ConfigError(
                    f"model.options names mixer {mixer!r}, which is not in model.name={self.name!r}; "
                    f"allowed values: {', '.join(dict.fromkeys(self.mixers))}"
                )
            _mapping(f"model.options.{mixer}", options)
        self.mixer_options()  # every mixer checks the options it is given

    def mixer_options(self) -> dict[str, dict[str, Any]]:
        """``{mixer: options}`` for every mixer of the pattern: the model-wide options, then its own; checked.

        Raises :class:`ConfigError` naming the option as the user set it (``model.truncation`` or
        ``model.options.MIXER.FIELD``) when a mixer does not have it, or has it but cannot honour its value.
        """
        from lrd.registry import build_mixer, mixer_defaults, mixer_names

        resolved_all: dict[str, dict[str, Any]] = {}
        for mixer in dict.fromkeys(self.mixers):
            defaults = mixer_defaults(mixer)
            resolved: dict[str, Any] = {}
            for field in MODEL_WIDE_OPTIONS:
                value = getattr(self, field)
                if value is None or (field in PRECISION_FIELDS and value == "float32"):
                    continue  # unset (the precision fields: the mixers' own default)
                if field not in defaults:
                    accepting = [n for n in mixer_names() if field in mixer_defaults(n)]
                    raise ConfigError(
                        f"model.{field}={value!r} cannot be applied to mixer {mixer!r}, which has no {field} option; "
                        f"mixers that accept {field}: {', '.join(accepting)}. In a pattern, set it for some "
                        f"mixers only with model.options.MIXER.{field}"
                    )
                resolved[field] = value
            own = dict(self.options.get(mixer, {}))
            for key in own:
                _choice(f"model.options.{mixer} key", key, sorted(defaults))
            resolved.update(own)
            try:
                build_mixer(mixer, self.hidden_size, **resolved).check()
            except OptionError as err:
                if err.field == "hidden_size":
                    where = "model.hidden_size"
                elif err.field in own or err.field not in resolved:
                    where = f"model.options.{mixer}.{err.field}"
                else:
                    where = f"model.{err.field}"
                raise ConfigError(f"{where}={err.value!r}: {err.detail} (mixer {mixer!r})") from None
            resolved_all[mixer] = resolved
        return resolved_all

    def resolved_scan_modes(self) -> dict[str, str | None]:
        """``{mixer: the scan mode it runs}`` on this backend (``"auto"`` resolved; ``None`` for one algorithm)."""
        from lrd.registry import build_mixer

        return {
            mixer: build_mixer(mixer, self.hidden_size, **options).effective_scan_mode()
            for mixer, options in self.mixer_options().items()
        }

    def build(self, task: Any):
        """The :class:`lrd.models.SequenceModel` for ``task``."""
        from lrd.models import SequenceModel

        tokens = task.input_kind == "tokens"
        return SequenceModel(
            mixers=self.mixers,
            hidden_size=self.hidden_size,
            output_dim=task.output_dim,
            input_kind=task.input_kind,
            vocab_size=task.vocab_size if tokens else 0,
            setting=self.setting,
            num_layers=self.num_layers,
            mixer_options=self.mixer_options(),
            norm=self.norm,
            mlp_ratio=self.mlp_ratio,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The task: ``name`` (``lrd list``), ``lag`` (its time lag / length; ``None`` = the task's default), options."""

    name: str = "adding"
    lag: int | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from lrd.registry import task_names

        _choice("task.name", self.name, task_names())
        if self.lag is not None:
            _positive_int("task.lag", self.lag)
        _mapping("task.options", self.options)
        if "lag" in self.options:
            raise ConfigError("task.options must not set 'lag'; use task.lag")
        self.build()  # the task validates its own options (e.g. min_lag <= lag)

    def build(self):
        """The :class:`lrd.tasks.base.Task` instance."""
        from lrd.registry import build_task

        options = dict(self.options)
        if self.lag is not None:
            options["lag"] = self.lag
        try:
            return build_task(self.name, **options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"task ({self.name}): {err}") from None


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam, AdamW or RMSProp (:func:`lrd.train.make_optimizer`) after global-norm clipping; ``batch_size``
    sequences per step and seed.

    ``learning_rate`` is one rate or a grid of them (``--optim.learning_rate 3e-4,1e-3,3e-3``): a grid is trained
    as an extra vmapped axis next to the seeds, in the same compiled program; every (rate, seed) member starts
    from that seed's initialisation and sees that seed's data, so it equals the run with that rate alone. A
    one-element grid is the plain rate."""

    name: str = "adam"
    learning_rate: float | tuple[float, ...] = 1e-3
    clip_norm: float = 1.0
    weight_decay: float = 0.0
    batch_size: int = 64

    @property
    def learning_rates(self) -> tuple[float, ...]:
        """The learning-rate grid (one rate: a one-element grid)."""
        rate = self.learning_rate
        return tuple(rate) if isinstance(rate, tuple) else (float(rate),)

    def __post_init__(self) -> None:
        _choice("optim.name", self.name, OPTIMIZERS)
        if isinstance(self.learning_rate, list | tuple):
            if not self.learning_rate:
                raise ConfigError(
                    "optim.learning_rate must be a number > 0 or a non-empty list of them, got []"
                )
            for rate in self.learning_rate:
                _positive_float("optim.learning_rate entries", rate)
            if len(set(self.learning_rate)) != len(self.learning_rate):
                raise ConfigError(f"optim.learning_rate lists a rate twice: {list(self.learning_rate)}")
            rates = tuple(float(rate) for rate in self.learning_rate)
            object.__setattr__(self, "learning_rate", rates[0] if len(rates) == 1 else rates)
        else:
            _positive_float("optim.learning_rate", self.learning_rate)
        _positive_float("optim.clip_norm", self.clip_norm)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, int | float):
            raise ConfigError(f"optim.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"optim.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.weight_decay > 0 and self.name != "adamw":
            raise ConfigError(
                f"optim.weight_decay={self.weight_decay} needs optim.name='adamw' (got {self.name!r})"
            )
        _positive_int("optim.batch_size", self.batch_size)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run's bookkeeping.

    The held-out evaluation runs every ``eval_every`` steps and after the last step (``eval_every > steps``
    means: once, at the end). A checkpoint is written after the first evaluation at or past every multiple of
    ``checkpoint_every`` (with ``eval_every`` dividing it, exactly at those multiples), and after the last step.
    A run stops with a numerical-fault error when, in one evaluation interval, some seed had more than
    ``max_skip_fraction`` of its steps skipped for a non-finite loss or gradient. If no evaluation completes for
    ``watchdog_s`` seconds (0: never), every thread's stack is dumped to ``workdir/stacks.txt`` (the run goes on),
    so that a hang leaves evidence. ``mesh`` lays the run out over devices (``"auto"``: every visible device;
    ``"members=M[,batch=B]"``), see :mod:`lrd.distributed`."""

    workdir: str | None = None
    steps: int = 2000
    num_seeds: int = 1
    seed: int = 0
    eval_every: int = 100
    eval_batch_size: int = 512
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    early_stop: bool = True
    max_skip_fraction: float = 0.5
    tensorboard: bool = True
    watchdog_s: float = 1800.0
    mesh: str = "auto"

    def __post_init__(self) -> None:
        if self.workdir is not None and (not isinstance(self.workdir, str) or not self.workdir):
            raise ConfigError(f"run.workdir must be a non-empty path, got {self.workdir!r}")
        for name in (
            "steps",
            "num_seeds",
            "eval_every",
            "eval_batch_size",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            _positive_int(f"run.{name}", getattr(self, name))
        _non_negative_int("run.seed", self.seed)
        _bool("run.early_stop", self.early_stop)
        _bool("run.tensorboard", self.tensorboard)
        if isinstance(self.watchdog_s, bool) or not isinstance(self.watchdog_s, int | float):
            raise ConfigError(f"run.watchdog_s must be a number of seconds >= 0, got {self.watchdog_s!r}")
        if not (math.isfinite(self.watchdog_s) and self.watchdog_s >= 0):
            raise ConfigError(f"run.watchdog_s must be a number of seconds >= 0, got {self.watchdog_s!r}")
        _fraction("run.max_skip_fraction", self.max_skip_fraction)
        from lrd.distributed import parse_mesh

        if not isinstance(self.mesh, str):
            raise ConfigError(f"run.mesh must be a string, got {self.mesh!r}")
        try:
            parse_mesh(self.mesh)
        except ValueError as err:
            raise ConfigError(str(err)) from None


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The max-learnable-lag protocol (:mod:`lrd.lag_search`).

    Train every lag of the geometric ``sweep`` (ascending) with ``run.steps`` steps and ``run.num_seeds`` seeds,
    until ``patience`` consecutive lags fail; then bisect between the largest learnable and the smallest failed
    lag until they are within ``resolution`` (relative, at least 1 step). A lag is learnable when at least
    ``solve_fraction`` of the seeds meet the task's ``solved`` criterion.
    """

    sweep: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000)
    solve_fraction: float = 0.5
    resolution: float = 0.1
    patience: int = 1
    max_bisections: int = 6

    def __post_init__(self) -> None:
        if isinstance(self.sweep, list):
            object.__setattr__(self, "sweep", tuple(self.sweep))
        if not isinstance(self.sweep, tuple) or not self.sweep:
            raise ConfigError(f"search.sweep must be a non-empty list of lags, got {self.sweep!r}")
        for lag in self.sweep:
            _positive_int("search.sweep entries", lag)
        if list(self.sweep) != sorted(set(self.sweep)):
            raise ConfigError(f"search.sweep must be strictly increasing, got {list(self.sweep)}")
        _fraction("search.solve_fraction", self.solve_fraction)
        _positive_float("search.resolution", self.resolution)
        _positive_int("search.patience", self.patience)
        _non_negative_int("search.max_bisections", self.max_bisections)


BENCH_SUITES = ("mixers", "scan")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What ``lrd bench`` measures (:mod:`lrd.bench`); sizes come from the other sections.

    ``models``: mixer names to time (empty: every registered mixer); ``seq_lens``: sequence lengths (the task's
    lag) to time each at (empty: ``task.lag``); ``peer``: the mixer the ``vs_peer`` column divides by, measured in
    the same process at the same length; ``peers``: implementations outside lrd timed in the same rounds
    (:mod:`lrd.peers`); ``repeats`` timed and ``warmup`` untimed calls per measurement;
    ``variants``: time every ``scan_mode`` of each mixer, not only its default. ``suite``: ``mixers`` (the above) or
    ``scan`` (:func:`lrd.scan.linear_scan` in every mode against raw ``lax.scan`` / ``lax.associative_scan`` and
    the memory floor, float32 ``[T, batch_size, hidden_size]``; lengths default to 4096, 16384, 65536).
    """

    suite: str = "mixers"
    models: tuple[str, ...] = ()
    seq_lens: tuple[int, ...] = ()
    peer: str = "lstm"
    peers: tuple[str, ...] = ()
    repeats: int = 10
    warmup: int = 2
    variants: bool = True

    def __post_init__(self) -> None:
        from lrd.registry import mixer_names

        for name in ("models", "seq_lens", "peers"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.seq_lens, tuple):
            raise ConfigError(f"bench.seq_lens must be a list of lengths, got {self.seq_lens!r}")
        for length in self.seq_lens:
            _positive_int("bench.seq_lens entries", length)
        if not isinstance(self.models, tuple):
            raise ConfigError(f"bench.models must be a list of mixer names, got {self.models!r}")
        allowed = mixer_names()
        for name in self.models:
            _choice("bench.models", name, allowed)
        _choice("bench.peer", self.peer, allowed)
        from lrd.peers import PEERS

        if not isinstance(self.peers, tuple):
            raise ConfigError(f"bench.peers must be a list of names, got {self.peers!r}")
        for name in self.peers:
            _choice("bench.peers", name, PEERS)
        _positive_int("bench.repeats", self.repeats)
        _positive_int("bench.warmup", self.warmup)
        _bool("bench.variants", self.variants)
        _choice("bench.suite", self.suite, BENCH_SUITES)


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """What ``lrd grad-flow`` measures (:mod:`lrd.diagnostics`); model, task and seeds come from the other sections.

    ``window``: the distances ``[lo, hi]`` (steps back from the last one) over which the per-step log-slope of the
    gradient norm is fitted; the default 5..60 skips the readout's own steps and stays above float32 underflow for
    the usual decays. ``jacobian_samples``: random unit projections per example for the norm of the Jacobian
    product ``||dy_T/dh_t||``. ``leaves``: the probed leaves to report (``layer0_lstm/c``); empty: all.
    """

    window: tuple[int, ...] = (5, 60)
    jacobian_samples: int = 4
    leaves: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("window", "leaves"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.window, tuple) or len(self.window) != 2:
            raise ConfigError(f"diagnostics.window must be two distances lo,hi, got {self.window!r}")
        lo, hi = self.window
        _non_negative_int("diagnostics.window lo", lo)
        _positive_int("diagnostics.window hi", hi)
        if not lo < hi:
            raise ConfigError(f"diagnostics.window must have lo < hi, got {list(self.window)}")
        _positive_int("diagnostics.jacobian_samples", self.jacobian_samples)
        if not isinstance(self.leaves, tuple) or not all(isinstance(leaf, str) for leaf in self.leaves):
            raise ConfigError(f"diagnostics.leaves must be a list of leaf names, got {self.leaves!r}")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "task": TaskConfig,
    "optim": OptimConfig,
    "run": RunConfig,
    "search": SearchConfig,
    "bench": BenchConfig,
    "diagnostics": DiagnosticsConfig,
}

# Fields renamed since configs were first written: (section, old name) -> new name. A config.json of an older
# run still loads.
_RENAMED_FIELDS = {("model", "mode"): "setting"}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; cross-section checks (truncation vs. sequence length, seeds vs. solve fraction)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    bench: BenchConfig = dataclasses.field(default_factory=BenchConfig)
    diagnostics: DiagnosticsConfig = dataclasses.field(default_factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )
        from lrd.distributed import parse_mesh

        explicit = parse_mesh(self.run.mesh)
        if explicit is not None:
            members = self.run.num_seeds * len(self.optim.learning_rates)
            if members % explicit[0]:
                raise ConfigError(
                    f"run.mesh={self.run.mesh!r}: members={explicit[0]} does not divide the {members} members "
                    "(run.num_seeds x learning rates)"
                )
            if self.optim.batch_size % explicit[1]:
                raise ConfigError(
                    f"run.mesh={self.run.mesh!r}: batch={explicit[1]} does not divide "
                    f"optim.batch_size={self.optim.batch_size}"
                )
        seq_len = self.task.build().seq_len
        for mixer, options in self.model.mixer_options().items():
            truncation = options.get("truncation")
            if truncation is not None and truncation > seq_len:
                own = "truncation" in self.model.options.get(mixer, {})
                where = f"model.options.{mixer}.truncation" if own else "model.truncation"
                raise ConfigError(
                    f"{where}={truncation} exceeds the sequence length {seq_len} of task {self.task.name!r} "
                    f"(task.lag={self.task.lag}); use a truncation <= {seq_len} or none"
                )

    # -- serialisation ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists, mappings become dicts)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_json_default))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Strict inverse of :meth:`to_dict`: unknown sections or fields are errors naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; allowed values: {', '.join(SECTIONS)}")
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, Mapping):
                raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
            values = {_RENAMED_FIELDS.get((name, key), key): value for key, value in values.items()}
            fields = {f.name for f in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - fields)
            if bad:
                raise ConfigError(
                    f"{name}.{bad[0]} is not a field; allowed values: {', '.join(sorted(fields))}"
                )
            sections[name] = section_cls(**values)
        return cls(**sections)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """``config.replace(run={"steps": 10}, task={"lag": 50})``: a validated copy with fields changed."""
        sections = {}
        for name, fields in changes.items():
            if name not in SECTIONS:
                raise ConfigError(f"unknown config section {name!r}; allowed values: {', '.join(SECTIONS)}")
            sections[name] = dataclasses.replace(getattr(self, name), **fields)
        return dataclasses.replace(self, **sections)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {value!r}")


# ----------------------------------------------------------------------------------------------------------------
# Config files and overrides.


def preset_names() -> list[str]:
    """The config files of ``experiments/configs`` by name (the names ``--config`` accepts)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.py") if not p.stem.startswith("_"))


def parse_config_arg(arg: str | None, **defaults: str) -> dict[str, str]:
    """``"model=gru,lag=200"`` -> ``{"model": "gru", "lag": "200"}`` over ``defaults``; for ``get_config(arg)``.

    The keys a config file accepts are those of ``defaults``; any other key is a :class:`ConfigError` listing
    them. A bare value without ``=`` sets the first key (``adding:gru`` is ``adding:model=gru``).
    """
    values = dict(defaults)
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            if not defaults:
                raise ConfigError(f"config argument {item!r}: this config takes no argument")
            key, value = next(iter(defaults)), item
        key, value = key.strip(), value.strip()
        if key not in defaults:
            raise ConfigError(
                f"config argument {key!r} is unknown; allowed values: {', '.join(defaults) or '(none)'}"
            )
        values[key] = value
    return values


def load_config(spec: str | Path) -> ExperimentConfig:
    """The config of ``spec``: ``PATH.py`` or a preset name, optionally followed by ``:ARG``.

    The file is imported and its ``get_config(arg)`` called with ``ARG`` (or ``get_config()`` when none is
    given), e.g. ``load_config("adding:model=gru")`` or ``load_config("experiments/configs/copy.py:model=rnn")``.
    """
    text = str(spec)
    arg = None
    base, sep, rest = text.rpartition(":")
    if sep and base and "/" not in rest and not Path(text).exists():
        text, arg = base, rest
    path = Path(text)
    if path.suffix != ".py" and not path.exists():
        candidate = PRESET_DIR / f"{path}.py"
        path = candidate if candidate.exists() else path
    if not path.is_file():
        raise ConfigError(
            f"config file {text!r} does not exist; allowed values: a .py file or a preset "
            f"({', '.join(preset_names()) or 'none found'}), optionally followed by :ARG"
        )
    module_spec = importlib.util.spec_from_file_location(f"lrd_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    assert module_spec.loader is not None
    module_spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {str(path)!r} must define get_config() -> ExperimentConfig")
    if arg is None:
        config = get_config()
    elif inspect.signature(get_config).parameters:
        config = get_config(arg)
    else:
        raise ConfigError(f"config file {str(path)!r} takes no argument, got {arg!r}")
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(
            f"get_config() in {str(path)!r} returned {type(config).__name__}, not ExperimentConfig"
        )
    return config


def _field_type(section_cls: type, name: str) -> Any:
    return typing.get_type_hints(section_cls)[name]


def _parse_value(key: str, raw: str, hint: Any) -> Any:
    """Parse ``raw`` for a field annotated ``hint``; raise naming ``key`` when it does not fit."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        inner_types = [a for a in args if a is not type(None)]
        if len(inner_types) == 2 and float in inner_types:  # float | tuple[float, ...]: "1e-3" or "1e-3,3e-3"
            (grid,) = [a for a in inner_types if a is not float]
            listed = "," in raw or raw.strip().startswith("[")
            return _parse_value(key, raw, grid if listed else float)
        (inner,) = inner_types
        return _parse_value(key, raw, inner)
    if hint is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be an int, got {raw!r}") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if hint is str:
        return raw
    if origin is tuple:  # tuple[int, ...] or tuple[str, ...]: "10,20,50" or a JSON list
        text = raw.strip()
        try:
            items = (
                json.loads(text)
                if text.startswith("[")
                else [s.strip() for s in text.split(",") if s.strip()]
            )
        except json.JSONDecodeError:
            raise ConfigError(f"{key} must be a comma-separated list or a JSON list, got {raw!r}") from None
        if args[0] is str:
            return tuple(str(i) for i in items)
        if args[0] is float:
            try:
                return tuple(float(i) for i in items)
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a comma-separated list of numbers, got {raw!r}") from None
        try:
            return tuple(int(i) for i in items)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a comma-separated list of ints, got {raw!r}") from None
    if origin in (Mapping, dict) or hint is dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} must be a JSON object, got {raw!r}") from None
        return value
    raise ConfigError(f"{key} cannot be set from the command line")


def _json_or_str(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply ``["model.hidden_size=128", "task.options.min_lag=10", ...]`` in order and re-validate.

    ``section.field=value`` parses ``value`` by the field's type; ``section.mapping_field.key=value`` sets one
    entry of a mapping (the value parsed as JSON when it can be, else kept as a string), and
    ``model.options.MIXER.KEY=value`` one option of one mixer.
    """
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        parts = key.split(".")
        if len(parts) < 2 or parts[0] not in SECTIONS:
            raise ConfigError(
                f"override key {key!r} must start with a section; allowed values: {', '.join(SECTIONS)}"
            )
        section, field = parts[0], parts[1]
        section_cls = SECTIONS[section]
        fields = {f.name for f in dataclasses.fields(section_cls)}
        if field not in fields:
            raise ConfigError(
                f"{section}.{field} is not a field; allowed values: {', '.join(sorted(fields))}"
            )
        current = changes.setdefault(section, {})
        hint = _field_type(section_cls, field)
        if len(parts) == 2:
            current[field] = _parse_value(key, raw, hint)
            continue
        if typing.get_origin(hint) is not Mapping:
            raise ConfigError(f"{section}.{field} is not a mapping, so {key!r} cannot set an entry of it")
        base = current.get(field, getattr(getattr(config, section), field))
        mapping = json.loads(json.dumps(base, default=_json_default))
        target = mapping
        for part in parts[2:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{key}: {part!r} is not a mapping")
        target[parts[-1]] = _json_or_str(raw)
        current[field] = mapping
    return config.replace(**changes)


def check_unique(overrides: Sequence[str]) -> None:
    """A command line must not give a field twice (say ``--lag 5 --task.lag 6``): a :class:`ConfigError`."""
    seen: set[str] = set()
    for item in overrides:
        key = item.partition("=")[0]
        if key in seen:
            raise ConfigError(f"{key} is given twice; give each field once")
        seen.add(key)


def parse_override_args(argv: Sequence[str]) -> list[str]:
    """Command-line ``--model.hidden_size 128`` / ``--model.hidden_size=128`` -> ``["model.hidden_size=128"]``."""
    overrides = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(
                f"unrecognised argument {arg!r}; overrides look like --section.field VALUE with section one of "
                f"{', '.join(SECTIONS)}"
            )
        body = arg[2:]
        if "=" in body:
            overrides.append(body)
            i += 1
        elif i + 1 < len(argv):
            overrides.append(f"{body}={argv[i + 1]}")
            i += 2
        else:
            raise ConfigError(f"override {arg!r} needs a value")
    return overrides


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``["model.hidden_size: 64 -> 128", ...]``: the leaves that differ between two config dicts."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(config_diff(a, b, name + "."))
        elif a != b:
            diffs.append(f"{name}: {json.dumps(a)} -> {json.dumps(b)}")
    return diffs
