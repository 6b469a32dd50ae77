"""LSTM on the adding problem (Arjovsky et al. 2016 variant: values in [0, 1], target X1 + X2, chance MSE 0.167).

Train at one lag (``task.lag``):
    lrd run --config adding_lstm --workdir runs/adding_lstm
Search the maximum learnable lag (sweep 10, 20, 50, ... then bisection; 1500 steps x 2 seeds per lag):
    lrd lag-search --config adding_lstm --workdir runs/lag_search/adding_lstm

Runtime: `lrd run` at lag 100 takes about 1 minute on a 2-core CPU (both seeds solve it by step 1300).
The lag search took 9.5 minutes on the same CPU, shared with other jobs. GPU: not measured yet.

Expected result (measured, experiments/results/lag_search_adding_lstm_cpu2.json): both seeds solve lags 10 to 100
(at 200, 300, 1000 and about 1250 steps); one of two seeds solves 141 and 168; neither solves 183 or 200 in 1500
steps. So the maximum learnable lag is 168, against 40 for the tanh RNN (adding_rnn) under the same protocol.
"""

from lrd.config import ExperimentConfig, ModelConfig, OptimConfig, RunConfig, SearchConfig, TaskConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(name="lstm", hidden_size=64),
        task=TaskConfig(name="adding", lag=100),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=1500, num_seeds=2, eval_every=100, checkpoint_every=500, eval_batch_size=512),
        search=SearchConfig(
            sweep=(10, 20, 50, 100, 200, 500, 1000), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
