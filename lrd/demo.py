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

from lrd.config import ConfigError, ExperimentConfig, ModelConfig, OptimConfig, RunConfig, TaskConfig
from lrd.runner import train_in_memory

DEFAULT_MODELS = ("rnn", "lstm")
DEFAULT_LAGS = (25, 50, 100)


def demo_configs(
    models: Sequence[str] = DEFAULT_MODELS,
    lags: Sequence[int] = DEFAULT_LAGS,
    *,
    steps: int = 1500,
    hidden_size: int = 64,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[ExperimentConfig]:
    """One validated config per (lag, model) pair, all with the same budget (a bad value fails here, at once)."""
    return [
        ExperimentConfig(
            model=ModelConfig(name=name, hidden_size=hidden_size),
            task=TaskConfig(name="adding", lag=lag),
            optim=OptimConfig(learning_rate=learning_rate, batch_size=batch_size),
            run=RunConfig(steps=steps, seed=seed, eval_every=100, eval_batch_size=1000),
        )
        for lag in lags
        for name in models
    ]


def run_demo(configs: Sequence[ExperimentConfig], *, progress: bool = True) -> list[dict]:
    """Train every config once (one seed); return one row per config."""
    rows = []
    for config in configs:
        summary = train_in_memory(config, progress=progress)
        rows.append(
            {
                "model": config.model.name,
                "lag": config.task.lag,
                "solved": bool(summary["solved"][0]),
                "final_mse": float(summary["final_eval"]["loss"][0]),
                "chance_mse": summary["chance_loss"],
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
    t0 = time.perf_counter()
    try:
        configs = demo_configs(
            args.models, args.lags, steps=args.steps, hidden_size=args.hidden_size, seed=args.seed
        )
    except ConfigError as err:
        parser.error(str(err))
    rows = run_demo(configs)
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
