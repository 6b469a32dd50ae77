"""The ``lrd`` command line: ``lrd train | list`` (more subcommands register themselves in ``COMMANDS``).

Commands that take a config (``lrd run``, ``lrd lag-search``) also accept ``--section.field VALUE`` overrides.

Every subcommand validates its arguments before any compute; a bad value exits with status 2 and a message that
names the field and the allowed values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "COMMANDS"]


class UsageError(ValueError):
    """A user error: printed as ``lrd: error: ...`` and exit status 2."""


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lstm", help="mixer name or '+'-joined pattern (see `lrd list`)")
    parser.add_argument("--task", default="adding", help="task name (see `lrd list`)")
    parser.add_argument(
        "--lag", type=int, default=None, help="time lag / sequence length of the task (default: the task's)"
    )
    parser.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra task option, repeatable (e.g. --task-option min_lag=10); VALUE is parsed as JSON if it can be",
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--mode", default="bare", help="bare | block")
    parser.add_argument("--truncation", type=int, default=None, help="truncated-BPTT length (default: full)")
    parser.add_argument("--num-seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--no-early-stop", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def cmd_train(args: argparse.Namespace) -> int:
    """``lrd train``: one run (``num_seeds`` seeds vmapped), progress bar, then a summary."""
    from lrd.models import build_model
    from lrd.registry import build_task
    from lrd.train import TrainSettings, train

    if args.lag is not None and args.lag < 1:
        raise UsageError(f"--lag must be a positive int, got {args.lag}")
    if args.truncation is not None and args.truncation < 1:
        raise UsageError(f"--truncation must be a positive int, got {args.truncation}")
    task_options = parse_task_options(args.task_option)
    if args.lag is not None:
        task_options["lag"] = args.lag
    try:
        task = build_task(args.task, **task_options)
        prepare = getattr(task, "prepare", None)
        if callable(prepare):
            prepare()  # e.g. MNIST: fail now, with instructions, if the data is missing
        scan_options = {"truncation": args.truncation} if args.truncation else {}
        model = build_model(
            args.model,
            task,
            hidden_size=args.hidden_size,
            mode=args.mode,
            num_layers=args.num_layers,
            scan_options=scan_options,
        )
        settings = TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            clip_norm=args.clip_norm,
            num_seeds=args.num_seeds,
            seed=args.seed,
            eval_every=min(args.eval_every, args.steps) if args.steps > 0 else args.eval_every,
            early_stop=not args.no_early_stop,
        )
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    _, summary = train(model, task, settings, description=f"{args.model} {args.task} lag={task.seq_len}")
    summary["model"] = args.model
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def parse_task_options(items: Sequence[str]) -> dict:
    """``["min_lag=10", "variant=hochreiter"]`` -> ``{"min_lag": 10, "variant": "hochreiter"}``."""
    options = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--task-option must look like KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def format_summary(summary: dict) -> str:
    """A short human-readable summary of :func:`lrd.train.train`'s result."""
    task = summary["task"]
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


def cmd_list(args: argparse.Namespace) -> int:
    """``lrd list``: registered models and tasks."""
    from lrd.registry import get_mixer, get_task, mixer_names, task_names

    print("models:")
    for name in mixer_names():
        spec = get_mixer(name)
        print(f"  {name:<16} {spec.family:<10} {spec.description}")
    print("tasks:")
    for name in task_names():
        print(f"  {name:<16} {get_task(name).description}")
    return 0


# name -> (configure parser, run)
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": (_add_train_args, cmd_train),
    "list": (lambda parser: None, cmd_list),
}


def _register_optional_commands() -> None:
    """Subcommands living in other modules (added by later work) register through ``cli_commands()``."""
    import importlib

    for module_name in ("lrd.lag_search", "lrd.diagnostics", "lrd.bench", "lrd.runner"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        register = getattr(module, "cli_commands", None)
        if register is not None:
            COMMANDS.update(register())


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    _register_optional_commands()
    parser = argparse.ArgumentParser(prog="lrd", description="long-range dependency learning experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0])
        configure(sub_parser)
        sub_parser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrd`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return int(args.run(args) or 0)
    except UsageError as err:
        print(f"lrd {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
