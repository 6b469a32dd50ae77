"""Many devices and many hosts: the device mesh of a run, and the multi-process runtime.

A run trains ``members = seeds x learning rates`` independent models as one vmapped program (:mod:`lrd.train`).
On several devices that program is sharded, never rewritten: every leaf of the train state has the members axis
first, and it is laid out over the mesh axis ``"members"`` with a :class:`jax.sharding.NamedSharding`; the batch of
each step may be split over a second axis ``"batch"``. XLA partitions the same jitted step (GSPMD); there is no
``pmap`` and no second code path: one device is a 1x1 mesh.

``run.mesh`` chooses the layout:

* ``"auto"`` (default): every visible device; ``members`` gets the largest count that divides both the number of
  members and of devices, ``batch`` the largest count of what is left that divides the batch size (a device that
  fits neither stays idle, and the run says so);
* ``"members=M"`` or ``"members=M,batch=B"``: exactly that (``M`` must divide the members, ``B`` the batch size,
  and ``M * B`` devices must be visible).

Across hosts, :func:`initialize` starts ``jax.distributed`` (from a cluster launcher's environment, SLURM or TPU
pods, or from explicit coordinator flags) before anything else touches JAX. Every process runs the same program
on its share of the global mesh; only process 0 writes ``config.json``, ``metrics.jsonl``, ``summary.json`` and
plots (:func:`is_primary`), and checkpoints are written collectively by orbax. Values for the host (metrics, the
state to checkpoint) are gathered from every process with :func:`to_host`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "MESH_AXES",
    "parse_mesh",
    "mesh_shape",
    "make_mesh",
    "member_sharding",
    "replicated",
    "shard_members",
    "to_host",
    "is_primary",
    "initialize",
    "describe_mesh",
]

MESH_AXES = ("members", "batch")
_SPEC = re.compile(r"^members=(\d+)(?:,batch=(\d+))?$")


def parse_mesh(spec: str) -> tuple[int, int] | None:
    """``"auto"`` -> ``None``; ``"members=M[,batch=B]"`` -> ``(M, B)``; anything else raises ``ValueError``."""
    if spec == "auto":
        return None
    match = _SPEC.match(spec.replace(" ", ""))
    if match is None or int(match.group(1)) < 1 or int(match.group(2) or 1) < 1:
        raise ValueError(
            f"run.mesh={spec!r} is not a mesh; allowed values: auto, members=M, members=M,batch=B"
        )
    return int(match.group(1)), int(match.group(2) or 1)


def mesh_shape(spec: str, num_members: int, batch_size: int, num_devices: int) -> tuple[int, int]:
    """``(members, batch)`` device counts of the mesh ``spec`` asks for, checked against the run and devices."""
    explicit = parse_mesh(spec)
    if explicit is None:
        members = math.gcd(num_members, num_devices)
        rest = num_devices // members
        batch = max(d for d in range(1, rest + 1) if rest % d == 0 and batch_size % d == 0)
        return members, batch
    members, batch = explicit
    if num_members % members:
        raise ValueError(
            f"run.mesh={spec!r}: members={members} does not divide the {num_members} members "
            "(run.num_seeds x learning rates)"
        )
    if batch_size % batch:
        raise ValueError(f"run.mesh={spec!r}: batch={batch} does not divide optim.batch_size={batch_size}")
    if members * batch > num_devices:
        raise ValueError(f"run.mesh={spec!r} needs {members * batch} devices; {num_devices} are visible")
    return members, batch


def make_mesh(spec: str, num_members: int, batch_size: int) -> Mesh:
    """The run's ``("members", "batch")`` mesh over the first ``members * batch`` global devices."""
    devices = jax.devices()
    shape = mesh_shape(spec, num_members, batch_size, len(devices))
    used = devices[: shape[0] * shape[1]]
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=used)


def describe_mesh(mesh: Mesh) -> dict[str, Any]:
    """What ``summary.json`` records of the mesh."""
    return {
        "shape": {name: int(size) for name, size in mesh.shape.items()},
        "num_devices": int(mesh.devices.size),
        "visible_devices": jax.device_count(),
        "num_processes": jax.process_count(),
        "device_kind": mesh.devices.flat[0].device_kind,
    }


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (members) axis over ``"members"``, the rest replicated."""
    return NamedSharding(mesh, P("members"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _place(value: Any, sharding: NamedSharding) -> jax.Array:
    """A global array with ``sharding`` from a host value every process holds in full."""
    host = np.asarray(value)
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_members(tree: Any, mesh: Mesh) -> Any:
    """Every leaf (members axis first) laid out over the mesh's ``"members"`` axis."""
    sharding = member_sharding(mesh)
    return jax.tree_util.tree_map(lambda leaf: _place(jax.device_get(leaf), sharding), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf replicated on every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda leaf: _place(jax.device_get(leaf), sharding), tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of every leaf; a global array spanning several processes is gathered from all of them (a
    collective: every process must call this with the same tree)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    spread = [
        i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
    ]
    if spread:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
        for i, value in zip(spread, gathered, strict=True):
            leaves[i] = value
    return jax.tree_util.tree_unflatten(treedef, [np.asarray(leaf) for leaf in jax.device_get(leaves)])


def is_primary() -> bool:
    """Process 0 writes the run's files."""
    return jax.process_index() == 0


def launched_as_many_processes() -> bool:
    """Whether a cluster launcher started this program as one of several processes (SLURM ``srun`` with more
    than one task, or a multi-host TPU slice)."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ:
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Start ``jax.distributed`` when asked (explicit flags) or launched by a cluster launcher; return whether it
    did. Must run before any other JAX call. Explicit flags must come together."""
    given = [value is not None for value in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id must be given together")
    if all(given):
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
        return True
    if launched_as_many_processes():
        jax.distributed.initialize()  # the launcher's environment says who and where
        return True
    return False


def sync(name: str) -> None:
    """A barrier across processes (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
