"""The adding problem (Arjovsky et al. 2016 variant: values in [0, 1], target X1 + X2, chance MSE 0.167), one preset
for every model: ``--config adding:model=NAME`` (any mixer or ``+``-pattern of ``lrd list``; default ``lstm``).

Protocol: hidden 64, bare setting, batch 32, Adam 1e-3 clipped at 1, 1500 steps and 2 seeds (vmapped) per run,
held-out evaluation every 100 steps on 512 sequences; solved when held-out MSE < 0.01. The lag search sweeps
10, 20, 50, 100, 200, 500, 1000, then bisects (3 steps, resolution 10%); a lag is learnable when at least 1 of the
2 seeds solves it.

Train at one lag (``task.lag``, 100 here):
    lrd run --config adding:model=lstm --workdir runs/adding_lstm
Search the maximum learnable lag:
    lrd lag-search --config adding:model=lstm --workdir runs/lag_search/adding_lstm

Runtime and Expected result on a 2-core CPU (GPU: not measured yet), per model:

* ``rnn`` (tanh Elman): `lrd run` at lag 100 takes under a minute (it fails, so it runs the whole budget); the lag
  search took 87 s. Measured (experiments/results/lag_search_adding_rnn_cpu2.json): not solved at lag 100;
  maximum learnable lag 40 (one of two seeds solves 32 and 40, neither solves 45 or 50).
* ``lstm``: `lrd run` at lag 100 takes about 1 minute (both seeds solve it by step 1300); the lag search took
  9.5 minutes, shared with other jobs. Measured (experiments/results/lag_search_adding_lstm_cpu2.json): both
  seeds solve lags 10 to 100 (at 200, 300, 1000 and about 1250 steps); one of two seeds solves 141 and 168;
  neither solves 183 or 200 in 1500 steps. Maximum learnable lag 168, against 40 for the tanh RNN.
* ``gru``: `lrd run` at lag 100 takes under a minute (both seeds solve it, at steps 500 and 700); the lag search
  took 24 minutes (shared with other jobs). Measured (experiments/results/lag_search_adding_gru_cpu2.json): both
  seeds solve lags 10 to 200; one of two seeds solves 500, 707 and 771; neither solves 841 or 1000. Maximum
  learnable lag 771, 4.6x the LSTM's.
* ``mingru`` with ``--setting block`` (one pre-norm residual block with an MLP): the lag search took 48 minutes
  (niced, beside other work). Measured (experiments/results/lag_search_adding_mingru_block_cpu2.json): both seeds
  solve every lag of the sweep, 10 to 1000 (lag 1000 at steps 600 and 800); its maximum lies above 1000. In the
  bare setting minGRU, minLSTM, S5 and a one-layer IndRNN fail at lag 10.
* any other mixer: not measured with this preset yet.
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
        model=ModelConfig(name=args["model"], hidden_size=64),
        task=TaskConfig(name="adding", lag=100),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=1500, num_seeds=2, eval_every=100, checkpoint_every=500, eval_batch_size=512),
        search=SearchConfig(
            sweep=(10, 20, 50, 100, 200, 500, 1000), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
