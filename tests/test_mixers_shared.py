"""The contract every registered mixer must meet, checked for all of them at once.

The list of mixers is read from the registry when this file is imported, so a new cell file that registers
itself (see docs/adding_a_cell.md) is tested here without any edit. For every mixer, with ``d_in != hidden``:

* shape and dtype: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``, finite;
* causality: perturbing ``x_t`` never changes an output before ``t`` (and changes something from ``t`` on);
* gradients with respect to parameters and input are finite and not all zero;
* ``jax.jit`` and eager application agree;
* the gradient probe, if the mixer makes one: ``grad`` with respect to the ``"probes"`` collection is finite,
  not all zero, and has a leading time axis.

Sizes are tiny (batch 2, 12 steps, hidden 8) and each mixer is compiled once (init, apply, grads in one program)
and its results shared by its tests, so the whole file stays within about a minute on one core.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrd.cells.base import PROBE_COLLECTION
from lrd.registry import build_mixer, mixer_names

BATCH, NUM_STEPS, D_IN, HIDDEN = 2, 12, 3, 8
PERTURBED_STEPS = (3, 7, 11)
MIXERS = mixer_names()
# One group per mixer: with `pytest -n N --dist loadgroup` a mixer's tests share one worker and one compile.
# `make test` runs `--dist load` (pytest-xdist 3.8.0's loadgroup hangs after a crashed worker), which ignores them.
MIXER_PARAMS = [pytest.param(name, marks=pytest.mark.xdist_group(f"mixer-{name}")) for name in MIXERS]


class _Case:
    """A mixer at the shared sizes, run once: one compiled program initialises it, applies it to ``x`` and to
    copies of ``x`` perturbed at ``PERTURBED_STEPS``, and differentiates a random linear readout with respect to
    the variables, ``x`` and (if the mixer makes one) the probe. Tests read the results."""

    def __init__(self, name: str):
        self.name = name
        self.model = build_mixer(name, HIDDEN)
        key_x, key_init, key_readout, key_bump = jax.random.split(jax.random.PRNGKey(0), 4)
        self.x = jax.random.normal(key_x, (BATCH, NUM_STEPS, D_IN))
        bumps = jax.random.normal(key_bump, (len(PERTURBED_STEPS), BATCH, D_IN))
        self.x_perturbed = jnp.stack(
            [self.x.at[:, t].add(b) for t, b in zip(PERTURBED_STEPS, bumps, strict=True)]
        )
        readout = jax.random.normal(key_readout, (BATCH, NUM_STEPS, HIDDEN))
        self.probe_shapes = self._probe_shapes(key_init)
        model = self.model

        def run(key, x, x_perturbed):
            # init makes every collection mutable, so a probe may appear there; the plain variables exclude it.
            variables = {k: v for k, v in model.init(key, x).items() if k != PROBE_COLLECTION}
            y = model.apply(variables, x)
            # Base and perturbed inputs go through one vmapped apply, so they share the exact same arithmetic.
            x_all = jnp.concatenate([x[None], x_perturbed])
            y_all = jax.vmap(lambda xs: model.apply(variables, xs))(x_all)
            probes = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), self.probe_shapes)

            def loss(variables, x, probes):
                extra = {} if probes is None else {PROBE_COLLECTION: probes}
                return jnp.sum(model.apply({**variables, **extra}, x) * readout)

            grads = jax.grad(loss, argnums=(0, 1, 2))(variables, x, probes)
            return variables, y, y_all[0], y_all[1:], grads

        results = jax.jit(run)(key_init, self.x, self.x_perturbed)
        self.variables, self.y, self.y_base, self.y_perturbed, self.grads = results

    def _probe_shapes(self, key: jax.Array) -> Any | None:
        """The ``"probes"`` collection made by ``apply(..., mutable=["probes"])`` (shapes only), or None."""

        def make(key, x):
            variables = {k: v for k, v in self.model.init(key, x).items() if k != PROBE_COLLECTION}
            return self.model.apply(variables, x, mutable=[PROBE_COLLECTION])[1]

        return jax.eval_shape(make, key, self.x).get(PROBE_COLLECTION)


@functools.cache
def _case(name: str) -> _Case:
    return _Case(name)


def _assert_finite(tree: Any, what: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        assert bool(jnp.all(jnp.isfinite(leaf))), f"{what}: non-finite values at {jax.tree_util.keystr(path)}"


def _norm(tree: Any) -> float:
    return float(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree)))


def test_registry_is_not_empty():
    assert {"lstm", "attention", "linear_attention"} <= set(MIXERS)


@pytest.mark.parametrize("name", MIXER_PARAMS)
def test_output_shape_dtype_and_finite(name):
    # Given d_in != hidden_size, When applied, Then the output is float32[batch, time, hidden_size], finite.
    y = _case(name).y
    assert y.shape == (BATCH, NUM_STEPS, HIDDEN)
    assert y.dtype == jnp.float32
    _assert_finite(y, f"{name} output")


@pytest.mark.parametrize("name", MIXER_PARAMS)
def test_causal(name):
    # Given x and x with step t changed, Then outputs before t are unchanged (up to float32 reassociation:
    # 1e-6 absolute, while the perturbation is O(1)), and the outputs from t on do change for some t.
    case = _case(name)
    changed_after = []
    for t, y_pert in zip(PERTURBED_STEPS, case.y_perturbed, strict=True):
        np.testing.assert_allclose(
            y_pert[:, :t],
            case.y_base[:, :t],
            rtol=0,
            atol=1e-6,
            err_msg=f"{name}: perturbing x_{t} changed earlier outputs",
        )
        changed_after.append(float(jnp.max(jnp.abs(y_pert[:, t:] - case.y_base[:, t:]))))
    assert max(changed_after) > 1e-4, f"{name}: the output does not depend on the input"


@pytest.mark.parametrize("name", MIXER_PARAMS)
def test_gradients_finite_and_nonzero(name):
    case = _case(name)
    param_grads, input_grad, _ = case.grads
    _assert_finite(param_grads, f"{name} d loss / d params")
    _assert_finite(input_grad, f"{name} d loss / d x")
    assert input_grad.shape == case.x.shape
    assert _norm(param_grads) > 0, f"{name}: every parameter gradient is zero"
    assert _norm(input_grad) > 0, f"{name}: the input gradient is zero"


@pytest.mark.parametrize("name", MIXER_PARAMS)
def test_jit_matches_eager(name):
    # XLA may fuse and reorder float32 arithmetic under jit, hence a tolerance of a few ulps, not equality.
    case = _case(name)
    eager = case.model.apply(case.variables, case.x)
    np.testing.assert_allclose(case.y, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MIXER_PARAMS)
def test_probe_gradient(name):
    # Given the "probes" collection a mixer creates on request, Then d loss / d probe is finite, has a leading
    # time axis (one entry per step) and is not all zero.
    case = _case(name)
    if case.probe_shapes is None:
        pytest.skip(f"{name} creates no {PROBE_COLLECTION!r} collection")
    _, _, probe_grads = case.grads
    _assert_finite(probe_grads, f"{name} d loss / d probe")
    for path, leaf in jax.tree_util.tree_leaves_with_path(probe_grads):
        assert leaf.shape[0] == NUM_STEPS, (
            f"{name}: probe {jax.tree_util.keystr(path)} has shape {leaf.shape}"
        )
    assert _norm(probe_grads) > 0, f"{name}: the probe gradient is zero"


@pytest.mark.parametrize("name", MIXERS)
def test_defaults_pass_check_in_every_scan_mode(name):
    # Given the registered defaults, Then the mixer's own validation accepts them in each of its scan modes (the
    # values lrd bench enumerates), and the class is one of the two engine bases or the root Mixer.
    from lrd.cells.base import LinearRecurrentLayer, Mixer, RecurrentCell, scan_modes
    from lrd.registry import get_mixer

    cls = get_mixer(name).cls
    assert issubclass(cls, Mixer)
    if not issubclass(cls, RecurrentCell | LinearRecurrentLayer):
        assert "truncation" not in {f.name for f in dataclasses.fields(cls)}
    build_mixer(name, HIDDEN).check()
    for mode in scan_modes(cls):
        build_mixer(name, HIDDEN, scan_mode=mode).check()
