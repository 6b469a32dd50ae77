"""The runner: bitwise resume after a kill, corrupt-checkpoint fallback, NaN handling, workdir safety, seeds."""

from __future__ import annotations

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.checkpoint import Checkpointer
from lrd.cli import main
from lrd.config import ExperimentConfig, apply_overrides
from lrd.metrics_log import read_metrics
from lrd.registry import get_mixer
from lrd.runner import NumericalFault, WorkdirError, run_experiment
from lrd.tasks.adding import Adding as AddingTask
from lrd.train import apply_batch, init_state, init_states, make_chunk_fn, make_optimizer, seed_keys

TINY = [
    "model.name=lstm",
    "model.hidden_size=8",
    "task.lag=10",
    "optim.batch_size=8",
    "run.steps=40",
    "run.eval_every=10",
    "run.eval_batch_size=32",
    "run.checkpoint_every=10",
    "run.keep_checkpoints=5",
    "run.num_seeds=2",
    "run.early_stop=false",
    "run.tensorboard=false",
]


def tiny_config(workdir, *extra: str) -> ExperimentConfig:
    return apply_overrides(ExperimentConfig(), [*TINY, f"run.workdir={workdir}", *extra])


def final_state(workdir, config: ExperimentConfig):
    task = config.task.build()
    model = config.model.build(task)
    optimizer = make_optimizer(config.optim.learning_rate, config.optim.clip_norm)
    like = init_states(model, task, optimizer, config.run.seed, config.run.num_seeds)
    with Checkpointer(workdir / "checkpoints") as checkpointer:
        state, _ = checkpointer.restore(checkpointer.steps()[-1], like)
    return state


def checkpoint_steps(directory) -> list[int]:
    with Checkpointer(directory) as checkpointer:
        return checkpointer.steps()


def comparable(records):
    return [{k: v for k, v in r.items() if k not in ("steps_per_s", "wall_time_s")} for r in records]


class Killed(Exception):
    pass


def test_killed_run_resumes_to_identical_params_and_metrics(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    config_whole, config_broken = tiny_config(whole), tiny_config(broken)
    summary = run_experiment(config_whole, progress=False)
    assert summary["status"] == "completed" and summary["steps_run"] == 40

    def kill_at_30(state, record):
        if record["step"] == 30:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(config_broken, progress=False, callbacks=(kill_at_30,))
    assert not (broken / "summary.json").exists()
    assert checkpoint_steps(broken / "checkpoints") == [10, 20, 30]

    # Damage the newest checkpoint: the resume must warn, fall back to step 20 and still end identically.
    for path in (broken / "checkpoints" / "30").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="checkpoint at step 30 .* unreadable"):
        resumed = run_experiment(config_broken, progress=False)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == 20

    a, b = final_state(whole, config_whole), final_state(broken, config_broken)
    chex.assert_trees_all_equal(a, b)  # bitwise, and the same tree structure
    assert comparable(read_metrics(whole / "metrics.jsonl")) == comparable(
        read_metrics(broken / "metrics.jsonl")
    )
    assert [r["step"] for r in read_metrics(broken / "metrics.jsonl")] == [10, 10, 20, 20, 30, 30, 40, 40]

    # A finished run is not trained again.
    again = run_experiment(config_broken, progress=False)
    assert again == json.loads((broken / "summary.json").read_text())


def test_workdir_with_another_config_is_refused_unless_overwritten(tmp_path):
    config = tiny_config(tmp_path, "run.steps=10", "run.checkpoint_every=10")
    run_experiment(config, progress=False)
    before = (tmp_path / "metrics.jsonl").read_text()
    changed = tiny_config(tmp_path, "run.steps=10", "run.checkpoint_every=10", "model.hidden_size=16")
    with pytest.raises(WorkdirError, match=r"model.hidden_size: 8 -> 16.*--overwrite"):
        run_experiment(changed, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing clobbered
    assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden_size"] == 8
    summary = run_experiment(changed, overwrite=True, progress=False)
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden_size"] == 16


def test_non_run_directory_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(WorkdirError, match="not an lrd run"):
        run_experiment(tiny_config(tmp_path), progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_nan_batch_is_skipped_and_counted():
    config = tiny_config("unused")
    task = config.task.build()
    model = config.model.build(task)
    optimizer = make_optimizer(1e-2)
    state = init_state(model, task, optimizer, jax.random.PRNGKey(0))
    batch = task.sample(jax.random.PRNGKey(1), 8)
    poisoned = batch._replace(inputs=batch.inputs.at[3, 4, 0].set(jnp.nan))
    new, metrics = apply_batch(state, poisoned, model=model, task=task, optimizer=optimizer)
    assert int(new.num_skipped) == 1 and int(new.step) == 1 and float(metrics["finite"]) == 0.0
    chex.assert_trees_all_equal(state.params, new.params)
    good, _ = apply_batch(new, batch, model=model, task=task, optimizer=optimizer)
    assert int(good.num_skipped) == 1
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(
            jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(good.params), strict=True
        )
    )


def test_a_run_that_keeps_producing_nans_stops_with_the_step_range(tmp_path, monkeypatch):
    original = AddingTask.sample

    def poisoned(self, key, batch_size):
        batch = original(self, key, batch_size)
        return batch._replace(inputs=batch.inputs * jnp.nan)

    monkeypatch.setattr(AddingTask, "sample", poisoned)
    config = tiny_config(tmp_path)
    with pytest.raises(
        NumericalFault, match=r"skipped \[10, 10\] of the 10 steps between step 0 and step 10"
    ):
        run_experiment(config, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "numerical_fault" and "between step 0 and step 10" in summary["error"]
    assert checkpoint_steps(tmp_path / "checkpoints") == []  # nothing written after the fault


def test_checkpointer_never_writes_non_finite_state(tmp_path):
    config = tiny_config("unused")
    task = config.task.build()
    model = config.model.build(task)
    state = init_states(model, task, make_optimizer(1e-3), 0, 2)
    checkpointer = Checkpointer(tmp_path)
    bad = state._replace(
        params=jax.tree_util.tree_map(lambda p: p.at[(0,) * p.ndim].set(jnp.inf), state.params)
    )
    with pytest.warns(UserWarning, match="NaN or Inf"):
        assert checkpointer.save(5, bad) is False
    assert checkpointer.save(6, state) is True
    assert checkpointer.steps() == [6]
    shutil.rmtree(tmp_path / "6" / "state")  # a checkpoint with its state gone falls back to nothing
    with pytest.warns(UserWarning, match="unreadable"):
        assert checkpointer.restore_latest(state) is None
    checkpointer.close()


def test_seed_i_of_a_vmapped_run_equals_that_seed_run_alone():
    config = tiny_config("unused")
    task = config.task.build()
    model = config.model.build(task)
    optimizer = make_optimizer(1e-2)
    chunk = make_chunk_fn(model, task, optimizer, batch_size=8, num_steps=5)
    together, metrics = chunk(init_states(model, task, optimizer, seed=3, num_seeds=3))
    for i, key in enumerate(seed_keys(3, 3)):
        alone = jax.tree_util.tree_map(lambda x: x[None], init_state(model, task, optimizer, key))
        alone, alone_metrics = chunk(alone)
        seed_i = jax.tree_util.tree_map(lambda x, i=i: x[i], together)
        chex.assert_trees_all_close(
            seed_i, jax.tree_util.tree_map(lambda y: y[0], alone), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(metrics["loss"][i], alone_metrics["loss"][0], rtol=1e-5)
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])  # and the seeds do differ


def test_lrd_run_cli(tmp_path, capsys):
    workdir = tmp_path / "cli"
    changed = {"run.steps": "10", "run.checkpoint_every": "10", "run.tensorboard": "true"}
    tiny = [o for o in TINY if o.partition("=")[0] not in changed]  # a field given twice is an error
    args = ["run", "--workdir", str(workdir), *[f"--{o}" for o in tiny]]
    args += [f"--{key}={value}" for key, value in changed.items()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "seed 0:" in out and "seed 1:" in out
    assert {p.name for p in workdir.iterdir()} >= {
        "config.json",
        "checkpoints",
        "metrics.jsonl",
        "summary.json",
    }
    assert any((workdir / "tensorboard").iterdir())
    assert len(read_metrics(workdir / "metrics.jsonl")) == 2
    assert main(["run", "--workdir", str(workdir), "--model.name", "nope"]) == 2
    assert "model.name='nope' is unknown" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.py"), "--workdir", str(workdir)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_checkpoints_follow_the_cadence_when_evaluations_do_not_divide_it(tmp_path):
    # Given evaluations every 3 steps and checkpoints every 5, When 10 steps run, Then a checkpoint follows the
    # first evaluation at or past each multiple of 5 (step 6, step 10), and the last step.
    config = tiny_config(tmp_path, "run.steps=10", "run.eval_every=3", "run.checkpoint_every=5")
    run_experiment(config, progress=False)
    with Checkpointer(tmp_path / "checkpoints") as checkpointer:
        assert checkpointer.steps() == [6, 10]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["seed"] == 0] == [3, 6, 9, 10]


def test_a_run_is_its_config_not_the_spelling_of_its_path(tmp_path, monkeypatch):
    # Given a finished run in tmp/a, When the same command addresses it as tmp/a/, by its absolute path, or after the
    # workdir was moved, Then it is the same run: the summary is returned and nothing is trained or rewritten.
    config = tiny_config(tmp_path / "a", "run.steps=10", "run.checkpoint_every=10")
    summary = run_experiment(config, progress=False)
    config_mtime = (tmp_path / "a" / "config.json").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("lrd.runner.train", no_training)
    monkeypatch.setattr("lrd.runner.write_json", no_training)  # and nothing is rewritten
    for spelling in (f"{tmp_path}/a/", str((tmp_path / "a").resolve()), f"{tmp_path}/./a"):
        again = run_experiment(config.replace(run={"workdir": spelling}), progress=False)
        assert again["steps_run"] == summary["steps_run"] and again["status"] == "completed"
    shutil.move(tmp_path / "a", tmp_path / "moved")
    moved = run_experiment(config.replace(run={"workdir": str(tmp_path / "moved")}), progress=False)
    assert moved["final_eval"] == summary["final_eval"]
    assert (tmp_path / "moved" / "config.json").stat().st_mtime_ns == config_mtime


def test_refusing_a_finished_run_says_overwrite_deletes_it(tmp_path):
    run_experiment(tiny_config(tmp_path, "run.steps=10", "run.checkpoint_every=10"), progress=False)
    changed = tiny_config(tmp_path, "run.steps=10", "run.checkpoint_every=10", "optim.batch_size=4")
    with pytest.raises(
        WorkdirError, match=r"holds a finished run .*--overwrite to delete that run's checkpoints"
    ):
        run_experiment(changed, progress=False)


def _event_steps(directory) -> list[tuple[str, int]]:
    """``(tag, step)`` of every scalar in the TensorBoard event files under ``directory`` (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            out.extend((value.tag, event.step) for value in event.summary.value)
    return out


def test_tensorboard_after_a_resume_has_each_step_once(tmp_path):
    # Given a run killed after step 30 whose newest checkpoint is 20, When it resumes, Then steps 30.. are redone
    # and TensorBoard (rewritten from the kept metrics) holds every (tag, step) exactly once, as metrics.jsonl does.
    config = tiny_config(tmp_path, "run.tensorboard=true", "run.checkpoint_every=20")

    def kill_at_30(state, record):
        if record["step"] == 30:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(config, progress=False, callbacks=(kill_at_30,))
    run_experiment(config, progress=False)
    events = _event_steps(tmp_path / "tensorboard")
    assert len(events) == len(set(events))
    assert sorted({step for tag, step in events if tag == "eval/loss/seed0"}) == [10, 20, 30, 40]


def test_a_second_process_is_refused_and_a_stale_lock_taken_over(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    config = tiny_config(tmp_path, "run.steps=10", "run.checkpoint_every=10")
    lock = tmp_path / ".lock"
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    # Held by a live process (this one): refused, naming it, and nothing trained.
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    with pytest.raises(WorkdirError, match=rf"is in use by process {os.getpid()} on "):
        run_experiment(config, progress=False)
    assert not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(WorkdirError, match="is in use by process"):
        run_experiment(config, progress=False, overwrite=True)  # --overwrite never deletes a live run's files
    # Held by a process that is gone (kill -9): taken over with a warning; the lock is released at the end.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    with pytest.warns(UserWarning, match=f"the process {dead.pid} that held this workdir is gone"):
        summary = run_experiment(config, progress=False)
    assert summary["status"] == "completed" and not lock.exists()


def test_sigterm_checkpoints_stops_with_status_4_and_the_same_command_resumes_bitwise(tmp_path):
    # Given `lrd run` in a subprocess, When it gets SIGTERM after its first evaluation, Then it finishes the chunk,
    # checkpoints, writes summary.json with status "preempted" and exits 4; the same command then completes, with
    # the parameters of an uninterrupted run, bit for bit.
    import os
    import signal
    import subprocess
    import sys
    import time

    overrides = [o for o in TINY if not o.startswith(("run.steps", "run.eval_every", "run.checkpoint_every"))]
    overrides += ["run.steps=4000", "run.eval_every=20", "run.checkpoint_every=2000"]
    argv = [sys.executable, "-m", "lrd.cli", "run", *[f"--{o}" for o in overrides]]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen(
        [*argv, "--workdir", str(tmp_path / "stopped")], env=env, stderr=subprocess.PIPE
    )
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 4, stderr.decode()[-2000:]
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert summary["status"] == "preempted" and "SIGTERM" in summary["error"]
    stopped_at = summary["steps_run"]
    assert 0 < stopped_at < 4000 and checkpoint_steps(tmp_path / "stopped" / "checkpoints")[-1] == stopped_at
    assert not (tmp_path / "stopped" / ".lock").exists()

    resumed = subprocess.run([*argv, "--workdir", str(tmp_path / "stopped")], env=env, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    whole = subprocess.run([*argv, "--workdir", str(tmp_path / "whole")], env=env, capture_output=True)
    assert whole.returncode == 0
    config = apply_overrides(ExperimentConfig(), overrides)
    chex.assert_trees_all_equal(
        final_state(tmp_path / "whole", config), final_state(tmp_path / "stopped", config)
    )
    resumed_summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert resumed_summary["status"] == "completed" and resumed_summary["resumed_from"] == stopped_at


def test_the_watchdog_dumps_every_thread_stack_when_a_run_makes_no_progress(tmp_path):
    # Given a watchdog of 0.3 s and an evaluation callback that stalls for 3 s, Then stacks.txt holds the stall's
    # Python stack (the run still completes); a run without stalls leaves no stacks.txt.
    import time

    def stall(state, record):
        if record["step"] == 20:
            time.sleep(3.0)

    stalled = tiny_config(tmp_path / "stalled", "run.watchdog_s=0.3")
    assert run_experiment(stalled, progress=False, callbacks=(stall,))["status"] == "completed"
    stacks = (tmp_path / "stalled" / "stacks.txt").read_text()
    assert "stall" in stacks and "Thread" in stacks, stacks[-3000:]
    run_experiment(tiny_config(tmp_path / "calm", "run.watchdog_s=600"), progress=False)
    assert not (tmp_path / "calm" / "stacks.txt").exists()


def test_an_unwritable_workdir_is_a_one_line_error_and_a_finished_run_in_one_is_read_back(
    tmp_path, monkeypatch
):
    # Permissions do not bind root (CI runs as root), so "unwritable" is simulated at os.access, which the runner
    # asks before writing anything.
    import os

    finished = tmp_path / "finished"
    config = tiny_config(finished, "run.steps=10", "run.checkpoint_every=10")
    summary = run_experiment(config, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: False if str(path) in (str(finished), str(empty)) else real_access(path, mode),
    )
    assert run_experiment(config, progress=False) == summary  # read back, nothing written
    with pytest.raises(WorkdirError, match=r"run.workdir='.*empty' is not writable"):
        run_experiment(tiny_config(empty), progress=False)
    assert list(empty.iterdir()) == []


def test_a_learning_rate_grid_run_logs_each_member_summarises_per_rate_and_resumes(tmp_path):
    grid = ["optim.learning_rate=1e-2,1e-3", "run.steps=20"]
    config = tiny_config(tmp_path / "grid", *grid)
    summary = run_experiment(config, progress=False)
    assert summary["learning_rates"] == [1e-2, 1e-3] and len(summary["solved"]) == 4
    assert [r["learning_rate"] for r in summary["per_rate"]] == [1e-2, 1e-3]
    rows = [r for r in read_metrics(tmp_path / "grid" / "metrics.jsonl") if r["step"] == 20]
    assert [(r["learning_rate"], r["seed"]) for r in rows] == [(1e-2, 0), (1e-2, 1), (1e-3, 0), (1e-3, 1)]
    assert summary["final_eval"]["loss"] == [r["eval_loss"] for r in rows]
    # the members at rate 1e-3 are the plain run at 1e-3
    alone = run_experiment(
        tiny_config(tmp_path / "alone", "optim.learning_rate=1e-3", "run.steps=20"), progress=False
    )
    np.testing.assert_allclose(summary["final_eval"]["loss"][2:], alone["final_eval"]["loss"], rtol=1e-5)
    # a grid run killed after step 10 resumes to the same metrics (and summary) as the uninterrupted one

    def kill_at_10(state, record):
        if record["step"] == 10:
            raise Killed

    broken = tiny_config(tmp_path / "broken", *grid)
    with pytest.raises(Killed):
        run_experiment(broken, progress=False, callbacks=(kill_at_10,))
    resumed = run_experiment(broken, progress=False)
    assert resumed["resumed_from"] == 10 and resumed["final_eval"] == summary["final_eval"]
    assert comparable(read_metrics(tmp_path / "broken" / "metrics.jsonl")) == comparable(
        read_metrics(tmp_path / "grid" / "metrics.jsonl")
    )


def test_a_resume_under_other_scan_modes_says_it_is_not_bit_for_bit(tmp_path, monkeypatch):
    # Checkpoints carry the scan modes "auto" resolved to; a default changed between kill and resume (here the
    # LRU's CPU default, patched) warns, and the run finishes under the new mode.
    config = tiny_config(tmp_path / "run", "model.name=lru")

    def kill_at_20(state, record):
        if record["step"] == 20:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(config, progress=False, callbacks=(kill_at_20,))
    lru = get_mixer("lru").cls
    monkeypatch.setattr(lru, "AUTO_SCAN_MODES", {**lru.AUTO_SCAN_MODES, "cpu": "associative"})
    with pytest.warns(
        UserWarning, match="scan modes {'lru': 'associative'}; the run so far used {'lru': 'sequen"
    ):
        resumed = run_experiment(config, progress=False)
    assert resumed["status"] == "completed" and resumed["scan_modes"] == {"lru": "associative"}
