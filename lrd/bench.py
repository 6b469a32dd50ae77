"""``lrd bench``: parameter count, training throughput and forward+backward time per mixer, side by side.

For each requested mixer (``bench.models``, default all) and, with ``bench.variants``, each of its ``scan_mode``
values (its equivalent algorithms, :func:`lrd.cells.base.scan_modes`), the benchmark builds the model of the
config (by default the *bare* :class:`lrd.models.SequenceModel` on the adding task at length ``T = task.lag``
with ``hidden_size = d_model``) and measures, in one process:

* ``params``: number of trainable scalars (complex counts twice);
* ``steps_per_s``: full training steps per second (fresh batch sampled on device, loss, gradients, clipped
  Adam update), the loop the experiments run;
* ``fwd_bwd_ms``: median wall time of one ``jax.grad`` of the loss on a fixed batch;
* ``compile_s``: the time to lower and compile that gradient;
* ``temp_mib``: the compiler's temporary-buffer estimate for that gradient (``memory_analysis``), where the
  backend reports it; activation memory grows with ``T`` here;
* ``while_loops``: the ``while`` loops in the lowered (StableHLO) forward+backward program: the sequential loops
  over time (a ``lax.scan`` forward and its backward), 0 for a fully parallel form;
* ``vs_peer``: ``fwd_bwd_ms`` relative to a peer mixer (``bench.peer``, default ``lstm``) measured in the same
  process.

Every compiled function is warmed up before timing and every timed call ends in ``block_until_ready``, so
asynchronous dispatch never hides work. The table states the device and the jax/flax versions; ``--out`` writes
the same rows as JSON (``.json``) or CSV (``.csv``).

Example (the numbers of the model-zoo note)::

    lrd bench --d-model 64 --seq-len 1024 --batch-size 16 --out bench_T1024.csv
    lrd bench --models lstm,lru,attention --seq-len 256,1024,4096 --out cost_vs_length.json
"""

from __future__ import annotations

import csv
import functools
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax

from lrd.config import ExperimentConfig
from lrd.metrics_log import environment
from lrd.preflight import check_memory

__all__ = [
    "default_config",
    "mixer_variants",
    "mixer_config",
    "bench_mixer",
    "run_bench",
    "format_table",
    "write_results",
]

COLUMNS = (
    "mixer",
    "family",
    "variant",
    "seq_len",
    "params",
    "steps_per_s",
    "fwd_bwd_ms",
    "compile_s",
    "temp_mib",
    "while_loops",
    "vs_peer",
    "error",
)


def default_config() -> ExperimentConfig:
    """The base config of ``lrd bench`` without ``--config``: bare model, d_model 64, adding at T=1024, batch 16."""
    return ExperimentConfig().replace(task={"lag": 1024}, optim={"batch_size": 16})


def mixer_variants(name: str) -> list[dict[str, Any]]:
    """The option sets benchmarked side by side for mixer ``name``: one per ``scan_mode`` value, or ``[{}]``."""
    from lrd.cells.base import scan_modes
    from lrd.registry import get_mixer

    modes = scan_modes(get_mixer(name).cls)
    return [{"scan_mode": mode} for mode in modes] if modes else [{}]


def mixer_config(config: ExperimentConfig, name: str, options: dict[str, Any]) -> ExperimentConfig:
    """``config`` with the model's mixer set to ``name`` and its options updated by ``options`` (validated)."""
    own = {**config.model.options.get(name, {}), **options}
    return config.replace(model={"name": name, "options": {name: own} if own else {}})


def _variant_label(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


def _timed_median(fn, args: tuple, repeats: int) -> float:
    """Median seconds of ``fn(*args)`` over ``repeats`` calls, each blocked until its result is ready."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_mixer(config: ExperimentConfig, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Measure mixer ``name`` with ``options`` in the model of ``config``; returns one row of the table."""
    from lrd.models import count_params
    from lrd.registry import get_mixer
    from lrd.train import init_state, make_optimizer, train_step

    config = mixer_config(config, name, options)
    task = config.task.build()
    resolved = config.model.resolved_scan_modes()[name]
    label = _variant_label(options)
    if label == "default" and resolved is not None:
        label = f"auto={resolved}"
    row: dict[str, Any] = {
        "mixer": name,
        "family": get_mixer(name).family,
        "variant": label,
        "seq_len": task.seq_len,
    }
    model = config.model.build(task)
    optim, bench, batch_size = config.optim, config.bench, config.optim.batch_size
    optimizer = make_optimizer(optim.learning_rate, optim.clip_norm, optim.weight_decay)
    key = jax.random.PRNGKey(config.run.seed)
    state = jax.jit(lambda k: init_state(model, task, optimizer, k))(key)
    row["params"] = count_params(state.params)

    # Forward + backward on a fixed batch: compile explicitly, then time the compiled function.
    batch = task.sample(jax.random.fold_in(key, 1), batch_size)

    def loss(params, batch):
        return task.loss(model.apply({"params": params}, batch.inputs), batch)

    start = time.perf_counter()
    lowered = jax.jit(jax.grad(loss)).lower(state.params, batch)
    compiled = lowered.compile()
    row["compile_s"] = time.perf_counter() - start
    row["while_loops"] = lowered.as_text().count("stablehlo.while")
    memory = _memory_analysis(compiled)
    row["temp_mib"] = None if memory is None else memory / 2**20
    _timed_median(compiled, (state.params, batch), bench.warmup)
    row["fwd_bwd_ms"] = 1e3 * _timed_median(compiled, (state.params, batch), bench.repeats)

    # Training steps: the state threads through, so blocking once at the end waits for all of them.
    step = jax.jit(
        functools.partial(train_step, model=model, task=task, optimizer=optimizer, batch_size=batch_size)
    )
    for _ in range(bench.warmup):
        state, _ = step(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(bench.repeats):
        state, _ = step(state)
    jax.block_until_ready(state)
    row["steps_per_s"] = bench.repeats / (time.perf_counter() - start)
    return row


def _memory_analysis(compiled) -> int | None:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    temp = getattr(stats, "temp_size_in_bytes", None)
    return int(temp) if temp is not None else None


def bench_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The settings a table is headed by (and the JSON records)."""
    task = config.task.build()
    return {
        "task": config.task.name,
        "d_model": config.model.hidden_size,
        "seq_len": task.seq_len,
        "seq_lens": list(config.bench.seq_lens) or [task.seq_len],
        "batch_size": config.optim.batch_size,
        "setting": config.model.setting,
        "num_layers": config.model.num_layers,
        "repeats": config.bench.repeats,
        "warmup": config.bench.warmup,
        "peer": config.bench.peer,
        "seed": config.run.seed,
    }


def run_bench(config: ExperimentConfig, *, log=None) -> dict[str, Any]:
    """Benchmark the mixers of ``config.bench`` (each of its :func:`mixer_variants` if ``bench.variants``) and
    the peer.

    Returns ``{"settings": {...}, "environment": {...}, "rows": [...]}``. Every mixer's config is validated
    first (:class:`lrd.errors.ConfigError` before any compute); a mixer that then fails to compile or run gets
    a row with its ``error`` and the others go on.
    """
    from lrd.registry import get_mixer, mixer_names

    names = list(config.bench.models) or mixer_names()
    peer = config.bench.peer
    measured = list(dict.fromkeys(names))
    if peer not in measured:
        measured.append(peer)
    # Every (mixer, variant) config is validated before anything is compiled: an option one of them cannot
    # honour is a ConfigError now, not a missing row later.
    lengths = list(config.bench.seq_lens) or [None]
    plan = [
        (length, name, options)
        for length in lengths
        for name in measured
        for options in (mixer_variants(name) if config.bench.variants else [{}])
    ]
    at_length = {
        length: config if length is None else config.replace(task={"lag": length}) for length in lengths
    }
    for length, name, options in plan:
        each = mixer_config(at_length[length], name, options)
        task = each.task.build()
        check_memory(each, task, each.model.build(task))
    rows = []
    peer_ms: dict[Any, float] = {}
    for length, name, options in plan:
        try:
            row = bench_mixer(at_length[length], name, options)
        except Exception as err:  # noqa: BLE001 - a failure to compile or run is reported as data
            row = {"mixer": name, "family": get_mixer(name).family, "variant": _variant_label(options)}
            row["seq_len"] = at_length[length].task.build().seq_len
            row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        row["peer_only"] = name not in names
        rows.append(row)
        if name == peer and row["seq_len"] not in peer_ms and "fwd_bwd_ms" in row:
            peer_ms[row["seq_len"]] = row["fwd_bwd_ms"]
        if log is not None:
            log(_row_summary(row))
    for row in rows:
        reference = peer_ms.get(row["seq_len"])
        row["vs_peer"] = row["fwd_bwd_ms"] / reference if reference and "fwd_bwd_ms" in row else None
        for column in COLUMNS:
            row.setdefault(column, None)
    return {"settings": bench_settings(config), "environment": environment(), "rows": rows}


def _row_summary(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"{row['mixer']} [{row['variant']}]: ERROR {row['error']}"
    return (
        f"{row['mixer']} [{row['variant']}]: {row['params']} params, {row['steps_per_s']:.2f} steps/s, "
        f"fwd+bwd {row['fwd_bwd_ms']:.2f} ms"
    )


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """The result as a fixed-width text table, headed by the settings and the environment."""
    s, env = result["settings"], result["environment"]
    lengths = ",".join(str(length) for length in s["seq_lens"])
    header = (
        f"lrd bench: {s['setting']} model on {s['task']}, d_model={s['d_model']} T={lengths} "
        f"batch={s['batch_size']} (median of {s['repeats']} after {s['warmup']} warm-up)\n"
        f"device={env['device']} x{env['num_devices']}  jax={env['jax']}  flax={env['flax']}  "
        f"python={env['python']}  peer={s['peer']}"
    )
    titles = (
        "mixer",
        "family",
        "variant",
        "T",
        "params",
        "steps/s",
        "fwd+bwd ms",
        "compile s",
        "temp MiB",
        "loops",
        "vs peer",
    )
    lines = []
    for row in result["rows"]:
        if row.get("error"):
            lines.append((row["mixer"], row["family"], row["variant"], "ERROR: " + row["error"]))
            continue
        lines.append(
            (
                row["mixer"],
                row["family"],
                row["variant"],
                _fmt(row["seq_len"]),
                _fmt(row["params"]),
                _fmt(row["steps_per_s"]),
                _fmt(row["fwd_bwd_ms"]),
                _fmt(row["compile_s"]),
                _fmt(row["temp_mib"], 1),
                _fmt(row["while_loops"]),
                _fmt(row["vs_peer"]),
            )
        )
    widths = [len(t) for t in titles]
    for line in lines:
        for i, cell in enumerate(line if len(line) == len(titles) else line[:3]):
            widths[i] = max(widths[i], len(cell))

    def render(cells: Sequence[str]) -> str:
        if len(cells) == 4:  # an error row: the message spans the numeric columns
            return "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)) + "  " + cells[3]
        left = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join(left + right)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, render(titles), rule, *(render(line) for line in lines)])


def write_results(result: dict[str, Any], path: str) -> None:
    """Write ``result`` to ``path``: CSV (one row per measurement, settings and environment as columns) if the
    name ends in ``.csv``, JSON otherwise."""
    if path.endswith(".csv"):
        extra = {**{f"setting_{k}": v for k, v in result["settings"].items()}, **result["environment"]}
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *extra])
            writer.writeheader()
            for row in result["rows"]:
                writer.writerow({**{c: row.get(c) for c in COLUMNS}, **extra})
    else:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
