# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 01 · Vanishing and exploding gradients in an Elman RNN
#
# **The claim.** Backpropagated through time, the gradient of a tanh RNN `h_t = tanh(W x_t + U h_{t-1})` is
# multiplied at every step by the Jacobian `diag(f'_t) U`, so it shrinks or grows exponentially with the distance.
# The textbook bound (Hochreiter 1991; Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013) reads
# `||dh_T/dh_t|| <= (||U|| sup f')^(T-t)`: with `sup tanh' = 1` and an orthogonal `U` of spectral radius `rho`,
# gradients must vanish for `rho < 1`, and *may* explode for `rho > 1`. A logistic unit (`sup f' = 1/4`) vanishes
# four times faster per step in the log.
#
# **How it is tested.** `lrd grad-flow` measures `||dL/dh_t||` against the distance `T-1-t` at initialisation on the
# adding problem (T = 200, hidden 64, 4 seeds x 64 sequences), fits the decay per step over distances 5..60, and
# sets it against two predictions: the bound `log(rho sup f')` and `log(rho rms f')` with `f'` measured on the
# forward pass. Commands that made the committed results:
#
# ```
# lrd grad-flow --model rnn --lag 200 --num-seeds 4 \
#     --sweep model.options.rnn.spectral_radius=0.5,0.9,1,1.1,1.5,3 --out experiments/results/grad_flow/rnn_spectral_radius
# lrd grad-flow --model rnn --lag 200 --num-seeds 4 \
#     --sweep model.options.rnn.activation=tanh,sigmoid,relu,linear --out experiments/results/grad_flow/rnn_activation
# ```

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lrd.config import ExperimentConfig, apply_overrides
from lrd.diagnostics import run_sweep
from lrd.reports import load_or_make

LEAF = "layer0_rnn/h"


def small_sweep(key: str, values: list[str]) -> dict:
    """The same sweep at smoke size (seconds): hidden 8, T = 40, 1 seed x 8 sequences, window 2..30."""
    base = apply_overrides(
        ExperimentConfig(),
        [
            "model.name=rnn",
            "model.hidden_size=8",
            "task.lag=40",
            "optim.batch_size=8",
            "diagnostics.window=2,30",
        ],
    )
    sweep = run_sweep({f"{key}={v}": apply_overrides(base, [f"{key}={v}"]) for v in values})
    sweep["key"] = key
    return sweep


radius, radius_path = load_or_make(
    "grad_flow/rnn_spectral_radius/sweep.json",
    lambda: small_sweep("model.options.rnn.spectral_radius", ["0.5", "1", "1.5", "3"]),
)
activation, activation_path = load_or_make(
    "grad_flow/rnn_activation/sweep.json",
    lambda: small_sweep("model.options.rnn.activation", ["tanh", "sigmoid", "relu", "linear"]),
)


def rows(sweep: dict) -> list[dict]:
    """One row per swept value: the value, measured slope, both predictions, rho and rms f'."""
    out = []
    for label, result in sweep["runs"].items():
        prediction = result["predictions_by_layer"]["layer0_rnn"]
        out.append(
            {
                "value": label.split("=", 1)[1],
                "measured": result["slope_per_step"][LEAF],
                "bound": prediction["log_rho_max_fprime"],
                "rms": prediction["log_rho_rms_fprime"],
                "rho": prediction["spectral_radius"],
                "rms_fprime": prediction["rms_fprime"],
                "curve": result["curves"][LEAF],
                "window": result["slope_window"],
            }
        )
    return out


radius_rows, activation_rows = rows(radius), rows(activation)
print(f"{'rho':>5} {'measured':>9} {'bound log(rho sup f)':>21} {'log(rho rms f)':>15} {'rms f':>6}")
for r in radius_rows:
    print(
        f"{r['rho']:5.2f} {r['measured']:+9.4f} {r['bound']:+21.4f} {r['rms']:+15.4f} {r['rms_fprime']:6.3f}"
    )

# %% [markdown]
# ## Gradient norm against distance, by spectral radius

# %%
fig, (ax_curve, ax_slope) = plt.subplots(1, 2, figsize=(11, 4.2))
for i, r in enumerate(radius_rows):
    distance = np.asarray(r["curve"]["distance"])
    mean = np.asarray([np.nan if v is None else v for v in r["curve"]["log_grad_norm"]])
    ax_curve.plot(distance, mean, color=f"C{i}", label=f"rho={r['rho']:.2g}: {r['measured']:+.3f}/step")
ax_curve.axvspan(*radius_rows[0]["window"], color="0.92", zorder=0)
ax_curve.set(
    xlabel="distance T-1-t (steps)", ylabel="mean log ||dL/dh_t||", title="tanh RNN at initialisation"
)
ax_curve.legend(fontsize=8)
rho = np.asarray([r["rho"] for r in radius_rows])
ax_slope.plot(rho, [r["bound"] for r in radius_rows], "s--", label="bound log(rho sup f')")
ax_slope.plot(rho, [r["rms"] for r in radius_rows], "^--", label="log(rho rms f')")
ax_slope.plot(rho, [r["measured"] for r in radius_rows], "o-", color="k", label="measured")
ax_slope.axhline(0, color="0.5", lw=0.8)
ax_slope.set(xscale="log", xlabel="spectral radius rho of U", ylabel="decay per step (nats)")
ax_slope.legend(fontsize=8)
fig.tight_layout()
fig.savefig(radius_path.parent / "spectral_radius.png", dpi=110)

# %% [markdown]
# ## Which activation

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
x = np.arange(len(activation_rows))
ax.bar(x - 0.25, [r["bound"] for r in activation_rows], 0.25, label="bound log(rho sup f')")
ax.bar(x, [r["rms"] for r in activation_rows], 0.25, label="log(rho rms f')")
ax.bar(x + 0.25, [r["measured"] for r in activation_rows], 0.25, color="k", label="measured")
ax.set_xticks(x, [r["value"] for r in activation_rows])
ax.set(ylabel="decay per step (nats)", title="rho = 1 (orthogonal U), by activation")
ax.axhline(0, color="0.5", lw=0.8)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(activation_path.parent / "activation.png", dpi=110)
for r in activation_rows:
    print(f"{r['value']:>8}: measured {r['measured']:+.4f}, bound {r['bound']:+.4f}, rms {r['rms']:+.4f}")

# %% [markdown]
# ## Verdict
#
# The statements below are computed from the numbers above.

# %%
error_rms = max(abs(r["measured"] - r["rms"]) for r in radius_rows)
print(f"|measured - log(rho rms f')| <= {error_rms:.3f} nats/step over every spectral radius tried.")
for r in radius_rows:
    if r["bound"] > 1e-6 and r["measured"] < 0:
        print(
            f"rho={r['rho']:.2g}: the bound allows growth ({r['bound']:+.3f}/step) yet the gradient vanishes "
            f"({r['measured']:+.3f}/step: {np.exp(60 * r['measured']):.1e} of its size after 60 steps)."
        )
    elif r["measured"] > 0:
        print(
            f"rho={r['rho']:.2g}: the gradient explodes, {r['measured']:+.3f}/step (bound {r['bound']:+.3f})."
        )
slowest = max(radius_rows, key=lambda r: r["measured"] if r["measured"] <= 0 else -np.inf)
print(f"slowest decay without explosion: rho={slowest['rho']:.2g} at {slowest['measured']:+.4f}/step.")
sigmoid = next((r for r in activation_rows if r["value"] == "sigmoid"), None)
tanh = next((r for r in activation_rows if r["value"] == "tanh"), None)
if sigmoid and tanh:
    print(f"sigmoid / tanh decay ratio: {sigmoid['measured'] / tanh['measured']:.1f}x per step.")

# %% [markdown]
# ## What the committed results show (2-core CPU, jax 0.10.2, T = 200, 4 seeds x 64 sequences, window 5..60)
#
# | rho | measured decay / step | bound `log(rho sup f')` | `log(rho rms f')` | rms f' |
# | --- | --- | --- | --- | --- |
# | 0.5 | -0.830 | -0.693 | -0.822 | 0.88 |
# | 0.9 | -0.298 | -0.105 | -0.293 | 0.83 |
# | 1.0 | -0.221 | 0.000 | -0.216 | 0.81 |
# | 1.1 | -0.160 | +0.095 | -0.155 | 0.78 |
# | 1.5 | -0.007 | +0.405 | +0.002 | 0.67 |
# | 3.0 | +0.274 | +1.099 | +0.309 | 0.45 |
#
# * The exponential law holds: every curve is a straight line in the log until float32 under- or overflows.
# * **The textbook threshold does not.** "Spectral radius above 1 explodes" is wrong for a tanh RNN at
#   initialisation: at rho = 1.1 the gradient still shrinks by `e^-0.16` per step (7e-5 of it left after 60 steps),
#   and at rho = 1.5 it is almost flat (-0.007 per step). Saturation lowers `f'` as rho grows, so the boundary
#   between vanishing and exploding sits where `rho * rms f' = 1`, here near rho = 1.5, not at rho = 1. Only at
#   rho = 3 does it explode (+0.27 per step).
# * The bound is an upper bound and nothing more: it is off by up to 0.8 nats per step. `log(rho rms f')`, with
#   `f'` measured on the forward pass, predicts the measured decay within 0.035 nats per step at every radius.
# * Activations at rho = 1: sigmoid decays 6.6 times faster per step than tanh (-1.47 against -0.22, close to its
#   `log(1/4) = -1.39`), relu -0.35, a linear RNN exactly 0 (orthogonal `U`).
