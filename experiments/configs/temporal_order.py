"""Temporal order (Hochreiter & Schmidhuber 1997, experiment 6a: the order of 2 marked symbols among
distractors, 4 classes; ``--task.options.num_marked 3`` is experiment 6b, 8 classes), one preset for every model:
``--config temporal_order:model=NAME`` (default ``lstm``).

Protocol: hidden 32, bare setting, batch 32, Adam 1e-3 clipped at 1, 3000 steps and 3 seeds per run, held-out
evaluation every 100 steps on 512 sequences; solved when held-out accuracy at the last step >= 0.99 (the paper's
criterion is an absolute error below 0.3 on every output unit, which a softmax readout at 99% accuracy is close to
but not the same). The lag search sweeps 10, 30, 100, 300, 1000, then bisects.

    lrd run --config temporal_order:model=lstm --workdir runs/to_lstm --lag 100
    lrd lag-search --config temporal_order:model=lstm --workdir runs/lag_search/to_lstm

Runtime on a 2-core CPU: minutes per run at lag 100 for the classic cells. GPU: not measured yet.
Expected result: the paper's LSTM solved 6a at T = 100 after 31,390 sequences (6b: 571,100); not measured with
this preset yet.
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
        model=ModelConfig(name=args["model"], hidden_size=32),
        task=TaskConfig(name="temporal_order", lag=100),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=3000, num_seeds=3, eval_every=100, checkpoint_every=500, eval_batch_size=512),
        search=SearchConfig(
            sweep=(10, 30, 100, 300, 1000), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
