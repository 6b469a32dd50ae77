"""The README's headline table from atlas files: the maximum learnable lag of each mixer on each task.

    python experiments/atlas_table.py experiments/results/atlas_adding_cpu2.json \
        experiments/results/atlas_copy_cpu2.json > /tmp/table.md

One row per mixer (in the order of the first file that has it), one column per task: the longest lag learnable under
that file's protocol with, in brackets, the first lag found unlearnable; ``>= L`` when every lag of the sweep was
learnable (``L`` its last), ``< L`` when the first lag tried (``L``) already failed, ``-`` when the mixer was not
searched (yet) on that task, and ``error`` for a search that failed. Then the parameter count and the state size
(real numbers one sequence carries from step to step; ``/ position`` for softmax attention, whose memory keeps that
much per position), both of the first task's model, and, per task, the gradient decay per step at initialisation and
after training, ``init -> trained`` (``grad_flow`` at the task's preset lag: slope of log |dL/dh_{T-k}| against k; 0
is no decay, positive is growth; trained: the model of the trial at the maximum learnable lag) and how close the
search came at the first unlearnable lag (the lowest final held-out loss of any seed at any rate, over the task's
chance loss: 1 is nothing learned; near 0, some member did solve it, but fewer than the protocol's fraction of a
rate's seeds). Under the table, each file's protocol in one line. Reads the files only: runtime well under a second."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def lag_cell(cell: dict[str, Any] | None) -> str:
    """The table entry of one (task, mixer) search."""
    if cell is None:
        return "-"
    if "error" in cell:  # the trials it finished before the error, if any
        finished = lag_cell({key: value for key, value in cell.items() if key != "error"})
        return "error" if finished == "-" else f"{finished}, then error"
    trials = cell.get("trials") or []
    best, fails = cell.get("max_learnable_lag"), cell.get("smallest_unlearnable_lag")
    if best is None:
        if not trials:
            return "-"
        return f"< {min(trial['lag'] for trial in trials)}"
    if fails is not None:
        return f"{best} ({fails})"
    return f">= {best}"  # every lag of the sweep was learnable (the atlas lists finished searches only)


def closest_failure(cell: dict[str, Any] | None) -> str:
    """``best final loss / chance`` over every member (seed x rate) at the first lag found unlearnable, ``-`` when
    none was (or the file has no per-trial detail)."""
    if not cell or "search" not in cell:
        return "-"
    fails = cell.get("smallest_unlearnable_lag")
    trial = next((t for t in cell["search"].get("trials", []) if t["lag"] == fails), None)
    if trial is None or not trial.get("chance_loss"):
        return "-"
    groups = trial.get("per_rate") or [{"seeds": trial.get("seeds", [])}]
    losses = [  # a member that diverged records "nan"
        loss
        for group in groups
        for seed in group["seeds"]
        if isinstance(loss := seed.get("final_loss"), (int, float)) and math.isfinite(loss)
    ]
    return f"{min(losses) / trial['chance_loss']:.2f}" if losses else "-"


def decay_cell(cell: dict[str, Any] | None) -> str:
    """``init -> trained``: the gradient's decay per step at initialisation and after training (files from
    before the trained one was recorded show the first alone)."""
    cell = cell or {}
    init, trained = cell.get("grad_slope_per_step_at_init"), cell.get("grad_slope_per_step_trained")
    text = "-" if init is None else f"{init:.3g}"
    return text if trained is None else f"{text} -> {trained:.3g}"


def state_cell(cell: dict[str, Any]) -> str:
    """The state size entry: ``-`` when not recorded (atlas files before it was), ``N / position`` for a memory
    that grows with the sequence."""
    size = cell.get("state_size")
    if size is None:
        return "-"
    return f"{size} / position" if cell.get("state_per_position") else str(size)


def protocol_line(atlas: dict[str, Any]) -> str:
    """One line stating a file's protocol: task, budget, seeds, rates, sweep, device."""
    parts = []
    for task, budget in atlas["protocol"]["budgets"].items():
        rates = ", ".join(f"{rate:g}" for rate in budget["learning_rates"])
        parts.append(
            f"{task}: hidden {budget['hidden_size']}, {budget['steps']} steps x batch {budget['batch_size']} per "
            f"lag, {budget['num_seeds']} seeds, learning rate {rates}, sweep {budget['sweep']} then "
            f"{budget['max_bisections']} bisection(s), learnable when >= {budget['solve_fraction']:g} of the seeds "
            "solve it"
        )
    return "; ".join(parts) + f" ({atlas.get('device', 'device not recorded')})"


def markdown(atlases: list[dict[str, Any]]) -> str:
    """The table (markdown) of every cell of ``atlases``."""
    tasks: list[str] = []
    mixers: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for atlas in atlases:
        for cell in atlas["cells"]:
            if cell["task"] not in tasks:
                tasks.append(cell["task"])
            mixers.setdefault(cell["mixer"], cell)
            cells[cell["task"], cell["mixer"]] = cell
    first_task = f" ({tasks[0]})" if tasks else ""
    header = ["mixer", "setting", f"params{first_task}", f"state{first_task}"]
    header += [f"{task}: max lag (fails at)" for task in tasks]
    header += [f"{task}: grad decay / step, init -> trained" for task in tasks]
    header += [f"{task}: best loss / chance where it fails" for task in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for mixer, first in mixers.items():
        sized = cells.get((tasks[0], mixer), {})
        row = [mixer, first["setting"], str(sized.get("params", "-")), state_cell(sized)]
        row += [lag_cell(cells.get((task, mixer))) for task in tasks]
        row += [decay_cell(cells.get((task, mixer))) for task in tasks]
        row += [closest_failure(cells.get((task, mixer))) for task in tasks]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"* {protocol_line(atlas)}" for atlas in atlases]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="atlas .json files (experiments/atlas.py --out)")
    args = parser.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        parser.exit(2, f"atlas_table: files {', '.join(missing)} do not exist\n")
    sys.stdout.write(markdown([json.loads(Path(f).read_text()) for f in args.files]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
