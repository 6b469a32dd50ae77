"""The model-zoo table: each registered mixer's parameter count at d_model = 64, next to its training speed.

Command (the speed column comes from a `lrd bench` run given as input):
    lrd bench --models all --d-model 64 --seq-len 1024 --batch-size 16 --repeats 3 --warmup 1 --no-variants \
        --peer lstm --out experiments/results/bench_T1024_d64_cpu2.json
    python experiments/zoo_table.py experiments/results/bench_T1024_d64_cpu2.json > experiments/results/zoo_d64.csv

`mixer_params` counts the mixer alone with 64 inputs and 64 outputs (the layer as it sits in a d_model = 64 block).
`bench_*` columns are those of the bench file: a bare model (adding input, 2 features -> mixer(64) -> readout),
batch 16, T = 1024, one fwd+bwd step; `vs_lstm` is the time of a step relative to the LSTM's, measured in the same
run. Runtime: a few seconds (initialisation only).
"""

import csv
import json
import sys

import jax
import jax.numpy as jnp

from lrd.models import count_params
from lrd.registry import build_mixer, get_mixer, mixer_names


def main(bench_path: str) -> None:
    bench = {row["mixer"]: row for row in json.load(open(bench_path))["rows"] if row["variant"] == "default"}
    writer = csv.writer(sys.stdout)
    writer.writerow(["mixer", "family", "mixer_params", "bench_model_params", "bench_steps_per_s", "vs_lstm"])
    for name in mixer_names():
        params = build_mixer(name, 64).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 64)))["params"]
        row = bench.get(name, {})
        writer.writerow(
            [
                name,
                get_mixer(name).family,
                count_params(params),
                row.get("params", ""),
                f"{row['steps_per_s']:.2f}" if row else "",
                f"{row['vs_peer']:.2f}" if row else "",
            ]
        )


if __name__ == "__main__":
    main(sys.argv[1])
