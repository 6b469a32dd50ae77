"""Every registered mixer learns the adding problem at lag 20 to below half the chance loss in a small budget.

Like the shared contract suite, the list of mixers is read from the registry at import, so new cells are trained
here automatically. Settings (the same for all): Arjovsky adding at lag 20 (chance MSE 1/6), width 16, batch 32,
clipped Adam at 1e-2, at most 400 steps, evaluated every 50 steps on one fixed held-out batch of 256, stopping at
the first evaluation below ``0.5 * chance``. Classic cells run in the bare (1997) setting, one cell plus a linear
readout; every other family runs as one pre-norm residual block with an MLP, the setting those layers were
designed for (a linear recurrence or attention alone has no nonlinearity between memory and readout).
A cell whose paper prescribes another setting is listed in ``SETTINGS`` with that setting and the reason.

A mixer that does not reach the threshold fails, unless it is listed in ``KNOWN_SLOW`` with a documented reason;
then it is reported as xfail with the measured loss.
"""

from __future__ import annotations

import time

import pytest

from lrd.models import build_model
from lrd.registry import get_mixer, mixer_names
from lrd.tasks.adding import Adding
from lrd.train import held_out_batch, init_states, make_chunk_fn, make_eval_fn, make_optimizer

TASK = Adding(lag=20)
HIDDEN, BATCH, LEARNING_RATE = 16, 32, 1e-2
MAX_STEPS, EVAL_EVERY, EVAL_BATCH = 400, 50, 256
TARGET = 0.5  # fraction of the chance loss
BARE_FAMILIES = ("classic", "oscillator", "orthogonal")  # nonlinear cells, used alone in their papers

# name -> (setting, num_layers, reason) where a cell's paper uses it differently from the family default.
SETTINGS = {
    "indrnn": (
        "bare",
        2,
        "IndRNN units do not interact within a layer (diagonal recurrence), so the paper stacks layers to mix "
        "them (Li et al. 2018, sec. 3). One layer alone stayed at 0.75-0.90 x chance in 400 steps for every "
        "recurrent init we tried; two stacked layers reach it in 200",
    ),
}

# name -> why it may legitimately miss the target within this budget (the test then xfails with the number).
KNOWN_SLOW = {
    "rnn_sigmoid": (
        "the logistic derivative is at most 1/4, so |dh_t/dh_s| shrinks at least like (rho/4)^(t-s): the "
        "vanishing-gradient problem (Hochreiter 1991; Bengio, Simard & Frasconi 1994). It is slow, not unable: "
        "measured with these settings, 0.09 x chance after 1250 steps"
    ),
    "cornn": (
        "the authors' adding hyperparameters (dt 0.06, gamma 66, epsilon 15, tuned for width 128) hold y near "
        "tanh(.)/gamma, so at width 16 the readout must grow large first: measured 0.73 x chance after 2000 steps "
        "at width 16, and 0.12 x chance after 1500 steps at width 64 (`lrd train --model cornn --lag 20 "
        "--hidden-size 64 --learning-rate 0.01 --steps 1500`)"
    ),
    "unicornn": (
        "slow, not unable: with these settings it crosses 0.5 x chance after about 900 steps and reaches 0.19 x "
        "chance after 2000 (`lrd train --model unicornn --lag 20 --hidden-size 16 --learning-rate 0.01 --steps "
        "2000`)"
    ),
}


def _train_until_target(name: str) -> tuple[float, int, float]:
    """Train ``name`` until held-out loss < TARGET * chance or MAX_STEPS; returns (best ratio, steps, seconds)."""
    setting = "bare" if get_mixer(name).family in BARE_FAMILIES else "block"
    num_layers = 1
    if name in SETTINGS:
        setting, num_layers, _ = SETTINGS[name]
    model = build_model(name, TASK, hidden_size=HIDDEN, setting=setting, num_layers=num_layers)
    optimizer = make_optimizer(LEARNING_RATE, clip_norm=1.0)
    states = init_states(model, TASK, optimizer, seed=0, num_seeds=1)
    run_chunk = make_chunk_fn(model, TASK, optimizer, BATCH, EVAL_EVERY)
    evaluate = make_eval_fn(model, TASK)
    eval_batch = held_out_batch(TASK, EVAL_BATCH, eval_seed=1_000_003)
    start, best, steps = time.perf_counter(), float("inf"), 0
    while steps < MAX_STEPS:
        states, _ = run_chunk(states)
        steps += EVAL_EVERY
        best = min(best, float(evaluate(states.params, eval_batch)["loss"][0]) / TASK.chance_loss)
        if best < TARGET:
            break
    return best, steps, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize("name", mixer_names())
def test_learns_adding_at_lag_20(name):
    ratio, steps, seconds = _train_until_target(name)
    message = f"{name}: best held-out loss {ratio:.3f} x chance after {steps} steps ({seconds:.1f} s)"
    if ratio >= TARGET and name in KNOWN_SLOW:
        pytest.xfail(f"{message}; {KNOWN_SLOW[name]}")
    assert ratio < TARGET, message
