# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 02 · The LSTM's constant error carousel
#
# **The claim.** The LSTM's cell state `c_t = f_t c_{t-1} + i_t g_t` carries the error back through time
# multiplied only by the forget gate `f_t` (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al.
# 2000): with `f_t` near 1 the error flows unchanged, the "constant error carousel", where a tanh RNN's shrinks by
# `rho rms f'` per step (notebook 01). A larger forget-gate bias opens the carousel wider at initialisation. The GRU
# (Cho et al. 2014) keeps `z h_{t-1}` the same way.
#
# **How it is tested.** `lrd grad-flow` on the adding problem at T = 200 (hidden 64, 4 seeds x 64 sequences) at
# initialisation: the LSTM with forget-gate bias 0, 1, 3, 5 (1 is lrd's default), the GRU, the tanh RNN (spectral
# radius 1). Then the same measurement on models *trained* on adding at lag 100 (the `adding` preset: 1500 steps,
# 2 seeds), from their checkpoints, with the forget-gate statistics of the trained LSTM. Commands:
#
# ```
# lrd grad-flow --model lstm --lag 200 --num-seeds 4 --sweep model.options.lstm.forget_bias=0,1,3,5 \
#     --out experiments/results/grad_flow/lstm_forget_bias
# lrd grad-flow --model gru --lag 200 --num-seeds 4 --out experiments/results/grad_flow/gru_init
# for m in lstm gru rnn; do
#     lrd run --config adding:model=$m --workdir runs/carousel/$m
#     lrd grad-flow --from-workdir runs/carousel/$m --optim.batch_size 64 --out experiments/results/grad_flow/${m}_trained_adding100
# done
# ```
# (the tanh RNN at initialisation is the spectral radius 1 run of notebook 01).

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lrd.config import ExperimentConfig, apply_overrides
from lrd.diagnostics import run_grad_flow, run_sweep
from lrd.reports import load_or_make

SMALL = ["model.hidden_size=8", "task.lag=40", "optim.batch_size=8", "diagnostics.window=2,30"]


def small(model: str, *extra: str) -> dict:
    """One grad-flow at smoke size (seconds) at initialisation."""
    return run_grad_flow(apply_overrides(ExperimentConfig(), [f"model.name={model}", *SMALL, *extra]))


def small_trained(model: str) -> dict:
    """Smoke stand-in for a trained model: 20 training steps at lag 40, then grad-flow from the checkpoint."""
    from lrd.reports import scratch_dir
    from lrd.runner import run_experiment

    workdir = scratch_dir() / f"run_{model}"
    config = apply_overrides(
        ExperimentConfig(),
        [f"model.name={model}", *SMALL, "run.steps=20", "run.eval_every=10", f"run.workdir={workdir}"],
    )
    run_experiment(config, progress=False)
    return run_grad_flow(config, from_workdir=workdir)


def small_bias_sweep() -> dict:
    base = apply_overrides(ExperimentConfig(), ["model.name=lstm", *SMALL])
    key = "model.options.lstm.forget_bias"
    return {
        **run_sweep({f"{key}={b}": apply_overrides(base, [f"{key}={b}"]) for b in (0, 1, 5)}),
        "key": key,
    }


bias, bias_path = load_or_make("grad_flow/lstm_forget_bias/sweep.json", small_bias_sweep)
gru, _ = load_or_make("grad_flow/gru_init/grad_flow.json", lambda: small("gru"))
rnn_sweep, _ = load_or_make(
    "grad_flow/rnn_spectral_radius/sweep.json",
    lambda: {"runs": {"model.options.rnn.spectral_radius=1": small("rnn")}},
)
rnn = rnn_sweep["runs"]["model.options.rnn.spectral_radius=1"]
trained = {
    m: load_or_make(f"grad_flow/{m}_trained_adding100/grad_flow.json", lambda m=m: small_trained(m))
    for m in ("lstm", "gru", "rnn")
}


def mean_curve(result: dict, leaf: str) -> tuple[np.ndarray, np.ndarray]:
    curve = result["curves"][leaf]
    return np.asarray(curve["distance"]), np.asarray(
        [np.nan if v is None else v for v in curve["log_grad_norm"]]
    )


print("at initialisation, decay of ||dL/dh_t|| per step (fitted over the window):")
for label, result in bias["runs"].items():
    stats = result["internals"]["layer0_lstm"]["forget_gate"]
    print(
        f"  LSTM {label.split('.')[-1]:<14} c: {result['slope_per_step']['layer0_lstm/c']:+.4f}  "
        f"h: {result['slope_per_step']['layer0_lstm/h']:+.4f}  mean forget gate {stats['mean']:.3f}"
    )
print(f"  GRU                   h: {gru['slope_per_step']['layer0_gru/h']:+.4f}")
print(f"  tanh RNN (rho=1)      h: {rnn['slope_per_step']['layer0_rnn/h']:+.4f}")

# %% [markdown]
# ## At initialisation

# %%
fig, ax = plt.subplots(figsize=(7, 4.3))
for i, (label, result) in enumerate(bias["runs"].items()):
    distance, mean = mean_curve(result, "layer0_lstm/c")
    ax.plot(distance, mean, color=f"C{i}", label=f"LSTM c, forget bias {label.split('=')[1]}")
for result, leaf, style, name in (
    (gru, "layer0_gru/h", "k--", "GRU h"),
    (rnn, "layer0_rnn/h", "k:", "tanh RNN h"),
):
    distance, mean = mean_curve(result, leaf)
    ax.plot(distance, mean, style, label=name)
ax.set(
    xlabel="distance T-1-t (steps)", ylabel="mean log ||dL/dh_t||", title="adding, T = 200, at initialisation"
)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(bias_path.parent / "carousel_init.png", dpi=110)

# %% [markdown]
# ## After training on adding at lag 100

# %%
fig, (ax_grad, ax_keep, ax_gate) = plt.subplots(1, 3, figsize=(15, 4.2))
leaves = {"lstm": "layer0_lstm/c", "gru": "layer0_gru/h", "rnn": "layer0_rnn/h"}
for i, (model, (result, _)) in enumerate(trained.items()):
    distance, mean = mean_curve(result, leaves[model])
    ax_grad.plot(
        distance,
        mean,
        color=f"C{i}",
        label=f"{leaves[model]}: {result['slope_per_step'][leaves[model]]:+.4f}/step",
    )
ax_grad.set(
    xlabel="distance T-1-t (steps)", ylabel="mean log ||dL/dh_t||", title="trained (checkpoint), adding T=100"
)
ax_grad.legend(fontsize=8)
for i, model in enumerate(("lstm", "gru")):
    retention = trained[model][0]["internals"][f"layer0_{model}"]["forget_gate"]["retention"]
    distance = np.asarray(retention["distance"])
    ax_keep.plot(distance, retention["log_best_unit"], color=f"C{i}", label=f"{model}: best unit")
    ax_keep.plot(distance, retention["log_median_unit"], "--", color=f"C{i}", label=f"{model}: median unit")
ax_keep.set(
    xlabel="distance T-1-t (steps)",
    ylabel="log prod of later forget gates",
    title="what the gate alone keeps",
)
ax_keep.legend(fontsize=8)
lstm_trained, lstm_trained_path = trained["lstm"]
unit_means = np.asarray(lstm_trained["internals"]["layer0_lstm"]["forget_gate"]["unit_means"], float)
initial = np.asarray(
    bias["runs"]["model.options.lstm.forget_bias=1"]["internals"]["layer0_lstm"]["forget_gate"]["unit_means"],
    float,
)
ax_gate.hist(initial, bins=20, alpha=0.6, label="initialisation (bias 1)")
ax_gate.hist(unit_means, bins=20, alpha=0.6, label="trained")
ax_gate.set(
    xlabel="mean forget gate of a unit over the batch and time", ylabel="units", title="LSTM forget gates"
)
ax_gate.legend(fontsize=8)
fig.tight_layout()
fig.savefig(lstm_trained_path.parent / "carousel_trained.png", dpi=110)

# %% [markdown]
# ## Verdict (computed from the numbers above)

# %%
for model, (result, _) in trained.items():
    slope = result["slope_per_step"][leaves[model]]
    print(
        f"trained {model:<4}: {slope:+.4f}/step, i.e. {np.exp(50 * slope):.2g} of the gradient survives 50 steps "
        f"(source: {result['source']})"
    )
lstm_init = bias["runs"]["model.options.lstm.forget_bias=1"]["slope_per_step"]["layer0_lstm/c"]
print(
    f"LSTM c at init (bias 1) {lstm_init:+.4f}/step vs tanh RNN {rnn['slope_per_step']['layer0_rnn/h']:+.4f}/step"
)
quantiles = lstm_trained["internals"]["layer0_lstm"]["forget_gate"]["unit_mean_quantiles"]
print(
    f"trained LSTM forget gates, per-unit means: q10 {quantiles['q10']:.3f}, q50 {quantiles['q50']:.3f}, "
    f"q90 {quantiles['q90']:.3f}; {np.mean(unit_means > 0.9):.0%} of units above 0.9"
)
retention = lstm_trained["internals"]["layer0_lstm"]["forget_gate"]["retention"]
best = np.asarray(retention["log_best_unit"], float)
window = lstm_trained["slope_window"]
distance = np.arange(len(best))
keep = (distance >= window[0]) & (distance <= min(window[1], len(best) - 1))
gate_slope = float(np.polyfit(distance[keep], best[keep], 1)[0])
grad_slope = lstm_trained["slope_per_step"]["layer0_lstm/c"]
print(
    f"trained LSTM: the forget gates of the best-keeping unit alone decay by {gate_slope:+.4f}/step, the cell-state "
    f"gradient by {grad_slope:+.4f}/step: "
    + (
        "the gradient outlives the forget-gate product, so it also flows through the recurrent path "
        "c_t -> h_t -> gates_{t+1}, not through the carousel alone."
        if grad_slope > gate_slope + 0.01
        else "the forget-gate product accounts for the gradient's decay, as the carousel story says."
    )
)

# %% [markdown]
# ## What the committed results show (2-core CPU, jax 0.10.2)
#
# At initialisation (adding, T = 200, decay per step of `||dL/dc_t||` over distances 5..60):
#
# | model | decay / step | mean forget gate |
# | --- | --- | --- |
# | LSTM, forget bias 0 | -0.296 | 0.50 |
# | LSTM, forget bias 1 (default) | -0.070 | 0.73 |
# | LSTM, forget bias 3 | -0.002 | 0.95 |
# | LSTM, forget bias 5 | +0.000 | 0.99 |
# | GRU | -0.278 | 0.50 (update gate) |
# | tanh RNN, rho = 1 | -0.221 | |
#
# After training on adding at T = 100 (LSTM solved at step 1000, GRU at 500/700, the tanh RNN not in 1500 steps):
# LSTM `c` -0.0035 per step, GRU -0.0021, tanh RNN -0.247 (its spectral radius grew from 1.0 to 1.34, still
# vanishing, as notebook 01 predicts: rho = 1.34 is below the rho ~ 1.5 where a tanh RNN stops vanishing).
#
# * **With forget bias 0 the carousel is not open at initialisation**: the LSTM's cell-state gradient then decays
#   *faster* than the tanh RNN's (-0.30 against -0.22 per step). It is the forget-gate bias (Gers et al. 2000;
#   Jozefowicz et al. 2015) that makes the LSTM carry gradients from the start: bias 3 and above, flat.
# * **Trained, the LSTM carries the gradient over the whole sequence** (84% left after 50 steps), the tanh RNN does
#   not (4e-6).
# * **But not through forget gates near 1.** In the trained LSTM no unit keeps its forget gate above 0.9 on average
#   (per-unit means 0.59 / 0.72 / 0.79 at q10 / q50 / q90), and the product of later forget gates alone shrinks by
#   e^-0.12 per step even for the best-keeping unit, while the cell-state gradient shrinks by e^-0.0035. The error
#   also flows through `c_t -> h_t -> gates_{t+1} -> c_{t+1}`: the textbook picture of a constant error carousel
#   with `f = 1` describes the initialisation with a large forget bias, not what this trained network does.
