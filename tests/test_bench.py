"""``lrd bench``: a tiny end-to-end run (2 mixers, T=16) writes well-formed JSON and CSV; bad input fails early."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import pytest

from lrd.bench import COLUMNS, default_config, mixer_variants, run_bench, write_results
from lrd.cli import main
from lrd.config import ConfigError
from lrd.kernels import kernel_interpreted
from lrd.scan import SCAN_MODES


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One tiny ``lrd bench`` through the CLI: rnn and gru, T=16, peer rnn; returns (stdout, JSON path)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(
            [
                "bench",
                "--models",
                "rnn,gru",
                "--seq-len",
                "16",
                "--d-model",
                "4",
                "--batch-size",
                "2",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--peer",
                "rnn",
                "--out",
                str(out),
            ]
        )
    assert status == 0
    return stdout.getvalue(), out


def test_json_is_well_formed(bench_run):
    _, path = bench_run
    result = json.loads(path.read_text())
    assert result["settings"]["seq_lens"] == [16] and result["settings"]["d_model"] == 4
    assert {"device", "jax", "flax"} <= set(result["environment"])
    rows = result["rows"]
    assert [row["mixer"] for row in rows] == ["rnn", "gru"]
    for row in rows:
        assert set(COLUMNS) <= set(row)
        assert row["error"] is None
        assert row["params"] > 0
        assert row["steps_per_s"] > 0 and row["fwd_bwd_ms"] > 0 and row["compile_s"] > 0
        assert row["seq_len"] == 16 and row["while_loops"] == 2  # the forward scan and its backward
    # Bare models with d_model=4 on adding (2 inputs, 1 output): Elman W, U, b and GRU W, U, two biases.
    assert rows[0]["params"] == 4 * (2 + 4 + 1) + (4 + 1)
    assert rows[1]["params"] == 3 * 4 * (2 + 4 + 2) + (4 + 1)
    assert rows[0]["vs_peer"] == 1.0
    assert math.isclose(rows[1]["vs_peer"], rows[1]["fwd_bwd_ms"] / rows[0]["fwd_bwd_ms"])


def test_table_is_printed_with_device_and_versions(bench_run):
    stdout, path = bench_run
    assert "device=" in stdout and "jax=" in stdout and "flax=" in stdout
    lines = stdout.splitlines()
    assert any(line.startswith("rnn ") for line in lines) and any(line.startswith("gru ") for line in lines)
    assert f"wrote {path}" in stdout


def test_csv_is_well_formed(bench_run, tmp_path):
    _, path = bench_run
    result = json.loads(path.read_text())
    csv_path = tmp_path / "bench.csv"
    write_results(result, str(csv_path))
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)
    assert rows[0]["device"] == result["environment"]["device"]
    assert float(rows[1]["steps_per_s"]) > 0 and int(rows[1]["params"]) == result["rows"][1]["params"]


def test_variants_are_the_scan_modes_of_each_mixer():
    # Given the one field for equivalent algorithms, Then bench times each of its values and nothing else (but the
    # Pallas kernel where it would run interpreted: off GPU).
    timed = [m for m in SCAN_MODES if m != "kernel" or not kernel_interpreted()]
    assert mixer_variants("lstm") == [{}]
    assert mixer_variants("rglru") == [{"scan_mode": mode} for mode in timed]
    assert mixer_variants("lru") == [{"scan_mode": mode} for mode in (*timed, "fft")]
    assert mixer_variants("selective_ssm")[-1] == {"scan_mode": "fused"}
    assert [v["scan_mode"] for v in mixer_variants("linear_attention")] == [
        "sequential",
        "associative",
        "chunked",
        "parallel",
    ]
    assert mixer_variants("attention") == [{"scan_mode": m} for m in ("jax", "einsum", "blocked")]
    assert mixer_variants("mingru")[-1] == {"scan_mode": "log_space"}


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--models", "lstm,nosuchcell"], "bench.models='nosuchcell' is unknown"),
        (["--models", "lstm", "--seq-len", "0"], "bench.seq_lens entries must be a positive int"),
        (["--models", "lstm", "--out", "table.txt"], "--out"),
        (["--models", "lstm", "--out", "no/such/dir/bench.json"], "does not exist"),
        (["--models", "lstm", "--peer", "nosuchpeer"], "bench.peer='nosuchpeer' is unknown"),
        (["--models", "lstm", "--repeats", "0"], "bench.repeats must be a positive int"),
        (["--models", "lru", "--model.options.lru.chunk_size", "8"], "model.options.lru.chunk_size=8"),
    ],
)
def test_bad_input_exits_2_before_compute(args, expected, capsys):
    assert main(["bench", *args]) == 2
    assert expected in capsys.readouterr().err


def test_an_option_one_variant_cannot_honour_fails_before_any_compute():
    # Given chunk_size for lru, When bench would time every scan mode, Then the sequential variant cannot honour
    # it, and run_bench raises before compiling anything (no row is silently missing later).
    config = default_config().replace(
        model={"name": "lru", "options": {"lru": {"scan_mode": "chunked", "chunk_size": 8}}},
        bench={"models": ("lru",), "peer": "lru"},
    )
    with pytest.raises(ConfigError, match="only scan_mode 'chunked' honours chunk_size"):
        run_bench(config)


def test_several_lengths_side_by_side(capsys, tmp_path):
    # Given two lengths, Then every mixer is timed at each, vs_peer divides by the peer at the same length, and the
    # parallel forms report no sequential loop.
    out = tmp_path / "lengths.json"
    argv = ["bench", "--models", "lstm,attention", "--seq-len", "8,16", "--d-model", "8", "--batch-size", "2"]
    argv += ["--repeats", "1", "--warmup", "1", "--no-variants", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mixer"], r["seq_len"]) for r in rows] == [
        ("lstm", 8),
        ("attention", 8),
        ("lstm", 16),
        ("attention", 16),
    ]
    assert [r["vs_peer"] for r in rows if r["mixer"] == "lstm"] == [1.0, 1.0]
    assert [r["while_loops"] for r in rows] == [2, 0, 2, 0]


def test_quick_bench_with_external_peers_writes_well_formed_json(tmp_path, capsys):
    # `lrd bench --quick` (what CI runs): every mixer and the Flax / hand-written LSTM peers, timed in the same
    # interleaved rounds, with ratios to lrd's LSTM; PyTorch, absent here, is reported as skipped when asked for.
    out = tmp_path / "quick.json"
    assert (
        main(
            ["bench", "--quick", "--models", "lstm,s4d", "--peers", "flax_lstm,torch_lstm", "--out", str(out)]
        )
        == 0
    )
    result = json.loads(out.read_text())
    rows = {row["mixer"]: row for row in result["rows"]}
    assert set(rows) >= {"lstm", "s4d", "flax_lstm"}
    assert rows["flax_lstm"]["family"] == "peer" and rows["flax_lstm"]["params"] == rows["lstm"]["params"]
    for row in rows.values():
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["vs_peer"] > 0 and row["fwd_vs_peer"] > 0
    assert rows["lstm"]["vs_peer"] == 1.0 and rows["s4d"]["variant"] == "auto=fft"
    assert result["environment"]["jaxlib"] and result["settings"]["seq_lens"] == [64]
    if "torch_lstm" not in rows:
        assert "torch_lstm: not installed here, skipped" in capsys.readouterr().err


def test_scan_suite_reports_every_mode_against_raw_jax_and_the_floor(tmp_path):
    # `lrd bench --suite scan`: linear_scan in every mode (auto first, named by what it resolved to), raw
    # lax.scan / lax.associative_scan and the memory floor, each with its fraction of the floor; CSV as well.
    out = tmp_path / "scan.csv"
    argv = ["bench", "--suite", "scan", "--quick", "--seq-len", "32,64", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        assert main(argv) == 0
    rows = list(csv.DictReader(out.open()))
    names = list(dict.fromkeys(r["mixer"] for r in rows))
    assert names[0].startswith("linear_scan auto=") and names[-1] == "memory floor"
    timed = {f"linear_scan {m}" for m in SCAN_MODES if m != "kernel" or not kernel_interpreted()}
    assert timed - {names[0].replace("auto=", "")} <= set(names)
    assert {"raw lax.scan", "raw lax.associative_scan"} <= set(names)
    assert [int(r["seq_len"]) for r in rows] == [32] * len(names) + [64] * len(names)
    for row in rows:
        assert float(row["fwd_ms"]) > 0 and float(row["floor_fraction_fwd_bwd"]) > 0
        assert row["setting_suite"] == "scan" and row["device"]
    floor = [r for r in rows if r["mixer"] == "memory floor"]
    assert all(float(r["floor_fraction_fwd"]) == 1.0 for r in floor)
    assert "of floor" in stdout.getvalue()


def test_unknown_bench_suite_is_a_one_line_error():
    with pytest.raises(ConfigError, match="bench.suite.*mixers.*scan"):
        default_config().replace(bench={"suite": "kernels"})
