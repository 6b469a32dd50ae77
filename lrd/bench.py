"""``lrd bench``: parameter count, training throughput and forward+backward time per mixer, side by side.

For each requested mixer (and, for linear-recurrence layers, each ``scan_mode``; for layers with several
computational forms, each form) the benchmark builds the *bare* :class:`lrd.models.SequenceModel` on the adding
task at length ``T`` with ``hidden_size = d_model`` and measures, in one process:

* ``params``: number of trainable scalars (complex counts twice);
* ``steps_per_s``: full training steps per second (fresh batch sampled on device, loss, gradients, clipped
  Adam update), the loop the experiments run;
* ``fwd_bwd_ms``: median wall time of one ``jax.grad`` of the loss on a fixed batch;
* ``compile_s``: the time to lower and compile that gradient;
* ``temp_mib``: the compiler's temporary-buffer estimate for that gradient (``memory_analysis``), where the
  backend reports it; activation memory grows with ``T`` here;
* ``vs_peer``: ``fwd_bwd_ms`` relative to a peer mixer (default ``lstm``) measured in the same process.

Every compiled function is warmed up before timing and every timed call ends in ``block_until_ready``, so
asynchronous dispatch never hides work. The table states the device and the jax/flax versions; ``--out`` writes
the same rows as JSON (``.json``) or CSV (``.csv``).

Example (the numbers of the model-zoo note)::

    lrd bench --d-model 64 --seq-len 1024 --batch-size 16 --out bench_T1024.csv
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax

__all__ = [
    "BenchSettings",
    "mixer_variants",
    "bench_mixer",
    "run_bench",
    "format_table",
    "write_results",
    "cli_commands",
]

COLUMNS = (
    "mixer",
    "family",
    "variant",
    "params",
    "steps_per_s",
    "fwd_bwd_ms",
    "compile_s",
    "temp_mib",
    "vs_peer",
    "error",
)


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run measures (validated)."""

    d_model: int = 64
    seq_len: int = 1024
    batch_size: int = 16
    steps: int = 10
    warmup: int = 2
    peer: str = "lstm"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_model", "seq_len", "batch_size", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"bench.{name} must be a positive int, got {value!r}")
        if self.seq_len < 2:
            raise ValueError(
                f"bench.seq_len must be >= 2 (the adding task needs two markers), got {self.seq_len}"
            )
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"bench.warmup must be an int >= 1, got {self.warmup!r}")


def mixer_variants(name: str) -> list[dict[str, Any]]:
    """The option sets benchmarked side by side for mixer ``name``.

    * A mixer with a ``scan_mode`` field runs once per :data:`lrd.scan.SCAN_MODES`.
    * A mixer with a class attribute ``FORMS`` (values of its field ``FORM_FIELD``, default ``"form"``) runs
      once per form; if it names ``SCAN_FORM`` (the form whose cost depends on the scan mode), that form runs
      once per scan mode.
    * Anything else runs once with its registered defaults (``{}``).
    """
    from lrd.registry import get_mixer
    from lrd.scan import SCAN_MODES

    cls = get_mixer(name).cls
    fields = {f.name for f in dataclasses.fields(cls)}
    has_scan = "scan_mode" in fields
    form_field = getattr(cls, "FORM_FIELD", "form")
    forms = tuple(getattr(cls, "FORMS", ())) if form_field in fields else ()
    if forms:
        scan_form = getattr(cls, "SCAN_FORM", None)
        variants: list[dict[str, Any]] = []
        for form in forms:
            if has_scan and form == scan_form:
                variants.extend({form_field: form, "scan_mode": mode} for mode in SCAN_MODES)
            else:
                variants.append({form_field: form})
        return variants
    if has_scan:
        return [{"scan_mode": mode} for mode in SCAN_MODES]
    return [{}]


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


def bench_mixer(name: str, options: dict[str, Any], settings: BenchSettings) -> dict[str, Any]:
    """Measure one mixer with ``options`` (see the module docstring); returns one row of the table."""
    from lrd.models import build_model, count_params
    from lrd.registry import build_task, get_mixer
    from lrd.train import init_state, make_optimizer, train_step

    row: dict[str, Any] = {
        "mixer": name,
        "family": get_mixer(name).family,
        "variant": _variant_label(options),
    }
    task = build_task("adding", lag=settings.seq_len)
    model = build_model(name, task, hidden_size=settings.d_model, mode="bare", mixer_options={name: options})
    optimizer = make_optimizer(1e-3)
    key = jax.random.PRNGKey(settings.seed)
    state = jax.jit(lambda k: init_state(model, task, optimizer, k))(key)
    row["params"] = count_params(state.params)

    # Forward + backward on a fixed batch: compile explicitly, then time the compiled function.
    batch = task.sample(jax.random.fold_in(key, 1), settings.batch_size)

    def loss(params, batch):
        return task.loss(model.apply({"params": params}, batch.inputs), batch)

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(state.params, batch).compile()
    row["compile_s"] = time.perf_counter() - start
    memory = _memory_analysis(compiled)
    row["temp_mib"] = None if memory is None else memory / 2**20
    _timed_median(compiled, (state.params, batch), settings.warmup)
    row["fwd_bwd_ms"] = 1e3 * _timed_median(compiled, (state.params, batch), settings.steps)

    # Training steps: the state threads through, so blocking once at the end waits for all of them.
    step = jax.jit(
        functools.partial(
            train_step, model=model, task=task, optimizer=optimizer, batch_size=settings.batch_size
        )
    )
    for _ in range(settings.warmup):
        state, _ = step(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(settings.steps):
        state, _ = step(state)
    jax.block_until_ready(state)
    row["steps_per_s"] = settings.steps / (time.perf_counter() - start)
    return row


def _memory_analysis(compiled) -> int | None:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    temp = getattr(stats, "temp_size_in_bytes", None)
    return int(temp) if temp is not None else None


def environment() -> dict[str, Any]:
    """Device, platform and library versions, for the table header and the JSON."""
    import flax

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run_bench(
    names: Sequence[str],
    settings: BenchSettings,
    *,
    variants: bool = True,
    log=None,
) -> dict[str, Any]:
    """Benchmark ``names`` (each of its :func:`mixer_variants` unless ``variants=False``) and the peer.

    Returns ``{"settings": {...}, "environment": {...}, "rows": [...]}``. A mixer that fails to build or run
    gets a row with its ``error`` and the others go on.
    """
    from lrd.registry import get_mixer

    for name in list(names) + [settings.peer]:
        get_mixer(name)  # unknown names fail before any compute, listing the allowed ones
    rows = []
    peer_ms = None
    measured = list(dict.fromkeys(names))
    if settings.peer not in measured:
        measured.append(settings.peer)
    for name in measured:
        for options in mixer_variants(name) if variants else [{}]:
            try:
                row = bench_mixer(name, options, settings)
            except Exception as err:  # noqa: BLE001 - report the failure as data and continue
                row = {"mixer": name, "family": get_mixer(name).family, "variant": _variant_label(options)}
                row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            row["peer_only"] = name not in names
            rows.append(row)
            if name == settings.peer and peer_ms is None and "fwd_bwd_ms" in row:
                peer_ms = row["fwd_bwd_ms"]
            if log is not None:
                log(_row_summary(row))
    for row in rows:
        row["vs_peer"] = row["fwd_bwd_ms"] / peer_ms if peer_ms and "fwd_bwd_ms" in row else None
        for column in COLUMNS:
            row.setdefault(column, None)
    return {"settings": dataclasses.asdict(settings), "environment": environment(), "rows": rows}


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
    header = (
        f"lrd bench: bare model on adding, d_model={s['d_model']} T={s['seq_len']} batch={s['batch_size']} "
        f"(median of {s['steps']} after {s['warmup']} warm-up)\n"
        f"device={env['device']} x{env['num_devices']}  jax={env['jax']}  flax={env['flax']}  "
        f"python={env['python']}  peer={s['peer']}"
    )
    titles = (
        "mixer",
        "family",
        "variant",
        "params",
        "steps/s",
        "fwd+bwd ms",
        "compile s",
        "temp MiB",
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
                _fmt(row["params"]),
                _fmt(row["steps_per_s"]),
                _fmt(row["fwd_bwd_ms"]),
                _fmt(row["compile_s"]),
                _fmt(row["temp_mib"], 1),
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


# ----------------------------------------------------------------------------------------------------------------
# CLI


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", default="all", help="comma-separated mixer names, or 'all' (see `lrd list`)"
    )
    parser.add_argument("--d-model", type=int, default=64, help="hidden size of the bare model")
    parser.add_argument("--seq-len", type=int, default=1024, help="sequence length T (adding task lag)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed repetitions per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (compile, caches)")
    parser.add_argument("--peer", default="lstm", help="mixer the 'vs peer' column divides by")
    parser.add_argument(
        "--no-variants", action="store_true", help="registered defaults only, no scan modes/forms"
    )
    parser.add_argument("--out", default=None, help="write the rows to this .json or .csv file")
    parser.add_argument("--seed", type=int, default=0)


def cmd_bench(args: argparse.Namespace) -> int:
    """``lrd bench``: params, steps/s and fwd+bwd time per mixer and scan mode, with device and versions."""
    from lrd.cli import UsageError
    from lrd.registry import mixer_names

    names = (
        mixer_names() if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    )
    if not names:
        raise UsageError("--models must name at least one mixer, or 'all'")
    if args.out is not None and not (args.out.endswith(".json") or args.out.endswith(".csv")):
        raise UsageError(f"--out must end in .json or .csv, got {args.out!r}")
    try:
        settings = BenchSettings(
            d_model=args.d_model,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            peer=args.peer,
            seed=args.seed,
        )
        result = run_bench(
            names, settings, variants=not args.no_variants, log=lambda line: print(line, file=sys.stderr)
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(format_table(result))
    if args.out:
        write_results(result, args.out)
        print(f"wrote {args.out}")
    return 0


def cli_commands() -> dict[str, tuple]:
    """Subcommands this module adds to ``lrd`` (see :func:`lrd.cli._register_optional_commands`)."""
    return {"bench": (_configure, cmd_bench)}
