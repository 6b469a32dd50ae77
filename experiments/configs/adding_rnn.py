"""Elman RNN (tanh) on the adding problem (Arjovsky et al. 2016 variant: values in [0, 1], target X1 + X2, chance MSE 0.167).

Train at one lag (``task.lag``):
    lrd run --config adding_rnn --workdir runs/adding_rnn
Search the maximum learnable lag (sweep 10, 20, 50, ... then bisection; 1500 steps x 2 seeds per lag):
    lrd lag-search --config adding_rnn --workdir runs/lag_search/adding_rnn

Runtime: `lrd run` at lag 100 takes under a minute on a 2-core CPU (1500 steps x 2 seeds; it runs the whole budget because it fails).
The lag search took 87 s on the same CPU. GPU: not measured yet.

Expected result (measured, experiments/results/lag_search_adding_rnn_cpu2.json): not solved at lag 100; the lag
search gives a maximum learnable lag of 40 (one of two seeds solves 32 and 40, neither solves 45 or 50).
"""

from lrd.config import ExperimentConfig, ModelConfig, OptimConfig, RunConfig, SearchConfig, TaskConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(name="rnn", hidden_size=64),
        task=TaskConfig(name="adding", lag=100),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=1500, num_seeds=2, eval_every=100, checkpoint_every=500, eval_batch_size=512),
        search=SearchConfig(
            sweep=(10, 20, 50, 100, 200, 500, 1000), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
