"""The ``lrd`` command line, one front door: ``lrd train | run | lag-search | bench | grad-flow | list``.

Every command that trains or measures builds one validated :class:`lrd.config.ExperimentConfig`, always the same
way (:func:`config_from_args`):

1. the base config: ``--config FILE[:ARG]`` (a ``.py`` file or a preset of ``experiments/configs``, e.g.
   ``--config adding:model=gru``), else the command's defaults;
2. the command's shorthand flags, each exactly one dotted override (``--lag 200`` is ``--task.lag 200``; the
   tables are :data:`CONFIG_SHORTHANDS`, :data:`BENCH_SHORTHANDS`, :data:`GRAD_FLOW_SHORTHANDS`, and
   ``lrd COMMAND --help`` prints them);
3. dotted overrides ``--section.field VALUE`` (or ``--section.field=VALUE``) for any field of any section,
   ``--model.options.MIXER.OPTION VALUE`` and ``--task.options.KEY VALUE`` for single entries.

Exit status: 0 done, 2 a usage error (nothing computed, nothing written), 3 a numerical fault (too many NaN/Inf
steps), 4 stopped by SIGTERM/SIGINT after a checkpoint (the same command resumes).

A field given twice is an error. Values are parsed by the field's type and validated by the config, so a mistake
gets the same one-line message from every command, names the field and the allowed values, and exits with status 2
before any compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lrd.config import (
    SECTIONS,
    ExperimentConfig,
    apply_overrides,
    check_unique,
    load_config,
    parse_override_args,
)
from lrd.errors import ConfigError, NumericalFault, Preempted, UsageError
from lrd.metrics_log import write_json

EXIT_NUMERICAL_FAULT = 3
EXIT_PREEMPTED = 4

__all__ = [
    "main",
    "build_parser",
    "parse",
    "config_from_args",
    "Shorthand",
    "CONFIG_SHORTHANDS",
    "BENCH_SHORTHANDS",
    "GRAD_FLOW_SHORTHANDS",
    "COMMANDS",
]


@dataclasses.dataclass(frozen=True)
class Shorthand:
    """A command-line flag that stands for one dotted override of the config.

    ``constant``: the flag is a switch that sets ``key`` to this value (``--no-early-stop`` sets
    ``run.early_stop=false``). ``entries``: the flag is repeatable and sets one entry ``key.K`` per ``K=V`` given.
    ``convert``: rewrites the value before it is parsed (``--models all`` is the empty list).
    """

    flag: str
    key: str
    help: str = ""
    constant: str | None = None
    entries: bool = False
    convert: Callable[[str], str] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def overrides(self, value: Any) -> list[str]:
        """The dotted overrides (``["task.lag=200"]``) for the parsed value of the flag (none if not given)."""
        if value is None or value is False or value == []:
            return []
        if self.constant is not None:
            return [f"{self.key}={self.constant}"]
        if self.entries:
            out = []
            for item in value:
                entry, sep, raw = item.partition("=")
                if not sep or not entry:
                    raise UsageError(f"{self.flag} must look like KEY=VALUE, got {item!r}")
                out.append(f"{self.key}.{entry}={raw}")
            return out
        return [f"{self.key}={self.convert(value) if self.convert else value}"]


CONFIG_SHORTHANDS: tuple[Shorthand, ...] = (
    Shorthand("--model", "model.name", "mixer name or '+'-joined pattern (see `lrd list`)"),
    Shorthand("--hidden-size", "model.hidden_size", "hidden size (bare) or d_model (block)"),
    Shorthand("--num-layers", "model.num_layers"),
    Shorthand("--setting", "model.setting", "bare (cells + readout, 1997) | block (residual blocks)"),
    Shorthand("--truncation", "model.truncation", "truncated-BPTT length, for every mixer (default: full)"),
    Shorthand("--task", "task.name", "task name (see `lrd list`)"),
    Shorthand("--lag", "task.lag", "time lag / sequence length of the task (default: the task's)"),
    Shorthand(
        "--task-option",
        "task.options",
        "one task option KEY=VALUE, repeatable; VALUE is parsed as JSON if it can be",
        entries=True,
    ),
    Shorthand("--batch-size", "optim.batch_size", "sequences per step and seed"),
    Shorthand("--learning-rate", "optim.learning_rate"),
    Shorthand("--clip-norm", "optim.clip_norm", "global-norm gradient clipping"),
    Shorthand("--steps", "run.steps", "training steps"),
    Shorthand("--num-seeds", "run.num_seeds", "independent seeds, trained as one vmapped program"),
    Shorthand("--seed", "run.seed"),
    Shorthand("--eval-every", "run.eval_every", "steps between held-out evaluations"),
    Shorthand(
        "--no-early-stop", "run.early_stop", "train every step even once every seed is solved", "false"
    ),
    Shorthand("--workdir", "run.workdir", "directory for config, checkpoints, metrics and summary"),
)

BENCH_SHORTHANDS: tuple[Shorthand, ...] = (
    Shorthand(
        "--suite", "bench.suite", "mixers (every mixer vs the LSTM) | scan (linear_scan vs the memory floor)"
    ),
    Shorthand(
        "--models",
        "bench.models",
        "comma-separated mixer names, or 'all' (see `lrd list`)",
        convert=lambda value: "" if value.strip() == "all" else value,
    ),
    Shorthand("--d-model", "model.hidden_size", "hidden size of the benchmarked model"),
    Shorthand("--seq-len", "bench.seq_lens", "sequence length(s) T (the task's lag), e.g. 256,1024,4096"),
    Shorthand("--batch-size", "optim.batch_size"),
    Shorthand("--repeats", "bench.repeats", "timed repetitions per measurement"),
    Shorthand("--warmup", "bench.warmup", "untimed repetitions first (compile, caches)"),
    Shorthand("--peer", "bench.peer", "mixer the 'vs peer' column divides by"),
    Shorthand("--peers", "bench.peers", "external peers timed alongside: flax_lstm, scan_lstm, torch_lstm"),
    Shorthand("--no-variants", "bench.variants", "registered defaults only, not every scan_mode", "false"),
    Shorthand("--seed", "run.seed"),
)


# ----------------------------------------------------------------------------------------------------------------
# Building the config.


def _lookup(config: ExperimentConfig, key: str) -> Any:
    section, _, field = key.partition(".")
    return getattr(getattr(config, section), field)


def fields_help(base: ExperimentConfig) -> str:
    """Every field of every section with its value in ``base``: the epilog of a command's ``--help``."""
    lines = ["every field can be set with --section.field VALUE; defaults of the base config:"]
    for name in SECTIONS:
        section = getattr(base, name)
        values = " ".join(f"{f.name}={_plain(getattr(section, f.name))}" for f in dataclasses.fields(section))
        lines.append(
            textwrap.fill(values, width=100, initial_indent=f"  {name + ':':<13}", subsequent_indent=" " * 15)
        )
    lines.append(
        "  per-mixer options: --model.options.MIXER.OPTION VALUE (lrd list shows each mixer's options)"
    )
    lines.append("  task options: --task.options.KEY VALUE (or --task-option KEY=VALUE)")
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(none)"
    if isinstance(value, Mapping):
        return json.dumps(dict(value)) if value else "{}"
    return str(value)


def _add_config_args(
    parser: argparse.ArgumentParser,
    shorthands: Sequence[Shorthand],
    base: Callable[[], ExperimentConfig] = ExperimentConfig,
) -> None:
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE[:ARG]",
        help="config file (defining get_config(arg)) or preset name of experiments/configs, e.g. adding:model=gru",
    )
    defaults = base()
    group = parser.add_argument_group(
        "shorthands", "each flag is one dotted override: --section.field VALUE works for every field"
    )
    for shorthand in shorthands:
        help_text = f"= --{shorthand.key}" + (f" {shorthand.constant}" if shorthand.constant else "")
        if shorthand.entries:
            help_text = f"= --{shorthand.key}.KEY VALUE"
        help_text += f": {shorthand.help}" if shorthand.help else ""
        if shorthand.constant is None and not shorthand.entries:
            help_text += f" (default: {_plain(_lookup(defaults, shorthand.key))})"
        if shorthand.constant is not None:
            group.add_argument(shorthand.flag, dest=shorthand.dest, action="store_true", help=help_text)
        elif shorthand.entries:
            group.add_argument(
                shorthand.flag,
                dest=shorthand.dest,
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help=help_text,
            )
        else:
            group.add_argument(
                shorthand.flag, dest=shorthand.dest, default=None, metavar="VALUE", help=help_text
            )
    parser.epilog = fields_help(defaults)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(accepts_overrides=True, shorthands=tuple(shorthands))


def config_from_args(
    args: argparse.Namespace,
    extra: Sequence[str],
    base: Callable[[], ExperimentConfig] = ExperimentConfig,
    prepare: Callable[[list[str]], list[str]] | None = None,
) -> ExperimentConfig:
    """The validated config of a command line: base (``--config`` or ``base()``), shorthands, dotted overrides.

    ``prepare`` may rewrite the list of overrides (after the check that no field is given twice) before they are
    applied.
    """
    config = load_config(args.config) if args.config else base()
    overrides = [item for sh in args.shorthands for item in sh.overrides(getattr(args, sh.dest))]
    overrides += parse_override_args(extra)
    check_unique(overrides)
    if prepare is not None:
        overrides = prepare(overrides)
    return apply_overrides(config, overrides)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))


def format_summary(summary: dict) -> str:
    """A short human-readable summary of a run (:func:`lrd.train.train` or :func:`lrd.runner.run_experiment`)."""
    task = summary.get("task") or {"task": summary.get("task_name"), "seq_len": summary.get("seq_len")}
    lines = [
        f"model={summary.get('model', '?')} task={task['task']} seq_len={task['seq_len']} "
        f"chance_loss={summary['chance_loss']:.4f}",
        f"steps run: {summary['steps_run']}  wall time: {summary['wall_time_s']:.1f}s",
    ]
    rates = summary.get("learning_rates") or [None]
    num_seeds = len(summary["solved"]) // len(rates)
    for i, solved in enumerate(summary["solved"]):
        metrics = ", ".join(f"{k}={v[i]:.4g}" for k, v in summary["final_eval"].items())
        when = summary["steps_to_solve"][i]
        status = f"solved at step {when}" if solved or when is not None else "not solved"
        member = f"seed {i % num_seeds}" + (f" lr {rates[i // num_seeds]:g}" if len(rates) > 1 else "")
        lines.append(f"{member}: {status}; held-out {metrics}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Commands.


def _configure_train(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, CONFIG_SHORTHANDS)
    parser.add_argument("--overwrite", action="store_true", help="with --workdir: replace a different run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd train``: a quick look, no files unless --workdir is given (then it is `lrd run`)."""
    from lrd.runner import train_in_memory

    config = config_from_args(args, extra)
    if config.run.workdir is not None:
        return _run_in_workdir(config, args)
    _print_summary(train_in_memory(config), args.json)
    return 0


def _run_in_workdir(config: ExperimentConfig, args: argparse.Namespace) -> int:
    from lrd.runner import run_experiment

    try:
        summary = run_experiment(config, overwrite=args.overwrite)
    except NumericalFault as err:
        print(f"lrd {args.command}: numerical fault: {err}")
        return EXIT_NUMERICAL_FAULT
    _print_summary(summary, args.json)
    if not args.json:
        print(f"results in {summary['workdir']}")
    return 0


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd run``: train a config in a workdir (resumes if interrupted); checkpoints, metrics, summary."""
    _start_distributed(args)
    config = config_from_args(args, extra)
    if config.run.workdir is None:
        raise ConfigError("run.workdir is required (e.g. --workdir runs/adding_lstm)")
    return _run_in_workdir(config, args)


def cmd_lag_search(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd lag-search``: the maximum learnable lag (geometric sweep, then bisection); resumable."""
    from lrd.executors import make_executor
    from lrd.lag_search import format_result, lag_search

    if args.executor == "ray" and any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id)
    ):
        raise UsageError("--executor ray runs each trial on its own device; it does not take --coordinator")
    if args.ray_address is not None and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    _start_distributed(args)
    config = config_from_args(args, extra)
    if config.run.workdir is None:
        config = config.replace(run={"workdir": f"runs/lag_search/{config.model.name}_{config.task.name}"})
    if args.executor == "ray":
        from lrd.runner import prepare_workdir

        prepare_workdir(config, overwrite=args.overwrite)  # a workdir error before Ray starts
    executor = make_executor(args.executor, args.ray_address)
    try:
        result = lag_search(config, overwrite=args.overwrite, executor=executor)
    finally:
        if executor is not None:
            executor.shutdown()
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    print(f"results in {config.run.workdir}/lag_search.json and lag_search.png")
    return 0


SCAN_BENCH_LENGTHS = (4096, 16384, 65536)

QUICK_BENCH = (
    "bench.models=lstm,gru,lru,s4d,selective_ssm,attention",
    "bench.peers=flax_lstm,scan_lstm",
    "bench.seq_lens=64",
    "model.hidden_size=16",
    "optim.batch_size=4",
    "bench.repeats=2",
    "bench.warmup=1",
    "bench.variants=false",
)


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    from lrd.bench import default_config

    _add_config_args(parser, BENCH_SHORTHANDS, base=default_config)
    parser.add_argument("--out", default=None, help="write the rows to this .json or .csv file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke-sized run (seconds; what CI runs): {' '.join(QUICK_BENCH)}, unless given otherwise",
    )


def _check_out_path(out: str) -> None:
    """``--out`` must be a ``.json``/``.csv`` file in an existing, writable directory (checked before compute)."""
    if not (out.endswith(".json") or out.endswith(".csv")):
        raise UsageError(f"--out must end in .json or .csv, got {out!r}")
    parent = Path(out).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--out {out!r}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out!r}: the directory {str(parent)!r} is not writable")


def _bench_model_pattern(overrides: list[str]) -> list[str]:
    """Make ``model.name`` the pattern of the benchmarked mixers, so that ``--model.options.NAME.*`` and the
    model-wide options are validated against exactly those mixers (each is then timed alone).

    The mixers are ``bench.models`` (empty: all registered); given ``--model.name`` instead, they are its mixers.
    """
    from lrd.registry import mixer_names

    given = {item.partition("=")[0]: item.partition("=")[2] for item in overrides}
    if "model.name" in given and "bench.models" not in given:
        names = [m.strip() for m in given["model.name"].split("+")]
        return [f"bench.models={','.join(dict.fromkeys(names))}", *overrides]
    requested = given.get("bench.models", "").strip("[]").replace('"', "").split(",")
    known = [m.strip() for m in requested if m.strip() in mixer_names()]  # bench.models reports the others
    return [f"model.name={'+'.join(known or mixer_names())}", *overrides]


def cmd_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd bench``: params, steps/s and fwd+bwd time per mixer and scan mode, with device and versions."""
    from lrd.bench import default_config, format_table, run_bench, write_results

    if args.out is not None:
        _check_out_path(args.out)

    def prepare(overrides: list[str]) -> list[str]:
        if args.quick:
            given = {item.partition("=")[0] for item in overrides}
            overrides = [q for q in QUICK_BENCH if q.partition("=")[0] not in given] + overrides
        return _bench_model_pattern(overrides)

    config = config_from_args(args, extra, base=default_config, prepare=prepare)
    log = functools.partial(print, file=sys.stderr)
    if config.bench.suite == "scan":
        from lrd.bench import format_scan_table, run_scan_bench

        result = run_scan_bench(
            config.bench.seq_lens or SCAN_BENCH_LENGTHS,
            batch=config.optim.batch_size,
            width=config.model.hidden_size,
            repeats=config.bench.repeats,
            warmup=config.bench.warmup,
            log=log,
        )
        print(format_scan_table(result))
    else:
        result = run_bench(config, log=log)
        print(format_table(result))
    if args.out:
        write_results(result, args.out)
        print(f"wrote {args.out}")
    return 0


GRAD_FLOW_SHORTHANDS: tuple[Shorthand, ...] = CONFIG_SHORTHANDS + (
    Shorthand("--window", "diagnostics.window", "distances lo,hi of the slope fit"),
    Shorthand("--leaves", "diagnostics.leaves", "comma-separated probed leaves to report (default all)"),
    Shorthand("--jacobian-samples", "diagnostics.jacobian_samples", "random projections per example"),
)


def _configure_grad_flow(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, GRAD_FLOW_SHORTHANDS)
    parser.add_argument(
        "--from-workdir",
        default=None,
        metavar="DIR",
        help="measure the newest checkpoint of the run in DIR (its config.json is the base config)",
    )
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="KEY=V1,V2,...",
        help="repeat for each value of one field, e.g. model.options.rnn.spectral_radius=0.5,1,1.5",
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="write grad_flow.json and grad_flow.png here"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _workdir_config(directory: str) -> ExperimentConfig:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise UsageError(f"--from-workdir {directory!r} holds no config.json (not an lrd run)")
    return ExperimentConfig.from_dict(json.loads(path.read_text()))


def _sweep_configs(config: ExperimentConfig, sweep: str) -> dict[str, ExperimentConfig]:
    """``{"KEY=V": config}`` for ``KEY=V1,V2,...`` (each validated now, before any compute)."""
    key, sep, values = sweep.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or "." not in key or not items:
        raise UsageError(f"--sweep must look like section.field=V1,V2,..., got {sweep!r}")
    return {f"{key}={value}": apply_overrides(config, [f"{key}={value}"]) for value in items}


def _prepare_out_dir(out: str, names: Sequence[str], overwrite: bool) -> Path:
    """Create ``out`` (before any compute); refuse to replace results there unless ``overwrite``."""
    directory = Path(out)
    existing = [name for name in names if (directory / name).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"--out {out!r} already holds {', '.join(existing)}; pass --overwrite to replace them"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out!r} cannot be created: {err.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise UsageError(f"--out {out!r} is not writable")
    return directory


def format_grad_flow(result: dict) -> str:
    """The headline numbers of a :func:`lrd.diagnostics.grad_flow` result."""
    lo, hi = result["slope_window"]
    lines = [
        f"{result['model']} on {result['task']} T={result['lag']} ({result['source']['kind']}, "
        f"{result['num_seeds']} seed(s) x {result['batch_size']} sequences); slopes fitted over distances {lo}..{hi}",
    ]
    for name, slope in result["slope_per_step"].items():
        jacobian = result["jacobian_slope_per_step"].get(name)
        lines.append(
            f"  {name:<24} d log||dL/dh|| / step = {_fmt_slope(slope)}   d log||dy_T/dh|| / step = "
            f"{_fmt_slope(jacobian)}"
        )
    for layer, prediction in result["predictions_by_layer"].items():
        lines.append(
            f"  {layer}: rho={prediction['spectral_radius']:.3f}  predicted log(rho max f')="
            f"{_fmt_slope(prediction['log_rho_max_fprime'])}  log(rho rms f')="
            f"{_fmt_slope(prediction['log_rho_rms_fprime'])}"
        )
    for layer, internals in result["internals"].items():
        for name, stats in internals.items():
            quantiles = stats["unit_mean_quantiles"]
            lines.append(
                f"  {layer} {name}: mean {stats['mean']:.3f}; per-unit means q10/q50/q90 "
                f"{quantiles['q10']:.3f}/{quantiles['q50']:.3f}/{quantiles['q90']:.3f}"
            )
    return "\n".join(lines)


def _fmt_slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def cmd_grad_flow(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd grad-flow``: gradient norm vs distance per state leaf, fitted decay and its predictions, spectra."""
    from lrd.diagnostics import leaf_names, plot_grad_flow, plot_sweep, run_grad_flow, run_sweep

    if args.from_workdir and args.config:
        raise UsageError("give --config or --from-workdir, not both (the run's config.json is the base)")
    base = (lambda: _workdir_config(args.from_workdir)) if args.from_workdir else ExperimentConfig
    config = config_from_args(args, extra, base=base)
    if args.from_workdir:
        run_config = _workdir_config(args.from_workdir)
        if config.model != run_config.model or config.task.name != run_config.task.name:
            raise UsageError(
                "--from-workdir: the model section and task.name must be the run's (its checkpoint has their "
                "parameters); change the lag or the batch, not the model"
            )
    configs = _sweep_configs(config, args.sweep) if args.sweep else {"": config}
    for each in configs.values():
        allowed = leaf_names(each.model.build(each.task.build()))
        unknown = sorted(set(each.diagnostics.leaves) - set(allowed))
        if unknown:
            raise ConfigError(f"diagnostics.leaves {unknown} unknown; allowed values: {', '.join(allowed)}")
    names = ["sweep.json", "sweep.png"] if args.sweep else ["grad_flow.json", "grad_flow.png"]
    out = _prepare_out_dir(args.out, names, args.overwrite) if args.out else None
    if not args.sweep:
        result = run_grad_flow(config, from_workdir=args.from_workdir)
        print(json.dumps(result, indent=2) if args.json else format_grad_flow(result))
        if out is not None:
            write_json(out / "grad_flow.json", result)
            plot_grad_flow(result, out / "grad_flow.png")
            print(f"wrote {out / 'grad_flow.json'} and grad_flow.png")
        return 0
    sweep = run_sweep(configs, from_workdir=args.from_workdir, log=lambda line: print(line, file=sys.stderr))
    sweep["key"] = args.sweep.partition("=")[0]
    sweep["title"] = f"{config.model.name} on {config.task.name}: sweep of {sweep['key']}"
    if args.json:
        print(json.dumps(sweep, indent=2))
    else:
        for label, result in sweep["runs"].items():
            print(f"== {label}\n{format_grad_flow(result)}")
    if out is not None:
        write_json(out / "sweep.json", sweep)
        plot_sweep(sweep, out / "sweep.png")
        print(f"wrote {out / 'sweep.json'} and sweep.png")
    return 0


def _format_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


PRECISION_OPTIONS = ("dtype", "param_dtype")


def mixer_option_lines(name: str) -> list[str]:
    """``lrd list``'s description of the options of mixer ``name``: scan modes, then every option's default."""
    from lrd.cells.base import scan_modes
    from lrd.registry import build_mixer, get_mixer, mixer_defaults

    cls = get_mixer(name).cls
    defaults = mixer_defaults(name)
    lines = []
    modes = scan_modes(cls)
    if modes:
        default = defaults["scan_mode"]
        choices = [f"{m}{' (default)' if m == default else ''}" for m in modes]
        if default == "auto":
            here = build_mixer(name, 8).effective_scan_mode()
            choices.insert(0, f"auto (default; {here} on this backend)")
        lines.append("scan_mode: " + " | ".join(choices))
    only = dict(getattr(cls, "OPTION_SCAN_MODES", {}))
    options = []
    for option, value in defaults.items():
        if option in ("scan_mode", *PRECISION_OPTIONS):  # every mixer has these: `lrd list` states them once
            continue
        text = f"{option}={_format_value(value)}"
        if option in only and set(only[option]) != set(modes):
            text += f" [scan_mode {'|'.join(only[option])}]"
        options.append(text)
    if options:
        lines.append("options: " + ", ".join(options))
    return lines


def cmd_list(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd list``: registered models with the options each accepts, and tasks with theirs."""
    from lrd.cells.base import FLOAT_DTYPES, PARAM_DTYPES
    from lrd.registry import get_mixer, get_task, mixer_names, task_names

    indent = " " * 30
    print("models (set an option with --model.options.NAME.OPTION VALUE):")
    print(
        f"  every model: dtype={' | '.join(FLOAT_DTYPES)} (operands of the projections), "
        f"param_dtype={' | '.join(PARAM_DTYPES)} (stored weights); default float32, also model-wide "
        "(--model.dtype, --model.param_dtype)"
    )
    for name in mixer_names():
        spec = get_mixer(name)
        print(f"  {name:<16} {spec.family:<10} {spec.description}")
        for line in mixer_option_lines(name):
            print(f"{indent}{line}")
    print("tasks (set an option with --task.options.OPTION VALUE):")
    for name in task_names():
        spec = get_task(name)
        print(f"  {name:<16} {spec.description}")
        fields = [
            f"{f.name}={_format_value(f.default)}"
            for f in dataclasses.fields(spec.cls)
            if f.init and f.default is not dataclasses.MISSING
        ]
        if fields:
            print(f"{indent}options: {', '.join(fields)}")
    return 0


def _add_distributed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several hosts (jax.distributed; started by itself under SLURM srun or on a multi-host TPU slice)"
    )
    group.add_argument("--coordinator", help="HOST:PORT of process 0's coordinator")
    group.add_argument("--num-processes", type=int, help="how many processes take part")
    group.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")


def _start_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` before anything else touches JAX, when asked or launched for it."""
    from lrd.distributed import initialize

    given = (args.coordinator, args.num_processes, args.process_id)
    if args.num_processes is not None and args.num_processes < 1:
        raise UsageError(f"--num-processes must be >= 1, got {args.num_processes}")
    if args.process_id is not None and args.num_processes is not None:
        if not 0 <= args.process_id < args.num_processes:
            raise UsageError(f"--process-id must be in 0..{args.num_processes - 1}, got {args.process_id}")
    try:
        initialize(*given)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _configure_run(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, CONFIG_SHORTHANDS)
    parser.add_argument("--overwrite", action="store_true", help="replace a run with a different config")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_distributed_args(parser)


def _configure_lag_search(parser: argparse.ArgumentParser) -> None:
    from lrd.executors import EXECUTORS

    _add_config_args(parser, CONFIG_SHORTHANDS)
    parser.add_argument(
        "--overwrite", action="store_true", help="discard a previous search with another config"
    )
    parser.add_argument("--json", action="store_true", help="print lag_search.json instead of the table")
    parser.add_argument(
        "--executor",
        default="serial",
        choices=EXECUTORS,
        help="serial: one trial after another, here; ray: the whole sweep at once, then k-section, each trial a "
        "Ray task (one GPU each where there are GPUs); needs the [ray] extra",
    )
    parser.add_argument(
        "--ray-address", help="join this Ray cluster ('auto' or HOST:PORT; default: a local Ray started here)"
    )
    _add_distributed_args(parser)


Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Sequence[str]], int]]

# name -> (configure the parser, run)
COMMANDS: dict[str, Command] = {
    "train": (_configure_train, cmd_train),
    "run": (_configure_run, cmd_run),
    "lag-search": (_configure_lag_search, cmd_lag_search),
    "bench": (_configure_bench, cmd_bench),
    "grad-flow": (_configure_grad_flow, cmd_grad_flow),
    "list": (lambda parser: None, cmd_list),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lrd",
        description="long-range dependency learning experiments",
        epilog=f"config sections for --section.field overrides: {', '.join(SECTIONS)}; "
        "lrd COMMAND --help lists every field",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run) in COMMANDS.items():
        summary = (run.__doc__ or "").strip().splitlines()[0].replace("`", "")
        sub_parser = sub.add_parser(name, help=summary, description=summary)
        configure(sub_parser)
        sub_parser.set_defaults(run=run)
    return parser


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """``(args, dotted overrides)`` of a command line; unrecognised plain arguments are usage errors."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, extra


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrd`` console script."""
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args, extra) or 0)
    except (UsageError, FileNotFoundError) as err:  # FileNotFoundError: data a task needs is not prepared
        print(f"lrd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Preempted as err:
        print(f"lrd {args.command}: {err}", file=sys.stderr)
        return EXIT_PREEMPTED


if __name__ == "__main__":
    sys.exit(main())
