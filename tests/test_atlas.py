"""experiments/atlas.py on tiny sizes: well-formed atlas.json / .csv / .png, and a second run reads every finished
trial back instead of training it again."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import atlas  # noqa: E402
import atlas_table  # noqa: E402


def test_atlas_writes_its_files_and_resumes_without_retraining(tmp_path, capsys):
    argv = ["--smoke", "--models", "rnn,mingru", "--tasks", "adding", "--workdir", str(tmp_path / "runs")]
    argv += ["--out", str(tmp_path / "atlas"), "--hidden-size", "6"]
    assert atlas.main(argv) == 0
    result = json.loads((tmp_path / "atlas.json").read_text())
    assert result["protocol"]["smoke"] and result["protocol"]["settings"]["bare"] == list(atlas.BARE_FAMILIES)
    cells = {c["mixer"]: c for c in result["cells"]}
    assert set(cells) == {"rnn", "mingru"}
    assert cells["rnn"]["setting"] == "bare" and cells["mingru"]["setting"] == "block"
    for cell in cells.values():
        assert cell["task"] == "adding" and cell["params"] > 0 and cell["trials"]
        assert cell["hidden_size"] == 6  # --hidden-size reaches every mixer
        assert cell["grad_slope_per_step_at_init"] < 0  # gradients decay with distance at initialisation
        # ... and after training: the trained model of the trial at the maximum learnable lag (else the first)
        assert cell["grad_slope_trained_at_lag"] == (cell["max_learnable_lag"] or cell["trials"][0]["lag"])
        assert isinstance(cell["grad_slope_per_step_trained"], float)
        assert cell["grad_slope_trained_step"] > 0
        assert cell["search"]["finished"] and cell["trials"][0]["lag"] == 4
    rows = list(csv.DictReader((tmp_path / "atlas.csv").open()))
    assert [r["mixer"] for r in rows] == ["rnn", "mingru"] and rows[0]["params"] == str(
        cells["rnn"]["params"]
    )
    assert (tmp_path / "atlas.png").stat().st_size > 0
    # The README table: one row per mixer, its lag entry as the search found it, and the protocol line.
    table = atlas_table.markdown([result]).splitlines()
    assert table[0] == (
        "| mixer | setting | params (adding) | state (adding) | adding: max lag (fails at) | adding: grad decay / step,"
        " init -> trained | adding: best loss / chance where it fails |"
    )
    for line, cell in zip(table[2:4], result["cells"], strict=True):
        assert line.startswith(
            f"| {cell['mixer']} | {cell['setting']} | {cell['params']} | {cell['state_size']} | "
        )
        assert atlas_table.lag_cell(cell) in line
    assert "adding: hidden 6, 20 steps x batch 8 per lag, 2 seeds" in table[-1]

    metrics = sorted((tmp_path / "runs").rglob("metrics.jsonl"))
    assert len(metrics) >= 2
    stamps = {path: path.stat().st_mtime_ns for path in metrics}
    assert atlas.main(argv) == 0  # again: every trial is read back
    assert {path: path.stat().st_mtime_ns for path in metrics} == stamps
    again = json.loads((tmp_path / "atlas.json").read_text())
    for before, after in zip(result["cells"], again["cells"], strict=True):
        assert before["trials"] == after["trials"] and before["params"] == after["params"]
        # the search's cost is what its trials took when they ran, not the time to read them back
        assert after["search_wall_time_s"] == before["search_wall_time_s"] > 0


def test_how_close_a_search_came_where_it_failed():
    def member(loss):
        return {"final_loss": loss}

    trial = {
        "lag": 30,
        "chance_loss": 0.2,
        "per_rate": [{"seeds": [member(0.1), member("nan")]}, {"seeds": [member(0.05)]}],
    }
    cell = {"smallest_unlearnable_lag": 30, "search": {"trials": [{"lag": 10, "chance_loss": 0.2}, trial]}}
    assert (
        atlas_table.closest_failure(cell) == "0.25"
    )  # the best member of either rate; a diverged one skipped
    assert atlas_table.closest_failure({**cell, "smallest_unlearnable_lag": None}) == "-"  # nothing failed
    assert atlas_table.closest_failure(None) == "-"


def test_the_table_entry_of_a_search():
    trials = [{"lag": 10}, {"lag": 30}]
    assert atlas_table.lag_cell(None) == "-"
    assert atlas_table.lag_cell({"error": "boom", "trials": []}) == "error"
    partial = {
        "error": "boom",
        "max_learnable_lag": 10,
        "smallest_unlearnable_lag": None,
        "trials": trials[:1],
    }
    assert atlas_table.lag_cell(partial) == ">= 10, then error"
    assert (
        atlas_table.lag_cell(
            {"max_learnable_lag": None, "smallest_unlearnable_lag": 10, "trials": trials[:1]}
        )
        == "< 10"
    )
    assert (
        atlas_table.lag_cell({"max_learnable_lag": 10, "smallest_unlearnable_lag": 30, "trials": trials})
        == "10 (30)"
    )
    every_lag = {"max_learnable_lag": 10, "smallest_unlearnable_lag": None, "trials": trials[:1]}
    # every lag of the sweep was learnable: the maximum lies above the last one
    assert atlas_table.lag_cell(every_lag) == ">= 10"


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--models", "lstmm"], "--models lstmm unknown"),
        (["--tasks", "adder"], "--tasks adder has no preset"),
        (["--learning-rate", "1e-3,-1"], "--learning-rate '1e-3,-1' must be distinct positive numbers"),
        (["--sweep", "8,4"], "--sweep '8,4' must be strictly increasing positive integers"),
    ],
)
def test_bad_names_exit_2_before_compute(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        atlas.main([*argv, "--out", str(tmp_path / "atlas"), "--workdir", str(tmp_path / "runs")])
    assert info.value.code == 2 and expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_learning_rate_grid_keeps_each_rate_s_outcome(tmp_path):
    argv = ["--smoke", "--models", "gru", "--tasks", "adding", "--workdir", str(tmp_path / "runs")]
    argv += ["--out", str(tmp_path / "atlas"), "--learning-rate", "1e-3,1e-2", "--sweep", "4"]
    assert atlas.main(argv) == 0
    result = json.loads((tmp_path / "atlas.json").read_text())
    assert result["protocol"]["budgets"]["adding"]["learning_rates"] == [1e-3, 1e-2]
    (trial,) = result["cells"][0]["trials"]
    assert set(trial["fraction_solved_per_rate"]) == {"0.001", "0.01"}
    assert trial["fraction_solved"] == max(trial["fraction_solved_per_rate"].values())
    assert trial["best_learning_rate"] in (1e-3, 1e-2)
    # the decay after training is measured on the seeds of the rate the lag counted at
    assert result["cells"][0]["grad_slope_trained_rate"] == trial["best_learning_rate"]


def test_with_a_parallel_executor_the_atlas_has_the_same_cells(tmp_path):
    from lrd.executors import InlineExecutor

    kwargs = {"smoke": True, "log": lambda *_: None, "sweep": (4, 8)}
    serial = atlas.run_atlas(["rnn"], ["adding"], tmp_path / "serial", **kwargs)
    parallel = atlas.run_atlas(
        ["rnn"], ["adding"], tmp_path / "parallel", executor=InlineExecutor(2), **kwargs
    )
    for a, b in zip(serial["cells"], parallel["cells"], strict=True):
        assert a["max_learnable_lag"] == b["max_learnable_lag"] and a["params"] == b["params"]
        assert [t["lag"] for t in b["trials"]] == [4, 8]  # the whole sweep at once
        assert a["trials"] == b["trials"][: len(a["trials"])]  # the serial search stops at its first failure
        assert b["search"]["executor"] == {"name": "inline", "width": 2}


def test_ray_address_without_ray_executor_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        atlas.main(["--ray-address", "auto", "--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "r")])
    assert info.value.code == 2 and "--ray-address needs --executor ray" in capsys.readouterr().err


def test_a_search_that_fails_is_recorded_and_the_atlas_goes_on(tmp_path, monkeypatch):
    real = atlas.lag_search

    def failing(config, **kwargs):
        if config.model.name == "rnn":  # before any trial
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 25380864388 bytes.")
        if config.model.name == "gru":  # after its trials (as if a longer lag did not fit)
            real(config, **kwargs)
            raise RuntimeError("RESOURCE_EXHAUSTED: at the next lag")
        return real(config, **kwargs)

    monkeypatch.setattr(atlas, "lag_search", failing)
    argv = ["--smoke", "--models", "rnn,gru,lstm", "--tasks", "adding", "--workdir", str(tmp_path / "runs")]
    assert atlas.main([*argv, "--out", str(tmp_path / "atlas"), "--sweep", "4"]) == 0
    cells = {c["mixer"]: c for c in json.loads((tmp_path / "atlas.json").read_text())["cells"]}
    assert (
        cells["rnn"]["error"].startswith("RuntimeError: RESOURCE_EXHAUSTED") and cells["rnn"]["trials"] == []
    )
    assert atlas_table.lag_cell(cells["rnn"]) == "error"
    # the trials a search finished before its error are kept, and the table says both
    assert cells["gru"]["error"] == "RuntimeError: RESOURCE_EXHAUSTED: at the next lag"
    assert [t["lag"] for t in cells["gru"]["trials"]] == [4]
    assert atlas_table.lag_cell(cells["gru"]).endswith(", then error")
    assert "error" not in cells["lstm"] and cells["lstm"]["trials"][0]["lag"] == 4  # the atlas went on
    assert "RESOURCE_EXHAUSTED" in (tmp_path / "atlas.csv").read_text()


def test_the_table_of_a_missing_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        atlas_table.main([str(tmp_path / "nope.json")])
    assert info.value.code == 2 and "nope.json do not exist" in capsys.readouterr().err


def test_model_size_counts_params_and_the_state_one_sequence_carries():
    def size(mixer, hidden):
        return atlas.model_size(atlas.search_config("adding", mixer, Path("/unused"), hidden_size=hidden))

    lstm = size("lstm", 8)
    # bare LSTM: 4 gates x (2 inputs + 8 recurrent + 1 bias) x 8 units, then the readout 8 + 1
    assert lstm == {"params": 4 * (2 + 8 + 1) * 8 + 9, "state_size": 2 * 8, "state_per_position": False}
    assert size("urnn", 8)["state_size"] == 8  # 4 complex units, 2 real numbers each
    attention = size("attention", 8)
    assert (
        attention["state_per_position"] and attention["state_size"] == 2 * 8
    )  # a key and a value per position


def test_match_params_sizes_every_mixer_near_the_target(tmp_path):
    target = 2000
    kwargs = {"smoke": True, "log": lambda *_: None, "sweep": (4,), "match_params": target}
    result = atlas.run_atlas(["lstm", "urnn"], ["adding"], tmp_path / "runs", **kwargs)
    assert result["protocol"]["match_params"] == target
    assert result["protocol"]["budgets"]["adding"]["hidden_size"] == f"matched to {target} params"
    cells = {cell["mixer"]: cell for cell in result["cells"]}
    for cell in cells.values():
        assert target / 1.5 <= cell["params"] <= target * 1.5, cell
        assert cell["hidden_size"] in atlas.HIDDEN_LADDER and cell["state_size"] > 0
    # an LSTM has O(width^2) parameters, a uRNN O(width): far apart widths for the same count
    assert 4 * cells["lstm"]["hidden_size"] < cells["urnn"]["hidden_size"]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--match-params", "0"], "--match-params must be a positive count"),
        (["--match-params", "2000", "--hidden-size", "8"], "not given with --hidden-size"),
        (["--models", "rnn,urnn", "--match-params", "100000"], "urnn on adding cannot come within 2x"),
        (["--out", "/dev/null/atlas/out"], "--out '/dev/null/atlas/out': cannot write under '/dev/null'"),
    ],
)
def test_bad_match_params_or_out_exit_2_before_anything_is_written(argv, expected, tmp_path, capsys):
    defaults = ["--models", "rnn", "--tasks", "adding", "--out", str(tmp_path / "out" / "atlas")]
    with pytest.raises(SystemExit) as info:
        atlas.main([*defaults, "--workdir", str(tmp_path / "runs"), *argv])  # the case's flags win
    assert info.value.code == 2 and expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert not list(tmp_path.iterdir())
