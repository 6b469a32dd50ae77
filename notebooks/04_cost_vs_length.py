# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 04 · Cost against sequence length: sequential recurrences, parallel scans, attention
#
# **The claim.** A recurrent network needs `T` sequential steps forward and backward; attention runs all steps in
# parallel but its memory grows as `T^2` (the attention matrix); linear recurrences and SSMs can run as a parallel
# scan (`log T` depth) with memory linear in `T` (Vaswani et al. 2017; Martin & Cundy 2018; Gu et al. 2022).
#
# **How it is tested.** `lrd bench` times one forward+backward pass (median over repeats) and reads the compiler's
# temporary-buffer estimate and the number of `while` loops in the lowered program, per mixer, at T = 128, 512, 2048,
# in one process (bare model on adding, d_model 64, batch 16). Times are measured on a shared 2-core CPU, one mixer
# after another: read them as orders of magnitude; the memory and loop counts are compiler numbers and do not drift.
#
# ```
# lrd bench --models lstm,gru,lru,s4d,selective_ssm,mingru,mlstm,attention,linear_attention --seq-len 128,512,2048 \
#     --d-model 64 --batch-size 16 --repeats 3 --warmup 1 --no-variants --out experiments/results/bench_cost_vs_length_cpu2.json
# ```

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lrd.bench import default_config, run_bench
from lrd.reports import load_or_make


def small() -> dict:
    """Two mixers at T = 16, 64, d_model 8, one repeat (seconds)."""
    config = default_config().replace(
        model={"name": "lstm+attention", "hidden_size": 8},
        optim={"batch_size": 2},
        bench={
            "models": ("lstm", "attention"),
            "seq_lens": (16, 64),
            "repeats": 1,
            "warmup": 1,
            "variants": False,
        },
    )
    return run_bench(config)


result, path = load_or_make("bench_cost_vs_length_cpu2.json", small)
rows = [r for r in result["rows"] if not r.get("error")]
mixers = list(dict.fromkeys(r["mixer"] for r in rows))
lengths = sorted({r["seq_len"] for r in rows})
table = {(r["mixer"], r["seq_len"]): r for r in rows}
print(f"device {result['environment']['device']}, jax {result['environment']['jax']}")
print(f"{'mixer':<17}" + "".join(f"{'T=' + str(t) + ' ms':>13}{'MiB':>9}" for t in lengths) + f"{'loops':>7}")
for m in mixers:
    cells = "".join(f"{table[m, t]['fwd_bwd_ms']:13.1f}{table[m, t]['temp_mib'] or 0:9.1f}" for t in lengths)
    print(f"{m:<17}{cells}{table[m, lengths[-1]]['while_loops']:7d}")

# %%
fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
for i, m in enumerate(mixers):
    t = np.asarray(lengths)
    ax_time.plot(t, [table[m, x]["fwd_bwd_ms"] for x in lengths], "o-", color=f"C{i % 10}", label=m)
    ax_mem.plot(
        t, [max(table[m, x]["temp_mib"] or 0, 1e-3) for x in lengths], "o-", color=f"C{i % 10}", label=m
    )
ax_time.set(xscale="log", yscale="log", xlabel="T", ylabel="fwd+bwd time (ms)", title="time")
for ax in (ax_time, ax_mem):
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.minorticks_off()
ax_mem.set(xscale="log", yscale="log", xlabel="T", ylabel="compiler temp memory (MiB)", title="memory")
ax_mem.legend(fontsize=7)
fig.tight_layout()
fig.savefig(path.parent / (path.stem + ".png"), dpi=110)

# %% [markdown]
# ## Verdict (computed from the numbers above)
#
# Growth exponents are log-log slopes between the shortest and the longest length (1 = linear, 2 = quadratic).

# %%
span = np.log(lengths[-1] / lengths[0])
for m in mixers:
    first, last = table[m, lengths[0]], table[m, lengths[-1]]
    memory = (
        np.log(last["temp_mib"] / first["temp_mib"]) / span
        if first["temp_mib"] and last["temp_mib"]
        else float("nan")
    )
    time = np.log(last["fwd_bwd_ms"] / first["fwd_bwd_ms"]) / span
    print(f"{m:<17} memory ~ T^{memory:.2f}, time ~ T^{time:.2f}, {last['while_loops']} sequential loop(s)")

# %% [markdown]
# ## What the committed results show (2-core CPU, jax 0.10.2, d_model 64, batch 16, T = 128 / 512 / 2048)
#
# | mixer | temp MiB | fwd+bwd ms | sequential loops |
# | --- | --- | --- | --- |
# | LSTM | 12.5 / 50 / 200 | 11 / 37 / 157 | 2 |
# | GRU | 9.5 / 38 / 152 | 6 / 29 / 117 | 2 |
# | minGRU | 7.3 / 30 / 120 | 3 / 11 / 56 | 0 |
# | LRU | 13.6 / 54 / 216 | 12 / 47 / 207 | 0 |
# | S4D | 369 / 1474 / 5896 | 173 / 719 / 3718 | 0 |
# | selective SSM (Mamba block) | 263 / 1050 / 4199 | 126 / 528 / 2740 | 0 |
# | softmax attention | 18 / 264 / 4129 | 12 / 200 / 5994 | 0 |
# | linear attention | 10.5 / 42 / 167 | 6 / 35 / 161 | 2 |
# | mLSTM (chunkwise) | 14 / 57 / 228 | 7 / 40 / 186 | 2 |
#
# * **Attention's quadratic memory is measured, not assumed**: its temporary memory grows as `T^1.96` (x16 per x4
#   in `T`), from 18 MiB to 4.1 GiB, and its time as `T^2.2`; every recurrent or scan form grows as `T^1.0`.
# * The parallel scans run with no sequential loop (0 `while` loops against 2 for the LSTM: the forward scan and
#   its backward), and minGRU's is the cheapest layer here. **But parallel depth buys no speed on this 2-core CPU**:
#   the LRU takes as long as the LSTM, and lrd's S4D and selective SSM are 16 to 24 times slower than the LSTM with
#   20 to 30 times its memory (they materialise the `[T, B, H, N]` state; issue 11 is about exactly this).
# * The times are one mixer after another on a shared machine (read them as orders of magnitude); the memory and
#   loop counts are compiler numbers.
