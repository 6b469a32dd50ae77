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
* ``fwd_ms``: median wall time of one forward pass;
* ``vs_peer`` / ``fwd_vs_peer``: ``fwd_bwd_ms`` / ``fwd_ms`` relative to a peer mixer (``bench.peer``, default
  ``lstm``) at the same length.

Every measurement of one length is timed in rounds, interleaved (A, B, C, A, B, C, ...), with medians over the
rounds, so that a slow patch of a shared machine hits all candidates alike; ratios are what to read. External
implementations (``bench.peers``: Flax's ``OptimizedLSTMCell``, a hand-written ``lax.scan`` LSTM, PyTorch's
``nn.LSTM`` on one thread when installed; :mod:`lrd.peers`) join the same rounds.

Every compiled function is warmed up before timing and every timed call ends in ``block_until_ready``, so
asynchronous dispatch never hides work. The table states the device and the jax/flax versions; ``--out`` writes
the same rows as JSON (``.json``) or CSV (``.csv``).

Example (the numbers of the model-zoo note)::

    lrd bench --d-model 64 --seq-len 1024 --batch-size 16 --out bench_T1024.csv
    lrd bench --models lstm,lru,attention --seq-len 256,1024,4096 --out cost_vs_length.json
    lrd bench --models lstm --peers flax_lstm,scan_lstm,torch_lstm --d-model 256 --seq-len 256,1024
"""

from __future__ import annotations

import csv
import functools
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lrd.config import ExperimentConfig
from lrd.metrics_log import environment
from lrd.peers import block, peer_available, peer_functions
from lrd.preflight import check_memory

__all__ = [
    "default_config",
    "mixer_variants",
    "mixer_config",
    "prepare_mixer",
    "prepare_peer",
    "time_interleaved",
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
    "fwd_ms",
    "fwd_bwd_ms",
    "compile_s",
    "temp_mib",
    "while_loops",
    "fwd_vs_peer",
    "vs_peer",
    "error",
)


def default_config() -> ExperimentConfig:
    """The base config of ``lrd bench`` without ``--config``: bare model, d_model 64, adding at T=1024, batch 16."""
    return ExperimentConfig().replace(task={"lag": 1024}, optim={"batch_size": 16})


def mixer_variants(name: str) -> list[dict[str, Any]]:
    """The option sets benchmarked side by side for mixer ``name``: one per ``scan_mode`` value, or ``[{}]``.
    ``kernel`` is left out where the Pallas kernel would run interpreted (off GPU): a correctness path, not a
    contender."""
    from lrd.cells.base import scan_modes
    from lrd.kernels import kernel_interpreted
    from lrd.registry import get_mixer

    modes = [m for m in scan_modes(get_mixer(name).cls) if not (m == "kernel" and kernel_interpreted())]
    return [{"scan_mode": mode} for mode in modes] if modes else [{}]


def mixer_config(config: ExperimentConfig, name: str, options: dict[str, Any]) -> ExperimentConfig:
    """``config`` with the model's mixer set to ``name`` and its options updated by ``options`` (validated)."""
    own = {**config.model.options.get(name, {}), **options}
    return config.replace(model={"name": name, "options": {name: own} if own else {}})


def _variant_label(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


def _timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``, waiting for its result (asynchronous dispatch hides nothing)."""
    start = time.perf_counter()
    block(fn())
    return time.perf_counter() - start


def prepare_mixer(config: ExperimentConfig, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Compile mixer ``name`` with ``options`` in the model of ``config``: its row (parameters, compile time,
    compiler temp memory, while loops) and the zero-argument closures the timing rounds call."""
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
    optim, batch_size = config.optim, config.optim.batch_size
    optimizer = make_optimizer(optim.learning_rates[0], optim.clip_norm, optim.weight_decay, optim.name)
    key = jax.random.PRNGKey(config.run.seed)
    state = jax.jit(lambda k: init_state(model, task, optimizer, k))(key)
    row["params"] = count_params(state.params)
    batch = task.sample(jax.random.fold_in(key, 1), batch_size)

    def loss(params, batch):
        return task.loss(model.apply({"params": params}, batch.inputs), batch)

    start = time.perf_counter()
    lowered = jax.jit(jax.grad(loss)).lower(state.params, batch)
    fwd_bwd = lowered.compile()
    row["compile_s"] = time.perf_counter() - start
    row["while_loops"] = lowered.as_text().count("stablehlo.while")
    memory = _memory_analysis(fwd_bwd)
    row["temp_mib"] = None if memory is None else memory / 2**20
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x)).lower(state.params, batch.inputs).compile()
    step = jax.jit(
        functools.partial(train_step, model=model, task=task, optimizer=optimizer, batch_size=batch_size)
    )
    states = [state]

    def train() -> Any:
        states[0], _ = step(states[0])
        return states[0]

    return {
        "row": row,
        "forward": lambda: forward(state.params, batch.inputs),
        "fwd_bwd": lambda: fwd_bwd(state.params, batch),
        "step": train,
    }


def prepare_peer(config: ExperimentConfig, name: str) -> dict[str, Any]:
    """Compile the external peer ``name`` (:mod:`lrd.peers`) on the task and batch of ``config``."""
    task = config.task.build()
    key = jax.random.PRNGKey(config.run.seed)
    batch = task.sample(jax.random.fold_in(key, 1), config.optim.batch_size)
    start = time.perf_counter()
    functions = peer_functions(name, task, batch, config.model.hidden_size, key)
    temp = functions["temp_bytes"]
    row = {
        "mixer": name,
        "family": "peer",
        "variant": "external",
        "seq_len": task.seq_len,
        "params": functions["params"],
        "compile_s": time.perf_counter() - start,
        "temp_mib": None if temp is None else temp / 2**20,
        "while_loops": None,
    }
    return {"row": row, "forward": functions["forward"], "fwd_bwd": functions["fwd_bwd"], "step": None}


def time_interleaved(candidates: list[dict[str, Any]], repeats: int, warmup: int) -> None:
    """Time every candidate's forward, forward+backward and training step in rounds, A B C A B C ..., so that
    a slow patch of a shared machine hits all of them alike; medians over the rounds go into each row."""
    kinds = ("forward", "fwd_bwd", "step")
    for candidate in candidates:
        for _ in range(warmup):
            for kind in kinds:
                if candidate[kind] is not None:
                    _timed(candidate[kind])
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(repeats):
        for index, candidate in enumerate(candidates):
            for kind in kinds:
                if candidate[kind] is not None:
                    times.setdefault((index, kind), []).append(_timed(candidate[kind]))
    for index, candidate in enumerate(candidates):
        row = candidate["row"]
        row["fwd_ms"] = 1e3 * statistics.median(times[index, "forward"])
        row["fwd_bwd_ms"] = 1e3 * statistics.median(times[index, "fwd_bwd"])
        if (index, "step") in times:
            row["steps_per_s"] = 1.0 / statistics.median(times[index, "step"])


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
    for length in lengths:
        candidates = []
        for _, name, options in (p for p in plan if p[0] == length):
            try:
                candidate = prepare_mixer(at_length[length], name, options)
            except Exception as err:  # noqa: BLE001 - a failure to compile is reported as data
                row = {"mixer": name, "family": get_mixer(name).family, "variant": _variant_label(options)}
                row["seq_len"] = at_length[length].task.build().seq_len
                row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                rows.append(row)
                continue
            candidate["row"]["peer_only"] = name not in names
            candidates.append(candidate)
        for peer_name in config.bench.peers:
            if peer_available(peer_name):
                candidates.append(prepare_peer(at_length[length], peer_name))
            elif log is not None:
                log(f"{peer_name}: not installed here, skipped")
        time_interleaved(candidates, config.bench.repeats, config.bench.warmup)
        group = [c["row"] for c in candidates]
        reference = next((r for r in group if r["mixer"] == peer and "fwd_bwd_ms" in r), None)
        for row in group:
            if reference is not None:
                row["vs_peer"] = row["fwd_bwd_ms"] / reference["fwd_bwd_ms"]
                row["fwd_vs_peer"] = row["fwd_ms"] / reference["fwd_ms"]
            if log is not None:
                log(_row_summary(row))
        rows.extend(group)
    for row in rows:
        for column in COLUMNS:
            row.setdefault(column, None)
    return {"settings": bench_settings(config), "environment": environment(), "rows": rows}


def _row_summary(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"{row['mixer']} [{row['variant']}]: ERROR {row['error']}"
    steps = f"{row['steps_per_s']:.2f} steps/s, " if row.get("steps_per_s") else ""
    return (
        f"{row['mixer']} [{row['variant']}] T={row['seq_len']}: {row['params']} params, {steps}"
        f"fwd {row['fwd_ms']:.2f} ms, fwd+bwd {row['fwd_bwd_ms']:.2f} ms"
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
        "fwd ms",
        "fwd+bwd ms",
        "compile s",
        "temp MiB",
        "loops",
        "fwd vs peer",
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
                _fmt(row["fwd_ms"]),
                _fmt(row["fwd_bwd_ms"]),
                _fmt(row["compile_s"]),
                _fmt(row["temp_mib"], 1),
                _fmt(row["while_loops"]),
                _fmt(row["fwd_vs_peer"]),
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
            columns = list(COLUMNS) + [k for row in result["rows"] for k in row if k not in COLUMNS]
            columns = list(dict.fromkeys(columns))
            writer = csv.DictWriter(f, fieldnames=[*columns, *extra])
            writer.writeheader()
            for row in result["rows"]:
                writer.writerow({**{c: row.get(c) for c in columns}, **extra})
    else:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# The linear scan against raw JAX and the memory floor (``lrd bench --suite scan``).


def _raw_lax_scan(a: jax.Array, b: jax.Array) -> jax.Array:
    def body(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(body, jnp.zeros(b.shape[1:], b.dtype), (a, b))[1]


def _raw_associative(a: jax.Array, b: jax.Array) -> jax.Array:
    def combine(left, right):
        return right[0] * left[0], right[0] * left[1] + right[1]

    return jax.lax.associative_scan(combine, (a, b), axis=0)[1]


def _floor(a: jax.Array, b: jax.Array) -> jax.Array:
    """The memory floor: an out-of-place elementwise op reading ``a`` and ``b`` and writing ``h``, the bytes any
    scan must move (its forward+backward reads ``a``, ``b``, the output's cotangent and writes two gradients)."""
    return a * b + b


def scan_candidates(num_steps: int, batch: int, width: int, seed: int = 0) -> dict[str, Callable]:
    """``{name: f(a, b)}`` for the scan suite: lrd's ``linear_scan`` in each mode (and ``auto``), raw
    ``lax.scan`` / ``lax.associative_scan`` written out, and the memory floor."""
    from lrd.cells.base import LinearRecurrentLayer
    from lrd.kernels import kernel_interpreted
    from lrd.scan import SCAN_MODES, linear_scan

    auto = LinearRecurrentLayer.AUTO_SCAN_MODES.get(jax.default_backend(), "associative")
    candidates: dict[str, Callable] = {f"linear_scan auto={auto}": functools.partial(linear_scan, mode=auto)}
    for mode in SCAN_MODES:
        if mode != auto and not (mode == "kernel" and kernel_interpreted()):
            candidates[f"linear_scan {mode}"] = functools.partial(linear_scan, mode=mode)
    candidates["raw lax.scan"] = _raw_lax_scan
    candidates["raw lax.associative_scan"] = _raw_associative
    candidates["memory floor"] = _floor
    return candidates


def run_scan_bench(
    seq_lens: Sequence[int], *, batch: int = 16, width: int = 64, repeats: int = 5, warmup: int = 1, log=None
) -> dict[str, Any]:
    """Forward and forward+backward of ``h_t = a_t h_{t-1} + b_t`` (float32 ``[T, batch, width]``, time-varying
    ``a`` in (0.9, 1)) per candidate of :func:`scan_candidates`, interleaved; each row reports its fraction of the
    memory floor (``floor_ms / ms``: 1 = as fast as moving the bytes once)."""
    rows = []
    for num_steps in seq_lens:
        key_a, key_b, key_w = jax.random.split(jax.random.PRNGKey(0), 3)
        a = jax.random.uniform(key_a, (num_steps, batch, width), jnp.float32, 0.9, 1.0)
        b = jax.random.normal(key_b, (num_steps, batch, width), jnp.float32)
        w = jax.random.normal(key_w, (num_steps, batch, width), jnp.float32)
        candidates = []
        for name, fn in scan_candidates(num_steps, batch, width).items():
            forward = jax.jit(fn).lower(a, b).compile()
            fwd_bwd = jax.jit(jax.grad(lambda a, b, fn=fn, w=w: jnp.sum(fn(a, b) * w), argnums=(0, 1)))
            compiled = fwd_bwd.lower(a, b).compile()
            row = {"mixer": name, "family": "scan", "variant": "", "seq_len": num_steps}
            memory = _memory_analysis(compiled)
            row["temp_mib"] = None if memory is None else memory / 2**20
            candidates.append(
                {
                    "row": row,
                    "forward": functools.partial(forward, a, b),
                    "fwd_bwd": functools.partial(compiled, a, b),
                    "step": None,
                }
            )
        time_interleaved(candidates, repeats, warmup)
        floor = candidates[-1]["row"]
        for candidate in candidates:
            row = candidate["row"]
            row["floor_fraction_fwd"] = floor["fwd_ms"] / row["fwd_ms"]
            row["floor_fraction_fwd_bwd"] = floor["fwd_bwd_ms"] / row["fwd_bwd_ms"]
            if log is not None:
                log(
                    f"T={num_steps} {row['mixer']}: fwd {row['fwd_ms']:.2f} ms ({row['floor_fraction_fwd']:.0%} of "
                    f"the floor), fwd+bwd {row['fwd_bwd_ms']:.2f} ms ({row['floor_fraction_fwd_bwd']:.0%})"
                )
            rows.append(row)
    settings = {
        "suite": "scan",
        "seq_lens": list(seq_lens),
        "batch": batch,
        "width": width,
        "repeats": repeats,
    }
    return {"settings": settings, "environment": environment(), "rows": rows}


def format_scan_table(result: dict[str, Any]) -> str:
    """The scan suite as a text table."""
    env = result["environment"]
    lines = [
        f"lrd bench --suite scan: float32 [T, {result['settings']['batch']}, {result['settings']['width']}], "
        f"device={env['device']} jax={env['jax']}",
        f"{'T':>6}  {'candidate':<28} {'fwd ms':>9} {'of floor':>9} {'fwd+bwd ms':>11} {'of floor':>9} {'temp MiB':>9}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['seq_len']:>6}  {row['mixer']:<28} {row['fwd_ms']:>9.2f} {row['floor_fraction_fwd']:>9.0%} "
            f"{row['fwd_bwd_ms']:>11.2f} {row['floor_fraction_fwd_bwd']:>9.0%} {_fmt(row['temp_mib'], 1):>9}"
        )
    return "\n".join(lines)
