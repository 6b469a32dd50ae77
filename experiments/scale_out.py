"""Scale-out measurements: seed-steps per second against the number of devices of a run's mesh, and the wall time of
one lag search run serially and as Ray tasks.

    python experiments/scale_out.py --out experiments/results/scale_out_cpu2.json
    python experiments/scale_out.py --devices 1,2 --steps 20 --out /tmp/scale.json --no-ray      # seconds

Devices: each count runs in a fresh process (the device count of a JAX process is fixed when it starts); on a CPU
host they are simulated (``--xla_force_host_platform_device_count``) and share the host's cores, so on a small CPU
the table measures the mesh's overhead, not a speed-up; on a GPU node each count is that many real GPUs
(``CUDA_VISIBLE_DEVICES`` is not touched: the mesh takes the first N devices through ``run.mesh``).
Each row: ``members`` seeds of an LSTM (hidden 64) on adding at lag 100, batch 32, ``steps`` steps timed after one
warm-up evaluation interval, as seed-steps per second (steps/s x seeds) and relative to one device.

Search: the same small lag search (GRU, hidden 32, adding, sweep 10..80, 300 steps, 2 seeds) serially in one
process and with ``--executor ray`` on a local Ray, each from an empty workdir; the table gives both wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MESH_RUN = """
    import json, sys, time
    import jax
    from lrd.config import ExperimentConfig, apply_overrides
    from lrd.runner import build_experiment
    from lrd.train import train
    members, steps, devices = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    config = apply_overrides(ExperimentConfig(), [
        "model.name=lstm", "model.hidden_size=64", "task.name=adding", "task.lag=100", "optim.batch_size=32",
        f"run.num_seeds={members}", f"run.steps={steps}", f"run.eval_every={steps // 2}", "run.eval_batch_size=64",
        "run.early_stop=false", f"run.mesh=members={min(devices, members)}",
    ])
    task, model, settings = build_experiment(config)
    rates = []
    train(model, task, settings, progress=False, callbacks=[lambda s, r: rates.append(r["steps_per_s"])])
    print("RESULT" + json.dumps({"devices": jax.device_count(), "steps_per_s": rates[-1],
                                 "device_kind": jax.devices()[0].device_kind}))
"""


def mesh_row(devices: int, members: int, steps: int) -> dict:
    env = dict(os.environ)
    if env.get("JAX_PLATFORMS", "cpu") == "cpu":
        env["XLA_FLAGS"] = (
            f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
        )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MESH_RUN), str(members), str(steps), str(devices)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    row = json.loads(done.stdout.split("RESULT", 1)[1])
    row["members"] = members
    row["seed_steps_per_s"] = row["steps_per_s"] * members
    return row


def search_time(executor: str, workdir: Path) -> float:
    argv = [
        sys.executable, "-m", "lrd.cli", "lag-search", "--config", "adding:model=gru", "--workdir", str(workdir),
        "--hidden-size", "32", "--steps", "300", "--num-seeds", "2", "--search.sweep", "10,20,40,80",
        "--search.max_bisections", "2", "--executor", executor, "--json",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    parser.add_argument("--members", type=int, default=8, help="seeds of the timed run")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per device count")
    parser.add_argument("--no-ray", action="store_true", help="skip the serial vs Ray search")
    parser.add_argument("--out", required=True, help="where to write the JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        parser.exit(2, f"scale_out: --out {args.out!r}: the directory does not exist\n")
    from lrd.metrics_log import environment

    rows = [mesh_row(int(d), args.members, args.steps) for d in args.devices.split(",")]
    for row in rows:
        row["relative_to_one_device"] = row["seed_steps_per_s"] / rows[0]["seed_steps_per_s"]
        print(
            f"devices {row['devices']:>2}  members {row['members']}  seed-steps/s {row['seed_steps_per_s']:8.1f}"
            f"  x{row['relative_to_one_device']:.2f}"
        )
    result = {"mesh": rows, "environment": environment(), "command": " ".join(sys.argv)}
    if not args.no_ray:
        with tempfile.TemporaryDirectory() as tmp:
            serial = search_time("serial", Path(tmp) / "serial")
            ray = search_time("ray", Path(tmp) / "ray")
        result["search_wall_time_s"] = {"serial": serial, "ray": ray, "cpus": os.cpu_count()}
        print(f"lag search: serial {serial:.0f} s, ray {ray:.0f} s on {os.cpu_count()} CPUs")
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
