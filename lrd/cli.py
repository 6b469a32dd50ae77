"""The ``lrd`` command line, one front door: ``lrd train | run | lag-search | bench | list``.

Every command that trains or measures builds one validated :class:`lrd.config.ExperimentConfig`, always the same
way (:func:`config_from_args`):

1. the base config: ``--config FILE[:ARG]`` (a ``.py`` file or a preset of ``experiments/configs``, e.g.
   ``--config adding:model=gru``), else the command's defaults;
2. the command's shorthand flags, each exactly one dotted override (``--lag 200`` is ``--task.lag 200``; the
   table is :data:`CONFIG_SHORTHANDS` / :data:`BENCH_SHORTHANDS`, and ``lrd COMMAND --help`` prints it);
3. dotted overrides ``--section.field VALUE`` (or ``--section.field=VALUE``) for any field of any section,
   ``--model.options.MIXER.OPTION VALUE`` and ``--task.options.KEY VALUE`` for single entries.

A field given twice is an error. Values are parsed by the field's type and validated by the config, so a mistake
gets the same one-line message from every command, names the field and the allowed values, and exits with status 2
before any compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
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
from lrd.errors import ConfigError, NumericalFault, UsageError

__all__ = [
    "main",
    "build_parser",
    "parse",
    "config_from_args",
    "Shorthand",
    "CONFIG_SHORTHANDS",
    "BENCH_SHORTHANDS",
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
        "--models",
        "bench.models",
        "comma-separated mixer names, or 'all' (see `lrd list`)",
        convert=lambda value: "" if value.strip() == "all" else value,
    ),
    Shorthand("--d-model", "model.hidden_size", "hidden size of the benchmarked model"),
    Shorthand("--seq-len", "task.lag", "sequence length T (the task's lag)"),
    Shorthand("--batch-size", "optim.batch_size"),
    Shorthand("--repeats", "bench.repeats", "timed repetitions per measurement"),
    Shorthand("--warmup", "bench.warmup", "untimed repetitions first (compile, caches)"),
    Shorthand("--peer", "bench.peer", "mixer the 'vs peer' column divides by"),
    Shorthand("--no-variants", "bench.variants", "registered defaults only, not every scan_mode", "false"),
    Shorthand("--seed", "run.seed"),
)


# ----------------------------------------------------------------------------------------------------------------
# Building the config.


def _add_config_args(parser: argparse.ArgumentParser, shorthands: Sequence[Shorthand]) -> None:
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE[:ARG]",
        help="config file (defining get_config(arg)) or preset name of experiments/configs, e.g. adding:model=gru",
    )
    group = parser.add_argument_group(
        "shorthands", "each flag is one dotted override: --section.field VALUE works for every field"
    )
    for shorthand in shorthands:
        help_text = f"= --{shorthand.key}" + (f" {shorthand.constant}" if shorthand.constant else "")
        if shorthand.entries:
            help_text = f"= --{shorthand.key}.KEY VALUE"
        help_text += f": {shorthand.help}" if shorthand.help else ""
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
    for i, solved in enumerate(summary["solved"]):
        metrics = ", ".join(f"{k}={v[i]:.4g}" for k, v in summary["final_eval"].items())
        when = summary["steps_to_solve"][i]
        status = f"solved at step {when}" if solved or when is not None else "not solved"
        lines.append(f"seed {i}: {status}; held-out {metrics}")
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
        return 3
    _print_summary(summary, args.json)
    if not args.json:
        print(f"results in {summary['workdir']}")
    return 0


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd run``: train a config in a workdir (resumes if interrupted); checkpoints, metrics, summary."""
    config = config_from_args(args, extra)
    if config.run.workdir is None:
        raise ConfigError("run.workdir is required (e.g. --workdir runs/adding_lstm)")
    return _run_in_workdir(config, args)


def cmd_lag_search(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``lrd lag-search``: the maximum learnable lag (geometric sweep, then bisection); resumable."""
    from lrd.lag_search import format_result, lag_search

    config = config_from_args(args, extra)
    if config.run.workdir is None:
        config = config.replace(run={"workdir": f"runs/lag_search/{config.model.name}_{config.task.name}"})
    result = lag_search(config, overwrite=args.overwrite)
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    print(f"results in {config.run.workdir}/lag_search.json and lag_search.png")
    return 0


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, BENCH_SHORTHANDS)
    parser.add_argument("--out", default=None, help="write the rows to this .json or .csv file")


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
    config = config_from_args(args, extra, base=default_config, prepare=_bench_model_pattern)
    result = run_bench(config, log=lambda line: print(line, file=sys.stderr))
    print(format_table(result))
    if args.out:
        write_results(result, args.out)
        print(f"wrote {args.out}")
    return 0


def _format_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def mixer_option_lines(name: str) -> list[str]:
    """``lrd list``'s description of the options of mixer ``name``: scan modes, then every option's default."""
    from lrd.cells.base import scan_modes
    from lrd.registry import get_mixer, mixer_defaults

    cls = get_mixer(name).cls
    defaults = mixer_defaults(name)
    lines = []
    modes = scan_modes(cls)
    if modes:
        default = defaults["scan_mode"]
        lines.append("scan_mode: " + " | ".join(f"{m}{' (default)' if m == default else ''}" for m in modes))
    only = dict(getattr(cls, "OPTION_SCAN_MODES", {}))
    options = []
    for option, value in defaults.items():
        if option == "scan_mode":
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
    from lrd.registry import get_mixer, get_task, mixer_names, task_names

    indent = " " * 30
    print("models (set an option with --model.options.NAME.OPTION VALUE):")
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


def _configure_run(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, CONFIG_SHORTHANDS)
    parser.add_argument("--overwrite", action="store_true", help="replace a run with a different config")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _configure_lag_search(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, CONFIG_SHORTHANDS)
    parser.add_argument(
        "--overwrite", action="store_true", help="discard a previous search with another config"
    )
    parser.add_argument("--json", action="store_true", help="print lag_search.json instead of the table")


Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Sequence[str]], int]]

# name -> (configure the parser, run)
COMMANDS: dict[str, Command] = {
    "train": (_configure_train, cmd_train),
    "run": (_configure_run, cmd_run),
    "lag-search": (_configure_lag_search, cmd_lag_search),
    "bench": (_configure_bench, cmd_bench),
    "list": (lambda parser: None, cmd_list),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lrd",
        description="long-range dependency learning experiments",
        epilog=f"config sections for --section.field overrides: {', '.join(SECTIONS)}",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
