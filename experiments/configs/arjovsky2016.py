"""Arjovsky, Shah & Bengio 2016 ("Unitary Evolution Recurrent Neural Networks"), the copy-memory and adding
experiments, for a reproduction: ``--config arjovsky2016:model=NAME,task=copy`` or ``task=adding`` (defaults:
``lstm``, copy).

Tasks as the paper states them: ``copy`` is :mod:`lrd.tasks.copy_memory` (10 symbols of 8, ``T`` blanks, the
delimiter, 10 blanks; memoryless baseline ``10 log 8 / (T + 20)``; solved at held-out recall accuracy 0.99),
``adding`` is :mod:`lrd.tasks.adding` ``variant="arjovsky"`` (length ``T``, values in [0, 1], one marker in each
half; baseline MSE 0.167; solved at MSE 0.01). The paper's lags: copy ``T`` = 100, 200, 300, 500; adding ``T`` =
100, 200, 400, 750 (``--lag``).

Training as the paper's code (``amarshah/complex_RNN``): batches of 20, RMSProp at 1e-3 (decay 0.9, accumulator
from 1e-3; ``optim.name="rmsprop"``), the bare setting (input -> one recurrent layer -> readout). Departures,
stated: gradients are clipped to global norm 1 for every model (the paper's code clips each gradient entry to
[-1, 1] for the LSTM and the tanh RNN and not at all for the uRNN); widths are this project's, chosen to match
parameter counts within 2x, not the paper's (hidden 40 here; ``experiments/reproduce.py`` passes
``--model.hidden_size`` per model from its ``ARJOVSKY_HIDDEN``; parameters at copy / adding: LSTM 40 8.6k / 6.9k,
GRU 48 9.1k / 7.5k, tanh RNN 80 8.1k / 6.7k, expRNN 80 8.1k / 6.7k, uRNN 256 6.2k on copy and 1024 7.2k on adding
-- the uRNN's parameters grow linearly with its width); 10,000 steps (200,000 sequences) and 2 seeds per run.

Commands (one run per model and lag; ``python experiments/reproduce.py arjovsky2016_copy`` runs them all and
writes the result file):
    lrd run --config arjovsky2016:model=urnn,task=copy --hidden-size 256 --lag 100 --workdir runs/repro/copy_urnn
    lrd run --config arjovsky2016:model=lstm,task=adding --lag 400 --workdir runs/repro/adding_lstm_400

Runtime on a 2-core CPU: a minute (T = 100, small cells) to about 20 minutes (T = 500 to 750) per run.
Expected result (the paper): on copy, the LSTM and the tanh RNN stay at the memoryless baseline except at the
shortest lag, while the uRNN reaches zero cost quickly at every ``T``; on adding, the LSTM and the uRNN learn at
every ``T`` (the uRNN later at short lags, sooner at long ones) and the tanh RNN fails beyond 100. Measured:
``experiments/results/arjovsky2016_{copy,adding}_cpu2.json`` and experiments/README.md.
"""

from lrd.config import (
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SearchConfig,
    TaskConfig,
    parse_config_arg,
)

LAGS = {"copy": (100, 200, 300, 500), "adding": (100, 200, 400, 750)}


def get_config(arg: str | None = None) -> ExperimentConfig:
    args = parse_config_arg(arg, model="lstm", task="copy")
    task = args["task"]
    if task not in LAGS:
        raise ConfigError(f"config argument task={task!r} is unknown; allowed values: {', '.join(LAGS)}")
    return ExperimentConfig(
        model=ModelConfig(name=args["model"], hidden_size=40, setting="bare"),
        task=TaskConfig(name=task, lag=LAGS[task][0]),
        optim=OptimConfig(name="rmsprop", learning_rate=1e-3, clip_norm=1.0, batch_size=20),
        run=RunConfig(steps=10_000, num_seeds=2, eval_every=250, checkpoint_every=1000, eval_batch_size=512),
        search=SearchConfig(sweep=LAGS[task], solve_fraction=0.5, max_bisections=0),
    )
