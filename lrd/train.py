"""Training: pure, jit-able steps and a loop that trains ``num_seeds`` independent models as one program.

* :func:`train_step` (pure): sample a fresh batch from ``fold_in(state.key, state.step)``, take one optimizer
  step, and *skip* the update (counting it) when the loss or any gradient is not finite.
* :func:`eval_step` (pure): task metrics on a batch.
* :func:`train`: vmaps the step over a leading *members* axis (params, optimizer state, keys), scans
  ``eval_every`` steps inside one compiled call, evaluates every member on one fixed held-out batch, and stops
  early when every seed of some learning rate meets the task's ``solved`` criterion.

Members: ``num_seeds`` seeds for each rate of the learning-rate grid (``optim.learning_rate`` may list several),
rate-major: member ``m`` is seed ``m % num_seeds`` at rate ``m // num_seeds``. Every member of seed ``i`` starts
from seed ``i``'s initialisation and sees seed ``i``'s data; the rate multiplies the update of an optimizer built
with unit rate (``rate * (-u)``, the same float32 product as Adam's own ``-rate * u``), so member ``(i, j)`` is
the run of rate ``j`` alone. With one rate the members are the seeds.

Because the data key is derived from ``(seed key, step)``, a run resumed from a checkpoint of its state sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lrd.config import OPTIMIZERS
from lrd.distributed import describe_mesh, make_mesh, replicate, shard_members, to_host
from lrd.tasks.base import Batch, Task

if TYPE_CHECKING:
    from lrd.config import ExperimentConfig

__all__ = [
    "TrainState",
    "TrainSettings",
    "train_settings",
    "make_optimizer",
    "init_state",
    "init_states",
    "train_step",
    "eval_step",
    "train",
    "held_out_batch",
    "member_index",
]


class TrainState(NamedTuple):
    """Everything a run needs to continue bit-for-bit: step, params, optimizer state, data key, skip count."""

    step: jax.Array  # int32[]
    params: Any
    opt_state: Any
    key: jax.Array  # uint32[2]: raw PRNG key of this seed's data stream
    num_skipped: jax.Array  # int32[]: updates skipped for a non-finite loss or gradient


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What :func:`train` needs beyond the model and the task: plain values, validated where they come from
    (the ``optim`` and ``run`` sections of :class:`lrd.config.ExperimentConfig`); build it with
    :func:`train_settings`."""

    steps: int
    batch_size: int
    learning_rates: tuple[float, ...]  # the grid; one rate is a one-element grid
    clip_norm: float
    weight_decay: float
    num_seeds: int
    seed: int
    eval_every: int
    eval_batch_size: int
    early_stop: bool
    eval_seed: int = 1_000_003
    mesh: str = "auto"
    optimizer: str = "adam"

    @property
    def num_members(self) -> int:
        """Trained models in the program: one per (learning rate, seed)."""
        return len(self.learning_rates) * self.num_seeds

    def member(self, index: int) -> tuple[int, int]:
        """``(rate index, seed)`` of member ``index`` (rate-major)."""
        return divmod(index, self.num_seeds)


def train_settings(config: ExperimentConfig) -> TrainSettings:
    """The :class:`TrainSettings` of a validated config (the one place they are built)."""
    run, optim = config.run, config.optim
    return TrainSettings(
        steps=run.steps,
        batch_size=optim.batch_size,
        learning_rates=optim.learning_rates,
        clip_norm=optim.clip_norm,
        weight_decay=optim.weight_decay,
        num_seeds=run.num_seeds,
        seed=run.seed,
        eval_every=run.eval_every,
        eval_batch_size=run.eval_batch_size,
        early_stop=run.early_stop,
        mesh=run.mesh,
        optimizer=optim.name,
    )


RMSPROP_DECAY = 0.9  # the uRNN paper's code (Arjovsky et al. 2016): v <- 0.9 v + 0.1 g^2, v starting at 1e-3
RMSPROP_INITIAL_SCALE = 1e-3
RMSPROP_EPS = 1e-8  # under the square root; theirs has none: this keeps a gradient that stays 0 from 0 / 0


def make_optimizer(
    learning_rate: float, clip_norm: float = 1.0, weight_decay: float = 0.0, name: str = "adam"
):
    """The update rule ``name`` after clipping the gradient to global norm ``clip_norm``.

    ``"adam"`` (AdamW when ``weight_decay > 0``), ``"adamw"`` (the same), or ``"rmsprop"``: the RMSProp of the
    uRNN paper's code, ``v_t = 0.9 v_{t-1} + 0.1 g_t^2`` from ``v_0 = 1e-3``, update ``-rate g_t / sqrt(v_t +
    1e-8)``, no momentum.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name={name!r} is unknown; allowed values: {', '.join(OPTIMIZERS)}")
    if name == "rmsprop":
        rule = optax.rmsprop(
            learning_rate,
            decay=RMSPROP_DECAY,
            eps=RMSPROP_EPS,
            eps_in_sqrt=True,
            initial_scale=RMSPROP_INITIAL_SCALE,
        )
    elif weight_decay:
        rule = optax.adamw(learning_rate, weight_decay=weight_decay)
    else:
        rule = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(clip_norm), rule)


def init_state(model: nn.Module, task: Task, optimizer, key: jax.Array) -> TrainState:
    """A fresh state for one seed: params from ``key``, data stream from an independent split of it."""
    init_key, data_key = jax.random.split(key)
    example = task.sample(jax.random.PRNGKey(0), 1).inputs
    params = model.init(init_key, example)["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        key=data_key,
        num_skipped=jnp.zeros((), jnp.int32),
    )


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """``[num_seeds, 2]`` keys: seed ``i`` of a vmapped run gets ``fold_in(PRNGKey(seed), i)``."""
    base = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(base, i) for i in range(num_seeds)])


def init_states(model: nn.Module, task: Task, optimizer, seed: int, num_seeds: int) -> TrainState:
    """States for ``num_seeds`` seeds stacked along a leading axis.

    Each seed is initialised by the same compiled function, one after another, and the results are stacked (the
    same values as a vmapped init). Not vmapped on purpose: orthogonal initialisers run a QR factorisation, and
    XLA:CPU's batched LAPACK kernel (``ParallelBatchMap``) waits inside the intra-op thread pool for tasks it
    queued on that same pool; with as many batch items as pool threads (2 seeds on 2 cores) every thread can end up
    waiting and the process hangs for ever (seen in about 1 run in 4 of ``lrd train --num-seeds 2`` on 2 cores).
    """
    init_one = jax.jit(lambda key: init_state(model, task, optimizer, key))
    states = [init_one(key) for key in seed_keys(seed, num_seeds)]
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def member_index(rate_index: int, seed: int, num_seeds: int) -> int:
    """The position of ``(rate, seed)`` on the members axis (rate-major)."""
    return rate_index * num_seeds + seed


def init_members(model: nn.Module, task: Task, optimizer, settings: TrainSettings) -> TrainState:
    """States of every member: :func:`init_states` of the seeds, repeated for each learning rate (rate-major)."""
    states = init_states(model, task, optimizer, settings.seed, settings.num_seeds)
    repeats = len(settings.learning_rates)
    if repeats == 1:
        return states
    return jax.tree_util.tree_map(lambda leaf: jnp.concatenate([leaf] * repeats), states)


def member_rates(settings: TrainSettings) -> jax.Array:
    """``float32[members]``: the learning rate of each member."""
    return jnp.repeat(jnp.asarray(settings.learning_rates, jnp.float32), settings.num_seeds)


def unit_optimizer(settings: TrainSettings):
    """The optimizer of every member at rate 1; :func:`apply_batch` scales its update by the member's rate."""
    return make_optimizer(1.0, settings.clip_norm, settings.weight_decay, settings.optimizer)


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def apply_batch(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    task: Task,
    optimizer,
    learning_rate: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on ``batch``; a non-finite loss or gradient leaves params unchanged and is counted.

    ``learning_rate`` (a scalar, possibly traced) multiplies the update of an ``optimizer`` built with unit rate
    (:func:`unit_optimizer`); ``None`` applies the optimizer's update as it is."""

    def loss_fn(params):
        outputs = model.apply({"params": params}, batch.inputs)
        return task.loss(outputs, batch), outputs

    (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    safe_grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)
    updates, new_opt_state = optimizer.update(safe_grads, state.opt_state, state.params)
    if learning_rate is not None:  # rate * (-u): the same rounding as Adam's -rate * u (negation is exact)
        updates = jax.tree_util.tree_map(lambda u: learning_rate.astype(u.dtype) * u, updates)
    new_params = optax.apply_updates(state.params, updates)

    def keep(new, old):
        return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)

    metrics = task.metrics(jax.lax.stop_gradient(outputs), batch)
    metrics["loss"] = loss
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["finite"] = finite.astype(jnp.float32)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        key=state.key,
        num_skipped=state.num_skipped + (~finite).astype(jnp.int32),
    )
    return new_state, metrics


def train_step(
    state: TrainState,
    *,
    model: nn.Module,
    task: Task,
    optimizer,
    batch_size: int,
    learning_rate: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Sample the batch for ``state.step`` from this seed's stream and apply one step (pure)."""
    batch = task.sample(jax.random.fold_in(state.key, state.step), batch_size)
    return apply_batch(state, batch, model=model, task=task, optimizer=optimizer, learning_rate=learning_rate)


def eval_step(params: Any, batch: Batch, *, model: nn.Module, task: Task) -> dict[str, jax.Array]:
    """Task metrics of ``params`` on ``batch`` (pure)."""
    return task.metrics(model.apply({"params": params}, batch.inputs), batch)


def held_out_batch(task: Task, batch_size: int, eval_seed: int) -> Batch:
    """The fixed evaluation batch: the same for every seed, every run and every resume.

    A task with its own held-out data (e.g. MNIST's test split) provides ``held_out_batch``; synthetic tasks draw
    it from their generator with the fixed ``eval_seed``.
    """
    own = getattr(task, "held_out_batch", None)
    if callable(own):
        return own(batch_size, eval_seed)
    return task.sample(jax.random.PRNGKey(eval_seed), batch_size)


def make_chunk_fn(
    model: nn.Module, task: Task, optimizer, batch_size: int, num_steps: int, mesh: Mesh | None = None
) -> Callable:
    """Jitted ``(states, rates[members]) -> (states, metrics[members, num_steps])``: ``num_steps`` steps of every
    member in one call (``optimizer`` at unit rate, each member's update scaled by its rate; without ``rates``,
    the optimizer's update as it is).

    With a ``mesh`` (:mod:`lrd.distributed`) the members axis is laid out over its ``"members"`` axis and, when
    its ``"batch"`` axis has several devices, each step's batch over that one; the program is the same."""
    split_batch = mesh is not None and mesh.shape["batch"] > 1

    def one_member(state, learning_rate):
        def body(s, _):
            batch = task.sample(jax.random.fold_in(s.key, s.step), batch_size)
            if split_batch:
                batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("batch")))
            return apply_batch(
                s, batch, model=model, task=task, optimizer=optimizer, learning_rate=learning_rate
            )

        return jax.lax.scan(body, state, None, length=num_steps)

    if mesh is None:
        scaled = jax.jit(jax.vmap(one_member))
        plain = jax.jit(jax.vmap(lambda state: one_member(state, None)))
    else:
        layout = NamedSharding(mesh, P("members"))
        scaled = jax.jit(jax.vmap(one_member, spmd_axis_name="members"), out_shardings=layout)
        plain = jax.jit(
            jax.vmap(lambda st: one_member(st, None), spmd_axis_name="members"), out_shardings=layout
        )

    def chunk(states: TrainState, rates: jax.Array | None = None):
        """``rates=None``: ``optimizer``'s own update (an optimizer built with its rate)."""
        return plain(states) if rates is None else scaled(states, rates)

    return chunk


EVAL_CHUNK = 64  # held-out sequences per model call: the evaluation's memory is that of at most 64 sequences


def eval_chunk(batch_size: int, limit: int = EVAL_CHUNK) -> int:
    """The largest divisor of ``batch_size`` that is at most ``limit``."""
    return max(d for d in range(1, min(batch_size, limit) + 1) if batch_size % d == 0)


def make_eval_fn(model: nn.Module, task: Task) -> Callable:
    """Jitted ``(params[members], batch) -> metrics[members]``.

    The model runs over the held-out batch in chunks of at most :data:`EVAL_CHUNK` sequences, one after another
    (``lax.map``), and the task's metrics are computed on all the outputs at once: the same metrics as one call
    (maxima stay maxima), with the memory of one chunk; a 512-sequence evaluation of attention at lag 1000 would
    otherwise hold every seed's 512 x heads x T x T scores at once (25 GB, seen)."""

    def one_member(params, batch):
        inputs = batch.inputs
        chunk = eval_chunk(inputs.shape[0])
        pieces = inputs.reshape(inputs.shape[0] // chunk, chunk, *inputs.shape[1:])
        outputs = jax.lax.map(lambda x: model.apply({"params": params}, x), pieces)
        outputs = outputs.reshape(inputs.shape[0], *outputs.shape[2:])
        return task.metrics(outputs, batch)

    return jax.jit(jax.vmap(one_member, in_axes=(0, None)))


def _member_solved(task: Task, eval_metrics: dict[str, np.ndarray], num_members: int) -> np.ndarray:
    return np.array([task.solved({k: v[i] for k, v in eval_metrics.items()}) for i in range(num_members)])


def per_rate(settings: TrainSettings, values: Sequence[Any]) -> list[dict[str, Any]]:
    """Per-member ``values`` grouped by learning rate: ``[{"learning_rate", "values": [per seed]}]``."""
    n = settings.num_seeds
    return [
        {"learning_rate": rate, "values": list(values[j * n : (j + 1) * n])}
        for j, rate in enumerate(settings.learning_rates)
    ]


ChunkCallback = Callable[[TrainState, dict[str, Any]], None]


def train(
    model: nn.Module,
    task: Task,
    settings: TrainSettings,
    *,
    state: TrainState | None = None,
    callbacks: Sequence[ChunkCallback] = (),
    progress: bool = True,
    description: str = "",
) -> tuple[TrainState, dict[str, Any]]:
    """Train every member (seed x learning rate) of ``model`` on ``task``; return the final states and a summary.

    ``state`` (stacked over members) resumes a run; ``callbacks`` are called after every evaluation with the
    states and a record ``{"step", "train": {...per member}, "eval": {...per member}, "solved": [...],
    "seed": [...], "learning_rate": [...] (with a grid only), "steps_per_s"}``. The summary holds per-member ``solved`` and
    ``steps_to_solve`` (first evaluation step at which the member met the criterion, ``None`` if never), the
    learning rates, the final held-out metrics, the chance loss and the wall time.
    """
    optimizer = unit_optimizer(settings)
    num_members, num_seeds = settings.num_members, settings.num_seeds
    mesh = make_mesh(settings.mesh, num_members, settings.batch_size)
    if state is None:
        state = init_members(model, task, optimizer, settings)
    state = shard_members(state, mesh)
    eval_batch = replicate(held_out_batch(task, settings.eval_batch_size, settings.eval_seed), mesh)
    eval_fn = make_eval_fn(model, task)
    chunk_fns: dict[int, Callable] = {}
    rates = shard_members(member_rates(settings), mesh)
    seed_of = [settings.member(m)[1] for m in range(num_members)]
    rate_of = [settings.learning_rates[settings.member(m)[0]] for m in range(num_members)]

    start_step = int(to_host(state.step).reshape(-1)[0])
    steps_to_solve: list[int | None] = [None] * num_members
    history: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.steps, initial=start_step, desc=description or task.name, unit="step")
    t_start = time.perf_counter()
    step = start_step
    eval_metrics: dict[str, np.ndarray] = {}
    solved = np.zeros(num_members, bool)
    try:
        while step < settings.steps:
            n = min(settings.eval_every - step % settings.eval_every, settings.steps - step)
            if n not in chunk_fns:
                chunk_fns[n] = make_chunk_fn(model, task, optimizer, settings.batch_size, n, mesh)
            t0 = time.perf_counter()
            state, train_metrics = chunk_fns[n](state, rates)
            train_metrics = to_host(train_metrics)
            elapsed = time.perf_counter() - t0
            step += n
            eval_metrics = to_host(eval_fn(state.params, eval_batch))
            solved = _member_solved(task, eval_metrics, num_members)
            for i in range(num_members):
                if solved[i] and steps_to_solve[i] is None:
                    steps_to_solve[i] = step
            record = {
                "step": step,
                "train": {k: v[:, -1].tolist() for k, v in train_metrics.items()},
                "train_mean": {k: v.mean(axis=1).tolist() for k, v in train_metrics.items()},
                "eval": {k: v.tolist() for k, v in eval_metrics.items()},
                "solved": solved.tolist(),
                "seed": seed_of,
                **({"learning_rate": rate_of} if len(settings.learning_rates) > 1 else {}),
                "num_skipped": to_host(state.num_skipped).tolist(),
                "steps_per_s": n / max(elapsed, 1e-9),
            }
            history.append(record)
            for callback in callbacks:
                callback(state, record)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(
                    loss=f"{float(np.mean(train_metrics['loss'][:, -1])):.4f}",
                    eval=f"{float(np.mean(eval_metrics['loss'])):.4f}",
                    solved=f"{int(solved.sum())}/{num_members}",
                    steps_s=f"{record['steps_per_s']:.0f}",
                )
            if settings.early_stop and solved.reshape(-1, num_seeds).all(axis=1).any():
                break  # every seed of some rate solved: the outcome at the best rate is known
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "task": task.describe(),
        "num_seeds": num_seeds,
        "learning_rates": list(settings.learning_rates),
        "steps_run": step,
        "solved": solved.tolist(),
        "steps_to_solve": steps_to_solve,
        "final_eval": {k: np.asarray(v).tolist() for k, v in eval_metrics.items()},
        "chance_loss": float(task.chance_loss),
        "num_skipped": to_host(state.num_skipped).tolist(),
        "mesh": describe_mesh(mesh),
        "wall_time_s": time.perf_counter() - t_start,
    }
    return state, summary
