"""Hochreiter & Schmidhuber 1997, experiments 6a and 6b (temporal order, as the paper states them), for a
reproduction: ``--config hochreiter1997_temporal_order:model=NAME`` (default ``lstm``; 6a), with
``--task.options.num_marked 3`` for 6b.

The task is :mod:`lrd.tasks.temporal_order` (checked against the paper's rules: lengths ``T .. T + T/10``, ``E``
first and ``B`` last, marked positions 10..20 and 50..60 (6a) or 10..20, 33..43, 66..76 (6b) at ``T = 100``). The
model is the paper's scale, bare setting: an LSTM of 4 cells for 6a (the paper: 2 memory-cell blocks of size 2) and
6 for 6b (3 blocks of size 2) -- pass ``--hidden-size 6`` for 6b. Criterion, as close to the paper's as a softmax
readout allows: solved when every one of 2000 held-out sequences is classified correctly (accuracy 1.0; the paper
stops when the last 2000 training sequences are all classified correctly with a mean error below 0.1).
Departures from the paper, stated: this LSTM has a forget gate (bias 1; the 1997 cell had none), a softmax
readout with cross-entropy instead of sigmoid outputs with squared error, and Adam 1e-2 on batches of 32 instead
of online gradient descent; the budget is about 3x the paper's sequences-to-solve (steps x 32 sequences).

Commands (paper: sequences seen until solved, mean over runs; 6a: 31,390; 6b: 571,100):
    lrd run --config hochreiter1997_temporal_order --workdir runs/repro/h97_to_6a --steps 3000
    lrd run --config hochreiter1997_temporal_order --workdir runs/repro/h97_to_6b --hidden-size 6 \\
        --task.options.num_marked 3 --steps 54000 --optim.learning_rate 1e-3,3e-3,1e-2
``summary.json``'s ``steps_to_solve`` x 32 is the sequences seen until solved, per seed.

Runtime on a 2-core CPU: 6a's 3000 steps take under a minute; 6b's 54,000 steps about 20 minutes. Expected result:
the paper's LSTM solved both; measured: ``experiments/results/hochreiter1997_temporal_order_cpu2.json`` and
experiments/README.md.
"""

from lrd.config import (
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SearchConfig,
    TaskConfig,
    parse_config_arg,
)


def get_config(arg: str | None = None) -> ExperimentConfig:
    args = parse_config_arg(arg, model="lstm")
    return ExperimentConfig(
        model=ModelConfig(name=args["model"], hidden_size=4),
        task=TaskConfig(name="temporal_order", lag=100, options={"accuracy_threshold": 1.0}),
        optim=OptimConfig(name="adam", learning_rate=1e-2, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=3000, num_seeds=3, eval_every=100, checkpoint_every=1000, eval_batch_size=2000),
        search=SearchConfig(sweep=(100,), solve_fraction=0.5, max_bisections=0),
    )
