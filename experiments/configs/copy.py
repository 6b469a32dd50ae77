"""Copy memory (Arjovsky et al. 2016: recall 10 of 8 symbols after ``lag`` blanks; chance loss
``10 log 8 / (lag + 20)``; solved when held-out recall accuracy >= 0.99), one preset for every model:
``--config copy:model=NAME`` (any mixer or ``+``-pattern of ``lrd list``; default ``lstm``).

Protocol: hidden 128, bare setting, batch 64, Adam 1e-3 clipped at 1, 3000 steps and 2 seeds per run, held-out
evaluation every 100 steps on 512 sequences. The lag search sweeps 5, 10, 20, 50, 100, 200, then bisects.

Train at one lag (``task.lag``, 20 here):
    lrd run --config copy:model=rnn --workdir runs/copy_rnn
Search the maximum learnable lag:
    lrd lag-search --config copy:model=lstm --workdir runs/lag_search/copy_lstm

Runtime: 3000 steps at lag 20 take a few minutes on a 2-core CPU for rnn, lstm or gru. GPU: not measured yet.

Expected result: not measured with this exact preset yet, for any model. The closest run we have: an LSTM with
hidden size 128 solved the variable-lag copy task (lags 2 to 10) in 3500 steps. Copy is much harder than adding for
gated RNNs at equal lag (each of the 10 symbols must be stored exactly), so expect a much smaller max lag than on
adding.
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
        model=ModelConfig(name=args["model"], hidden_size=128),
        task=TaskConfig(name="copy", lag=20),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=64),
        run=RunConfig(steps=3000, num_seeds=2, eval_every=100, checkpoint_every=500, eval_batch_size=512),
        search=SearchConfig(
            sweep=(5, 10, 20, 50, 100, 200), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
