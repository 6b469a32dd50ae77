"""Scale-out: one run over a device mesh (8 simulated CPU devices), two processes with ``jax.distributed``, and the
lag search's parallel protocol, inline and as Ray tasks.

The device count of a JAX process is fixed when JAX starts, so the mesh and multi-process checks run in fresh
subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_lag_search import fake_trials  # the same fake learner as the serial protocol's tests

from lrd.config import ExperimentConfig, apply_overrides
from lrd.distributed import mesh_shape, parse_mesh
from lrd.executors import InlineExecutor
from lrd.lag_search import ksection_lags, lag_search, next_bisection_lag

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "model.name=lstm",
    "model.hidden_size=4",
    "task.lag=5",
    "optim.batch_size=8",
    "run.steps=20",
    "run.eval_every=10",
    "run.eval_batch_size=16",
    "run.checkpoint_every=10",
    "run.early_stop=false",
    "run.tensorboard=false",
]


def _python(code: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_mesh_shapes_and_their_errors():
    assert parse_mesh("auto") is None and parse_mesh("members=4,batch=2") == (4, 2)
    assert mesh_shape("auto", 8, 32, 8) == (8, 1)
    assert mesh_shape("auto", 2, 32, 8) == (2, 4)  # seeds < devices: the batch is split too
    assert mesh_shape("auto", 3, 6, 8) == (1, 2)  # 3 members and 8 devices share no factor; batch 6 takes 2
    assert mesh_shape("members=2", 4, 8, 8) == (2, 1)
    with pytest.raises(ValueError, match="needs 16 devices; 8 are visible"):
        mesh_shape("members=8,batch=2", 8, 8, 8)
    for bad, message in [
        ("run.mesh=members", "run.mesh='members' is not a mesh; allowed values: auto, members=M"),
        ("run.mesh=members=3", "members=3 does not divide the 2 members"),
        ("run.mesh=members=1,batch=3", "batch=3 does not divide optim.batch_size=8"),
    ]:
        with pytest.raises(Exception, match=message):
            apply_overrides(ExperimentConfig(), [*TINY, "run.num_seeds=2", bad])


MESH_SCRIPT = """
    import json, os, sys
    import jax
    import numpy as np
    from lrd.checkpoint import Checkpointer
    from lrd.config import ExperimentConfig, apply_overrides
    from lrd.runner import run_experiment
    from lrd.train import init_members, train_settings, unit_optimizer

    tiny, root = json.loads(sys.argv[1]), sys.argv[2]
    assert jax.device_count() == 8, jax.devices()

    class Killed(Exception):
        pass

    def kill_at_10(state, record):
        if record["step"] == 10:
            raise Killed

    def run(name, mesh, kill=False):
        config = apply_overrides(ExperimentConfig(), tiny + [f"run.workdir={root}/{name}", f"run.mesh={mesh}"])
        if kill:
            try:
                run_experiment(config, progress=False, callbacks=(kill_at_10,))
            except Killed:
                pass
            return None
        summary = run_experiment(config, progress=False)
        task = config.task.build()
        model = config.model.build(task)
        settings = train_settings(config)
        like = jax.eval_shape(lambda: init_members(model, task, unit_optimizer(settings), settings))
        with Checkpointer(f"{root}/{name}/checkpoints") as checkpointer:
            state, _ = checkpointer.restore(20, like)
        leaves = [np.asarray(x).ravel().tolist() for x in jax.tree_util.tree_leaves(state.params)]
        return {"loss": summary["final_eval"]["loss"], "mesh": summary["mesh"], "params": leaves,
                "resumed_from": summary["resumed_from"]}

    out = {
        "eight": run("eight", "auto"),
        "one": run("one", "members=1"),
        "split": run("split", "members=4,batch=2"),
    }
    run("n_to_1", "auto", kill=True)
    out["n_to_1"] = run("n_to_1", "members=1")
    run("1_to_n", "members=1", kill=True)
    out["1_to_n"] = run("1_to_n", "auto")
    print("RESULT" + json.dumps(out))
"""


def test_eight_seeds_on_eight_devices_equal_one_device_and_checkpoints_move_between_meshes(tmp_path):
    done = _python(
        MESH_SCRIPT,
        json.dumps([*TINY, "run.num_seeds=8"]),
        str(tmp_path),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT", 1)[1])
    assert (
        out["eight"]["mesh"]["shape"] == {"members": 8, "batch": 1}
        and out["eight"]["mesh"]["num_devices"] == 8
    )
    assert out["one"]["mesh"]["shape"] == {"members": 1, "batch": 1}
    assert out["split"]["mesh"]["shape"] == {"members": 4, "batch": 2}
    reference = out["one"]
    for name in ("eight", "split", "n_to_1", "1_to_n"):
        assert out[name]["loss"] == pytest.approx(reference["loss"], rel=1e-5, abs=1e-6), name
        for got, want in zip(out[name]["params"], reference["params"], strict=True):
            assert got == pytest.approx(want, rel=1e-4, abs=1e-6), name
    assert out["n_to_1"]["resumed_from"] == 10 and out["1_to_n"]["resumed_from"] == 10
    assert len(set(map(tuple, [reference["loss"]]))) == 1 and len(set(reference["loss"])) == 8  # seeds differ


PROCESS_SCRIPT = """
    import json, sys
    from lrd.distributed import initialize
    process_id, port, tiny = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    initialize(f"127.0.0.1:{port}", 2, process_id)
    import jax
    from lrd.config import ExperimentConfig, apply_overrides
    from lrd.runner import run_experiment
    summary = run_experiment(apply_overrides(ExperimentConfig(), tiny), progress=False)
    print("RESULT" + json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                                 "loss": summary["final_eval"]["loss"], "mesh": summary["mesh"]}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_with_jax_distributed_agree_and_only_process_0_writes(tmp_path):
    tiny = [*TINY, "run.num_seeds=2", f"run.workdir={tmp_path / 'two'}"]
    port = str(_free_port())
    env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PROCESS_SCRIPT), str(i), port, json.dumps(tiny)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.split("RESULT", 1)[1]) for out, _ in outputs]
    assert [r["process"] for r in results] == [0, 1] and {r["processes"] for r in results} == {2}
    assert results[0]["loss"] == results[1]["loss"]
    assert results[0]["mesh"]["num_devices"] == 2 and results[0]["mesh"]["num_processes"] == 2
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["final_eval"]["loss"] == results[0]["loss"]
    assert (
        len([line for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]) == 4
    )  # 2x2, once
    # the same run in one process on one device gives the same numbers
    from lrd.runner import run_experiment

    alone = run_experiment(
        apply_overrides(ExperimentConfig(), [*tiny[:-1], f"run.workdir={tmp_path / 'one'}"]), progress=False
    )
    assert alone["final_eval"]["loss"] == pytest.approx(results[0]["loss"], rel=1e-5)


def test_ksection_lags_are_geometric_inside_the_bracket():
    assert ksection_lags(100, 200, 1, 0.01) == [next_bisection_lag(100, 200, 0.01)]
    assert ksection_lags(10, 1000, 3, 0.01) == [32, 100, 316]
    assert ksection_lags(10, 12, 4, 0.01) == [11]
    assert ksection_lags(100, 105, 3, 0.1) == []


SEARCH = ["search.sweep=10,20,50,100,200,500,1000", "search.resolution=0.001", "search.max_bisections=30"]


@pytest.mark.parametrize("threshold", [37, 640, 5])
def test_the_parallel_protocol_finds_the_serial_search_s_lag(tmp_path, monkeypatch, threshold):
    results, calls = {}, {"serial": [], "inline4": []}
    for name, executor in [("serial", None), ("inline4", InlineExecutor(4))]:
        fake_trials(monkeypatch, threshold, calls[name])
        config = apply_overrides(ExperimentConfig(), [f"run.workdir={tmp_path / name}", *SEARCH])
        results[name] = lag_search(config, progress=False, log=lambda *_: None, executor=executor)
    assert results["serial"]["max_learnable_lag"] == results["inline4"]["max_learnable_lag"]
    assert results["serial"]["smallest_unlearnable_lag"] == results["inline4"]["smallest_unlearnable_lag"]
    if threshold >= 10:
        assert results["inline4"]["max_learnable_lag"] == threshold  # resolution 0.001: the exact boundary
    assert results["inline4"]["executor"] == {"name": "inline", "width": 4}
    serial_calls, parallel_calls = calls["serial"], calls["inline4"]
    assert parallel_calls[:7] == [10, 20, 50, 100, 200, 500, 1000]  # the whole sweep at once
    if threshold == 640:  # 4 lags a round: fewer rounds than the serial search's bisections
        rounds = (len(parallel_calls) - 7 + 3) // 4
        assert rounds < len(serial_calls) - len([lag for lag in serial_calls if lag in (10, 20, 50, 100)])


def test_ray_search_equals_the_serial_search_and_reads_finished_trials_back(tmp_path):
    pytest.importorskip("ray")
    from lrd.executors import RayExecutor

    search = [
        "model.name=rnn",
        *TINY[1:],
        "run.num_seeds=2",
        "search.sweep=3,6",
        "search.patience=2",
        "search.max_bisections=0",
    ]
    serial = lag_search(
        apply_overrides(ExperimentConfig(), [*search, f"run.workdir={tmp_path / 'serial'}"]),
        progress=False,
        log=lambda *_: None,
    )
    # a search killed after its first trial: lag 3 is finished in the Ray search's workdir, lag 6 is not
    ray_config = apply_overrides(ExperimentConfig(), [*search, f"run.workdir={tmp_path / 'ray'}"])
    lag_search(ray_config, progress=False, log=lambda *_: None)
    shutil.rmtree(tmp_path / "ray" / "lag_000006")
    (tmp_path / "ray" / "lag_search.json").unlink()
    finished = tmp_path / "ray" / "lag_000003" / "metrics.jsonl"
    stamp = finished.stat().st_mtime_ns
    executor = RayExecutor(num_cpus=2)
    try:
        result = lag_search(ray_config, progress=False, log=lambda *_: None, executor=executor)
    finally:
        executor.shutdown()
    assert finished.stat().st_mtime_ns == stamp  # read back, not trained again
    assert result["executor"]["name"] == "ray" and result["executor"]["width"] == 2
    for key in ("max_learnable_lag", "smallest_unlearnable_lag"):
        assert result[key] == serial[key]
    strip = ("wall_time_s", "workdir")
    for a, b in zip(result["trials"], serial["trials"], strict=True):
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }
