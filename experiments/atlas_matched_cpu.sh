#!/usr/bin/env bash
# The CPU atlas's capacity control (issue: the lag atlas): the bare cells of experiments/atlas_cpu.sh on adding
# again, each sized to the LSTM's parameter count there (4,513 at hidden 32) with --match-params instead of one
# hidden size for all. Why: at hidden 32 the cells' counts span 161 (IndRNN) to 4,513 (LSTM), and across the atlas
# the parameter count ranks the max lag better (+0.62, notebook 05) than the gradient's decay at init does; this
# run separates the cell from its size. Same budget otherwise: 3 seeds x rates 1e-3, 1e-2, 1000 steps per lag,
# sweep 10..1000, one bisection. Left out: the LSTM (its matched size is hidden 32, the atlas's own run) and the GRU
# (at hidden 32, 3,489 parameters, it already solves every lag of the sweep). Resumable; run niced:
#   nohup nice -n 10 experiments/atlas_matched_cpu.sh > runs/atlas_matched_cpu2.log 2>&1 &
# Writes experiments/results/atlas_adding_matched_cpu2.{json,csv,png}, rewritten after every finished search.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" experiments/atlas.py --models rnn,rnn_relu,rnn_sigmoid,irnn,exprnn,scornn,cornn,indrnn,unicornn,urnn \
  --tasks adding --workdir runs/atlas_matched_cpu2 --out experiments/results/atlas_adding_matched_cpu2 \
  --match-params 4513 --steps 1000 --num-seeds 3 --learning-rate 1e-3,1e-2 --sweep 10,30,100,300,1000 \
  --max-bisections 1
