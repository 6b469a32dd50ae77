"""Reproductions of published long-lag results: every run of one reproduction, resumable, and one result file.

    python experiments/reproduce.py --list                                   # the reproductions and their runs
    python experiments/reproduce.py arjovsky2016_copy --out experiments/results/arjovsky2016_copy_cpu2.json
    python experiments/reproduce.py hochreiter1997_temporal_order --only 6a   # runs whose label contains "6a"
    python experiments/reproduce.py arjovsky2016_copy --table                # the result file as a markdown table

Each run is an ordinary resumable ``lrd run`` workdir, ``WORKDIR/NAME/LABEL`` (``--workdir``, default
``runs/repro``): the same command run again reads finished runs back and continues an unfinished one from its
checkpoint (a run started by hand with the printed command, in the same workdir, is picked up too). The result
file is rewritten after every run and holds every finished run of the reproduction (also those finished by an
earlier command or a concurrent one with another ``--only``): per run, the command, the paper's number, and per member (seed x learning
rate) the steps and sequences seen until solved (``null``: not solved within the budget) and the final held-out
metrics. Every config is built and checked before anything trains (a bad one: exit 2, nothing written).

The protocols, budgets and departures from the papers are in the presets' docstrings
(``experiments/configs/hochreiter1997_temporal_order.py``, ``experiments/configs/arjovsky2016.py``); runtimes
there too. ``--smoke`` shrinks every run to seconds (for the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from lrd.config import apply_overrides, load_config
from lrd.errors import ConfigError, Preempted
from lrd.metrics_log import environment, write_json
from lrd.runner import finished_summary, run_experiment

SMOKE = [
    "run.steps=4",
    "run.eval_every=2",
    "run.checkpoint_every=4",
    "run.eval_batch_size=8",
    "optim.batch_size=4",
]


@dataclasses.dataclass(frozen=True)
class Run:
    """One run: a preset (``spec``), ``section.field=value`` overrides, and the paper's number for it."""

    label: str
    spec: str
    overrides: tuple[str, ...]
    paper: str


@dataclasses.dataclass(frozen=True)
class Reproduction:
    title: str
    criterion: str
    runs: tuple[Run, ...]


# task -> model -> width: the paper's LSTM, tanh RNN and uRNN, with the GRU and expRNN (2019), at widths that
# match their parameter counts within 2x (a test checks it): copy 6.2k-9.1k, adding 6.7k-7.5k. The uRNN's count
# grows linearly with its width and its adding model has a 1-feature readout, so it needs 1024 units there.
ARJOVSKY_HIDDEN = {
    "copy": {"lstm": 40, "gru": 48, "rnn": 80, "exprnn": 80, "urnn": 256},
    "adding": {"lstm": 40, "gru": 48, "rnn": 80, "exprnn": 80, "urnn": 1024},
}


def _arjovsky(task: str) -> Reproduction:
    lags = load_config(f"arjovsky2016:task={task}").search.sweep  # the paper's lags for the task
    paper = {
        "copy": "LSTM and tanh RNN at the memoryless baseline except at the shortest T; uRNN to ~0 cost",
        "adding": "LSTM and uRNN learn at every T; tanh RNN fails beyond T = 100",
    }[task]
    runs = tuple(
        Run(
            f"{task}_{model}_{lag}",
            f"arjovsky2016:model={model},task={task}",
            (f"model.hidden_size={width}", f"task.lag={lag}"),
            paper,
        )
        for lag in lags
        for model, width in ARJOVSKY_HIDDEN[task].items()
    )
    criterion = {
        "copy": "held-out recall accuracy of the 10 symbols >= 0.99 (512 sequences, every 250 steps)",
        "adding": "held-out MSE < 0.01 (512 sequences, every 250 steps)",
    }[task]
    return Reproduction(f"Arjovsky, Shah & Bengio 2016, {task}", criterion, runs)


def _hochreiter1997_adding() -> Reproduction:
    """Experiment 4 at T = 100 under five protocols (the preset, a rate grid, 32 cells, online updates, forget
    bias 5 at two budgets), then T = 500 and 1000 with forget bias 5, the only protocol that solved T = 100."""
    spec = "hochreiter1997_adding"
    paper = {100: "74,000", 500: "209,000", 1000: "853,000"}
    fb5 = "model.options.lstm.forget_bias=5"

    def run(label: str, lag: int, *overrides: str) -> Run:
        return Run(
            label, spec, (f"task.lag={lag}", *overrides), f"{paper[lag]} sequences until solved (mean)"
        )

    return Reproduction(
        "Hochreiter & Schmidhuber 1997, experiment 4 (adding, T = 100, 500, 1000)",
        "every one of 2000 held-out sequences with absolute error < 0.04 (evaluated every eval_every steps)",
        (
            run("100", 100, "run.steps=7000"),
            run("100_rates", 100, "run.steps=7000", "optim.learning_rate=1e-3,3e-3,3e-2"),
            run("100_h32", 100, "run.steps=7000", "model.hidden_size=32", "optim.learning_rate=1e-3,3e-3"),
            run(
                "100_online",
                100,
                "run.steps=222000",
                "optim.batch_size=1",
                "run.eval_every=2000",
                "run.checkpoint_every=10000",
                "optim.learning_rate=1e-3,1e-2",
            ),
            run("100_fb5", 100, "run.steps=7000", fb5, "optim.learning_rate=3e-3,1e-2"),
            run("100_fb5_long", 100, "run.steps=20000", fb5, "optim.learning_rate=1e-3,3e-3"),
            run("500_fb5", 500, "run.steps=20000", fb5, "optim.learning_rate=1e-3,3e-3"),
            run("1000_fb5", 1000, "run.steps=80000", fb5, "optim.learning_rate=1e-3,3e-3"),
        ),
    )


def reproductions() -> dict[str, Reproduction]:
    """Every reproduction this script knows, by name."""
    h97 = "hochreiter1997_temporal_order"
    return {
        "hochreiter1997_adding": _hochreiter1997_adding(),
        h97: Reproduction(
            "Hochreiter & Schmidhuber 1997, experiments 6a and 6b (temporal order, T = 100)",
            "every one of 2000 held-out sequences classified correctly (evaluated every 100 steps)",
            (
                Run("6a", h97, ("run.steps=3000",), "31,390 sequences until solved (mean)"),
                Run(
                    "6a_rates",
                    h97,
                    ("run.steps=30000", "optim.learning_rate=1e-3,3e-3,1e-2,3e-2"),
                    "31,390 sequences until solved (mean)",
                ),
                Run(
                    "6a_forget_bias_5",
                    h97,
                    (
                        "model.options.lstm.forget_bias=5",
                        "run.steps=30000",
                        "optim.learning_rate=1e-3,3e-3,1e-2",
                    ),
                    "31,390 sequences until solved (mean)",
                ),
                Run(
                    "6b",
                    h97,
                    (
                        "model.hidden_size=6",
                        "task.options.num_marked=3",
                        "run.steps=54000",
                        "optim.learning_rate=1e-3,3e-3,1e-2",
                    ),
                    "571,100 sequences until solved (mean)",
                ),
            ),
        ),
        "arjovsky2016_copy": _arjovsky("copy"),
        "arjovsky2016_adding": _arjovsky("adding"),
    }


def command(run: Run, workdir: Path) -> str:
    """The ``lrd run`` command line of ``run``."""
    flags = " ".join(f"--{key} {value}" for key, _, value in (o.partition("=") for o in run.overrides))
    return f"lrd run --config {run.spec} --workdir {workdir} {flags}".rstrip()


def members(summary: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """Per member (rate-major, then seed): steps and sequences until solved, and the final held-out metrics."""
    rates, num_seeds = summary["learning_rates"], summary["num_seeds"]
    rows = []
    for index, steps in enumerate(summary["steps_to_solve"]):
        rate_index, seed = divmod(index, num_seeds)
        rows.append(
            {
                "seed": seed,
                "learning_rate": rates[rate_index],
                "steps_to_solve": steps,
                "sequences_to_solve": None if steps is None else steps * batch_size,
                "final_eval": {name: values[index] for name, values in summary["final_eval"].items()},
            }
        )
    return rows


def run_record(run: Run, config, workdir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The result-file entry of one finished run."""
    rows = members(summary, config.optim.batch_size)
    return {
        "label": run.label,
        "command": command(run, workdir),
        "paper": run.paper,
        "model": config.model.name,
        "hidden_size": config.model.hidden_size,
        "lag": config.task.lag,
        "seq_len": summary["seq_len"],
        "optimizer": config.optim.name,
        "batch_size": config.optim.batch_size,
        "steps_budget": config.run.steps,
        "steps_run": summary["steps_run"],
        "wall_time_s": summary["wall_time_s"],
        "chance_loss": summary["chance_loss"],
        "solved_members": sum(row["steps_to_solve"] is not None for row in rows),
        "members": rows,
    }


def table(result: dict[str, Any]) -> str:
    """A result file as markdown: one row per finished run (model, width, lag, chance loss) with, per member
    (``rate/seed``), the sequences seen until solved or ``-``, and the final held-out loss and, where the task has
    them, accuracies. Then the paper's number per run."""
    lines = [
        f"{result['title']}; solved: {result['criterion']}",
        "",
        "| run | model (hidden) | lag | chance loss | solved | per member: sequences to solve; final held-out metrics |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    papers: dict[str, list[str]] = {}
    for run in result["runs"]:
        members = []
        for member in run["members"]:
            seen = member["sequences_to_solve"]
            metrics = ", ".join(  # a diverged member's metrics are the strings "nan" / "inf"
                f"{name} {value:.3g}" if isinstance(value, (int, float)) else f"{name} {value}"
                for name, value in sorted(member["final_eval"].items())
            )
            members.append(
                f"{member['learning_rate']:g}/{member['seed']}: {'-' if seen is None else f'{seen:,}'}; {metrics}"
            )
        lines.append(
            f"| {run['label']} | {run['model']} ({run['hidden_size']}) | {run['lag']} | {run['chance_loss']:.3g} | "
            f"{run['solved_members']}/{len(run['members'])} | {'<br>'.join(members)} |"
        )
        papers.setdefault(run["paper"], []).append(run["label"])
    lines.append("")
    lines += [f"* paper ({', '.join(labels)}): {paper}" for paper, labels in papers.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    known = reproductions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(known)}")
    parser.add_argument("--out", help="result file (.json); default experiments/results/NAME_cpu2.json")
    parser.add_argument("--workdir", default="runs/repro", help="root of the runs' workdirs")
    parser.add_argument("--only", help="run only the runs whose label contains this")
    parser.add_argument("--list", action="store_true", help="print the reproductions and their commands")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (seconds), for tests")
    parser.add_argument(
        "--table", action="store_true", help="print the result file as markdown; train nothing"
    )
    args = parser.parse_args(argv)
    root = Path(args.workdir)
    if args.list:
        for name, repro in known.items():
            print(f"{name}: {repro.title}")
            for run in repro.runs:
                print(f"  {run.label:<22} {command(run, root / name / run.label)}")
        return 0
    if args.name not in known:
        parser.exit(2, f"reproduce: name {args.name!r} is unknown; allowed values: {', '.join(known)}\n")
    repro = known[args.name]
    out = Path(args.out or f"experiments/results/{args.name}_cpu2.json")
    if args.table:
        if args.only is not None or args.smoke:
            parser.exit(2, "reproduce: --table prints a whole result file; it takes no --only or --smoke\n")
        if not out.is_file():
            parser.exit(2, f"reproduce: --out {str(out)!r} does not exist (run the reproduction first)\n")
        try:
            result = json.loads(out.read_text())
        except json.JSONDecodeError as err:
            parser.exit(2, f"reproduce: --out {str(out)!r} is not JSON ({err})\n")
        if result.get("reproduction") != args.name:
            found = result.get("reproduction")
            parser.exit(2, f"reproduce: --out {str(out)!r} holds {found!r}, not {args.name!r}\n")
        sys.stdout.write(table(result))
        return 0
    runs = [run for run in repro.runs if args.only is None or args.only in run.label]
    if not runs:
        labels = ", ".join(run.label for run in repro.runs)
        parser.exit(2, f"reproduce: --only {args.only!r} matches no run; the runs: {labels}\n")
    try:
        configs = {
            run.label: apply_overrides(
                load_config(run.spec),
                [
                    *run.overrides,
                    *(SMOKE if args.smoke else []),
                    f"run.workdir={root / args.name / run.label}",
                ],
            )
            for run in repro.runs
        }
    except ConfigError as err:
        parser.exit(2, f"reproduce: {err}\n")
    if not out.parent.is_dir():
        parser.exit(2, f"reproduce: --out {str(out)!r}: its folder does not exist\n")

    result = {
        "reproduction": args.name,
        "title": repro.title,
        "criterion": repro.criterion,
        "environment": environment(),
        "runs": [],
    }
    for run in runs:
        config = configs[run.label]
        started = time.time()
        print(f"[reproduce] {run.label}: {command(run, Path(config.run.workdir))}", flush=True)
        try:
            summary = run_experiment(config, description=run.label)
        except Preempted as err:
            print(f"[reproduce] stopped: {err}; run the same command again to continue", file=sys.stderr)
            return 1
        # every finished run of the reproduction, this one and those of earlier (or concurrent --only) commands
        result["runs"] = [
            run_record(r, configs[r.label], Path(configs[r.label].run.workdir), done)
            for r in repro.runs
            if (done := finished_summary(configs[r.label])) is not None
        ]
        write_json(out, result)
        record = run_record(run, config, Path(config.run.workdir), summary)
        print(
            f"[reproduce] {run.label}: solved {record['solved_members']}/{len(record['members'])} members, "
            f"sequences to solve {[m['sequences_to_solve'] for m in record['members']]} "
            f"(paper: {run.paper}); {time.time() - started:.0f} s",
            flush=True,
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
