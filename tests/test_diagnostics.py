"""Gradient-flow diagnostics against the math: a linear RNN's decay is log(rho) exactly; tanh stays below the bound."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lrd.cli import main
from lrd.diagnostics import fit_slope, grad_flow, leaf_names, run_grad_flow
from lrd.models import build_model
from lrd.tasks.adding import Adding
from lrd.train import init_states, make_optimizer

TASK = Adding(lag=50)
BATCH = TASK.sample(jax.random.PRNGKey(2), 8)


def _params(model, num_seeds: int = 2):
    """Parameters of ``num_seeds`` seeds, stacked (initialised one by one, see lrd.train.init_states)."""
    return init_states(model, TASK, make_optimizer(1e-3), seed=1, num_seeds=num_seeds).params


def _rnn(activation: str, rho: float, hidden: int = 16):
    options = {"rnn": {"activation": activation, "spectral_radius": rho, "recurrent_init": "orthogonal"}}
    return build_model("rnn", TASK, hidden_size=hidden, mixer_options=options)


def test_fit_slope_recovers_a_line_and_ignores_what_is_outside_the_window():
    distance = np.arange(100)
    log_norm = -0.3 * distance + 2.0
    log_norm[:5] = 50.0  # outside the window
    log_norm[70] = -np.inf  # a zero gradient
    assert fit_slope(distance, log_norm, (5, 80)) == pytest.approx(-0.3, abs=1e-12)
    assert fit_slope(distance, log_norm, (200, 300)) is None


@pytest.mark.parametrize("rho", [0.9, 1.05])
def test_linear_rnn_decays_by_exactly_log_rho_per_step(rho):
    # Given h_t = U h_{t-1} + W x_t with U = rho * Q (Q orthogonal), dL/dh_t = (U^T)^(T-1-t) dL/dh_{T-1}, whose norm
    # is rho^(T-1-t) ||dL/dh_{T-1}||: the slope is log(rho), and so is the Jacobian product's, to 1e-3.
    model = _rnn("linear", rho)
    result = grad_flow(model, _params(model), BATCH, TASK.loss, window=(5, 45), stacked=True)
    leaf = "layer0_rnn/h"
    assert result["slope_per_step"][leaf] == pytest.approx(np.log(rho), abs=1e-3)
    assert result["jacobian_slope_per_step"][leaf] == pytest.approx(np.log(rho), abs=1e-3)
    predicted = result["predicted_slope_per_step"]
    assert predicted["log_rho_max_fprime"] == pytest.approx(np.log(rho), abs=1e-5)  # f' = 1 for a linear RNN
    assert result["spectra"]["layer0_rnn"]["spectral_radius_per_seed"] == pytest.approx([rho, rho], rel=1e-5)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.5])
def test_tanh_rnn_decays_faster_than_the_textbook_bound(rho):
    # ||dh_T/dh_t|| <= (rho sup f')^(T-t) with sup tanh' = 1 (orthogonal U: ||U|| = rho), so the measured slope lies
    # below log(rho) (here: well below, since tanh' < 1 on the forward pass).
    model = _rnn("tanh", rho)
    result = grad_flow(model, _params(model), BATCH, TASK.loss, stacked=True)
    slope = result["slope_per_step"]["layer0_rnn/h"]
    assert slope < result["predicted_slope_per_step"]["log_rho_max_fprime"]
    assert 0 < result["internals"]["layer0_rnn"]["activation_derivative"]["rms"] < 1


def test_lstm_leaves_gates_and_schema():
    model = build_model("lstm", TASK, hidden_size=8)
    assert leaf_names(model) == ["layer0_lstm/c", "layer0_lstm/h"]
    result = grad_flow(model, _params(model, 1), BATCH, TASK.loss, stacked=True, leaves=["layer0_lstm/c"])
    assert list(result["curves"]) == ["layer0_lstm/c"]
    curve = result["curves"]["layer0_lstm/c"]
    assert curve["distance"] == list(range(TASK.seq_len)) and len(curve["log_grad_norm"]) == TASK.seq_len
    assert curve["q10"][10] <= curve["q50"][10] <= curve["q90"][10]
    forget = result["internals"]["layer0_lstm"]["forget_gate"]
    assert 0 < forget["mean"] < 1 and len(forget["unit_means"]) == 8
    assert result["predicted_slope_per_step"] == {"log_rho_max_fprime": None, "log_rho_rms_fprime": None}
    json.dumps(result)  # JSON-able as it is


def test_truncation_shows_in_the_probe_gradient():
    # With truncation k, no gradient reaches a state k or more steps before the loss: log-norm = -inf -> null.
    model = build_model("gru", TASK, hidden_size=8, truncation=10)
    curve = grad_flow(model, _params(model, 1), BATCH, TASK.loss, stacked=True)["curves"]["layer0_gru/h"]
    assert all(v is not None for v in curve["log_grad_norm"][:10])
    assert all(v is None for v in curve["log_grad_norm"][10:])


def test_lrd_grad_flow_end_to_end_and_from_a_workdir(tmp_path, capsys):
    tiny = ["--lag", "12", "--hidden-size", "4", "--batch-size", "4", "--num-seeds", "2", "--window", "1,10"]
    assert main(["grad-flow", "--model", "lstm", *tiny, "--out", str(tmp_path / "init")]) == 0
    result = json.loads((tmp_path / "init" / "grad_flow.json").read_text())
    for key in (
        "model",
        "task",
        "lag",
        "curves",
        "slope_per_step",
        "slope_window",
        "predicted_slope_per_step",
    ):
        assert key in result
    assert result["slope_window"] == [1, 10] and result["lag"] == 12 and result["num_seeds"] == 2
    assert (tmp_path / "init" / "grad_flow.png").stat().st_size > 0
    # Again without --overwrite: refused, nothing replaced.
    before = (tmp_path / "init" / "grad_flow.json").read_text()
    assert main(["grad-flow", "--model", "lstm", *tiny, "--out", str(tmp_path / "init")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "init" / "grad_flow.json").read_text() == before

    run = [
        "train",
        "--model",
        "lstm",
        "--lag",
        "12",
        "--hidden-size",
        "4",
        "--steps",
        "4",
        "--eval-every",
        "2",
    ]
    assert main([*run, "--batch-size", "4", "--workdir", str(tmp_path / "run")]) == 0
    argv = ["grad-flow", "--from-workdir", str(tmp_path / "run"), "--lag", "20", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    trained = json.loads(out[out.index("{") :])
    assert trained["source"] == {
        "kind": "checkpoint",
        "workdir": str(tmp_path / "run"),
        "step": 4,
        "members": None,
    }
    assert trained["lag"] == 20


def test_grad_flow_of_some_members_of_a_checkpoint(tmp_path):
    from lrd.config import ExperimentConfig, apply_overrides
    from lrd.runner import run_experiment

    config = apply_overrides(
        ExperimentConfig(),
        ["model.name=rnn", "model.hidden_size=4", "task.lag=12", "optim.batch_size=4", "run.steps=4"]
        + ["run.eval_every=2", "run.checkpoint_every=4", "run.num_seeds=3", "run.tensorboard=false"]
        + [f"run.workdir={tmp_path / 'run'}"],
    )
    run_experiment(config, progress=False)
    every = run_grad_flow(config, from_workdir=tmp_path / "run")
    second = run_grad_flow(config, from_workdir=tmp_path / "run", members=[1])
    radii = every["spectra"]["layer0_rnn"]["spectral_radius_per_seed"]
    assert len(set(radii)) == 3 and second["num_seeds"] == 1 and second["source"]["members"] == [1]
    assert second["spectra"]["layer0_rnn"]["spectral_radius_per_seed"] == [radii[1]]


def test_lrd_grad_flow_sweep(tmp_path):
    argv = ["grad-flow", "--model", "rnn", "--lag", "20", "--hidden-size", "4", "--batch-size", "4"]
    argv += [
        "--window",
        "2,15",
        "--sweep",
        "model.options.rnn.spectral_radius=0.5,1.5",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert list(sweep["runs"]) == [
        "model.options.rnn.spectral_radius=0.5",
        "model.options.rnn.spectral_radius=1.5",
    ]
    radii = [r["spectra"]["layer0_rnn"]["spectral_radius_per_seed"][0] for r in sweep["runs"].values()]
    assert radii == pytest.approx([0.5, 1.5], rel=1e-5)
    assert (tmp_path / "sweep.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--model", "lstm", "--leaves", "layer0_lstm/z"], "diagnostics.leaves ['layer0_lstm/z'] unknown"),
        (["--window", "10,5"], "diagnostics.window must have lo < hi"),
        (["--window", "5"], "diagnostics.window must be two distances"),
        (["--sweep", "spectral_radius"], "--sweep must look like section.field=V1,V2"),
        (["--sweep", "model.options.rnn.spectral_radius=0.5,x", "--model", "rnn"], "spectral_radius"),
        (["--from-workdir", "/nonexistent/run"], "holds no config.json"),
        (["--model", "nope"], "model.name='nope' is unknown"),
    ],
)
def test_bad_input_exits_2_before_compute(argv, expected, capsys, tmp_path):
    assert main(["grad-flow", *argv, "--out", str(tmp_path / "out")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out" / "grad_flow.json").exists()


def test_retention_is_the_product_of_later_forget_gates():
    # Given recorded forget gates f[t], Then retention at distance d is log prod_{s > T-1-d} f_s: 0 at d = 0.
    from lrd.diagnostics import _summary

    f = np.full((1, 1, 5, 2), 0.5)
    f[..., 1] = 1.0  # a unit that never forgets
    retention = _summary("forget_gate", f)["retention"]
    assert retention["log_best_unit"] == pytest.approx([0.0] * 5)
    # Results are stored to 6 significant digits (see _json_floats).
    expected = [0.5 * d * np.log(0.5) for d in range(5)]
    assert retention["log_median_unit"] == pytest.approx(expected, rel=1e-5)
