"""``make demo``: the classic result on a laptop CPU. A tanh RNN fails the adding problem at lags an LSTM solves.

Trains each model (bare setting: inputs -> one cell -> linear readout) on the Arjovsky et al. (2016) adding problem
at a few lags with the same step budget, then prints ``lag x model -> solved / final held-out MSE / steps to solve``
and writes the table as JSON lines (``--out``). Chance MSE is 1/6 ~ 0.167; solved means held-out MSE < 0.01.

    python -m lrd.demo                       # ~3-5 minutes on 2 CPU cores
    python -m lrd.demo --lags 25 50 --steps 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from lrd.models import build_model
from lrd.tasks.adding import Adding
from lrd.train import TrainSettings, train

DEFAULT_MODELS = ("rnn", "lstm")
DEFAULT_LAGS = (25, 50, 100)


def run_demo(
    models: Sequence[str] = DEFAULT_MODELS,
    lags: Sequence[int] = DEFAULT_LAGS,
    *,
    steps: int = 1500,
    hidden_size: int = 64,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Train every (model, lag) pair once with the same budget; return one row per pair."""
    rows = []
    for lag in lags:
        task = Adding(lag=lag)
        for name in models:
            model = build_model(name, task, hidden_size=hidden_size)
            settings = TrainSettings(
                steps=steps,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=seed,
                eval_every=100,
                eval_batch_size=1000,
            )
            _, summary = train(model, task, settings, progress=progress, description=f"{name:>5} lag={lag}")
            rows.append(
                {
                    "model": name,
                    "lag": lag,
                    "solved": bool(summary["solved"][0]),
                    "final_mse": float(summary["final_eval"]["loss"][0]),
                    "chance_mse": task.chance_loss,
                    "steps_to_solve": summary["steps_to_solve"][0],
                    "steps_run": summary["steps_run"],
                    "wall_time_s": round(summary["wall_time_s"], 1),
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    """``lag x model`` table: ``solved@steps`` or ``FAILED``, and the final held-out MSE."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    lags = list(dict.fromkeys(r["lag"] for r in rows))
    cell = {(r["lag"], r["model"]): r for r in rows}
    width = 26
    lines = ["adding problem (Arjovsky et al. 2016): chance MSE 0.167, solved = held-out MSE < 0.01", ""]
    lines.append(f"{'lag':>5} | " + " | ".join(f"{m:<{width}}" for m in models))
    lines.append("-" * (8 + (width + 3) * len(models)))
    for lag in lags:
        parts = []
        for m in models:
            r = cell[(lag, m)]
            status = f"solved @ {r['steps_to_solve']}" if r["solved"] else "FAILED"
            parts.append(f"{status:<14} mse={r['final_mse']:.4f}".ljust(width))
        lines.append(f"{lag:>5} | " + " | ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m lrd.demo [--models ...] [--lags ...] [--steps N] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m lrd.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--lags", nargs="+", type=int, default=list(DEFAULT_LAGS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the rows as JSON lines to this file")
    args = parser.parse_args(argv)
    if any(lag < 2 for lag in args.lags):
        parser.error(f"--lags must all be >= 2, got {args.lags}")
    t0 = time.perf_counter()
    rows = run_demo(args.models, args.lags, steps=args.steps, hidden_size=args.hidden_size, seed=args.seed)
    print()
    print(format_table(rows))
    print(f"\ntotal wall time: {time.perf_counter() - t0:.0f}s")
    if args.out:
        with open(args.out, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
