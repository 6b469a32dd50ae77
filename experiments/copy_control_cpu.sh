#!/usr/bin/env bash
# The copy task's control (issue: the lag atlas). In the CPU atlas (experiments/atlas_cpu.sh: hidden 32, 1500 steps
# x batch 64 per lag, 3 seeds x rates 1e-3, 1e-2) every mixer but the orthogonal cells failed copy at its first lag,
# 5, the LSTM and GRU included (recall 0.28-0.48 of the 10 symbols, chance 0.125), while the GRU, DeltaNet and
# Gated DeltaNet solved adding at 1000. At lag 5 a symbol is held only 15 steps: a failure there says little about
# time. Two controls separate the budget and the width from the lag, on the mixers that failed at 5 and do best on
# adding: the same search with 10x the steps (15,000) at hidden 32, and with the atlas's 1500 steps at hidden 128.
# Sweep 5, 20; no bisection. Resumable; run niced:
#   nohup nice -n 10 experiments/copy_control_cpu.sh > runs/copy_control_cpu2.log 2>&1 &
# Writes experiments/results/copy_control_{steps,width}_cpu2.{json,csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
COMMON=(--models lstm,gru,deltanet,mamba2 --tasks copy --num-seeds 3 --learning-rate 1e-3,1e-2 --sweep 5,20
  --max-bisections 0)
"$PY" experiments/atlas.py "${COMMON[@]}" --hidden-size 32 --steps 15000 --workdir runs/copy_control_cpu2/steps \
  --out experiments/results/copy_control_steps_cpu2
"$PY" experiments/atlas.py "${COMMON[@]}" --hidden-size 128 --steps 1500 --workdir runs/copy_control_cpu2/width \
  --out experiments/results/copy_control_width_cpu2
