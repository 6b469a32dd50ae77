"""Selective copying (Gu & Dao 2023: 16 tokens scattered in a data region of ``lag`` steps, reproduced in order
after it), one preset for every model: ``--config selective_copy:model=NAME`` (default ``lstm``).

Protocol: hidden 64, block setting (one pre-norm residual block with an MLP: the task needs content-based
selection, which the modern layers do in blocks), batch 32, Adam 1e-3 clipped at 1, 4000 steps and 3 seeds per
run, held-out evaluation every 200 steps on 512 sequences; solved when held-out per-token recall accuracy >= 0.99.
The lag search sweeps 16, 32, 64, 128, 256, 512, then bisects.

    lrd run --config selective_copy:model=mamba2 --workdir runs/sc_mamba2 --lag 64
    lrd lag-search --config selective_copy:model=selective_ssm --workdir runs/lag_search/sc_s6

Runtime on a 2-core CPU: several minutes per run at lag 64. GPU: not measured yet.
Expected result: not measured with this preset yet; Gu & Dao report that input-dependent (selective) layers solve
the task where time-invariant ones (S4D, LRU) do not.
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
        model=ModelConfig(name=args["model"], hidden_size=64, setting="block"),
        task=TaskConfig(name="selective_copy", lag=64),
        optim=OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0, batch_size=32),
        run=RunConfig(steps=4000, num_seeds=3, eval_every=200, checkpoint_every=1000, eval_batch_size=512),
        search=SearchConfig(
            sweep=(16, 32, 64, 128, 256, 512), solve_fraction=0.5, resolution=0.1, max_bisections=3
        ),
    )
