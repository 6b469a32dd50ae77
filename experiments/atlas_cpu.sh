#!/usr/bin/env bash
# The CPU lag atlas (issue: the lag atlas): every registered mixer on adding (Arjovsky) and copy memory, at a CPU
# budget: hidden 32, 3 seeds x 2 learning rates (1e-3 and 1e-2, a vmapped axis; a lag counts at its best rate),
# adding 1000 steps per lag over the sweep 10, 30, 100, 300, 1000, copy 1500 steps over 5, 10, 20, 50, 100, 200,
# one bisection each. Two rates, not one: at 1e-3 alone the uRNN and expRNN failed adding at lag 10 in 1000 steps
# (0 of 3 seeds), at 1e-2 all three seeds of each solved it in 300-400 steps, so a single rate would have measured
# the rate, not the memory. Resumable: every (task, mixer) search lives in runs/atlas_cpu2/TASK/MIXER and is read
# back when finished. Run niced in the background:   nohup nice -n 10 experiments/atlas_cpu.sh > atlas.log 2>&1 &
# Writes experiments/results/atlas_{adding,copy}_cpu2.{json,csv,png}, rewritten after every finished search.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# Every registered mixer, the classic cells and the second wave first, attention last: its adding trial at lag 1000 costs about 20 s a step on
# this CPU (6 members x 32 sequences x 4 heads x 1000^2 scores, memory-bound), hours on its own, so it runs after
# everything else: adding without attention, then copy (attention included: its lags stop at 200), then adding
# again with every mixer (the 26 finished searches are read back; attention's is run).
MODELS=rnn,rnn_relu,rnn_sigmoid,irnn,indrnn,lstm,gru,cornn,unicornn,exprnn,scornn,urnn,linoss,deltanet
MODELS=$MODELS,gated_deltanet,mamba2,mingru,minlstm,slstm,mlstm,lru,s5,s4d,rglru,selective_ssm,linear_attention
ADDING=(--tasks adding --workdir runs/atlas_cpu2 --out experiments/results/atlas_adding_cpu2 --hidden-size 32
  --steps 1000 --num-seeds 3 --learning-rate 1e-3,1e-2 --sweep 10,30,100,300,1000 --max-bisections 1)
"$PY" experiments/atlas.py --models "$MODELS" "${ADDING[@]}"
"$PY" experiments/atlas.py --models "$MODELS,attention" --tasks copy --workdir runs/atlas_cpu2 \
  --out experiments/results/atlas_copy_cpu2 --hidden-size 32 --steps 1500 --num-seeds 3 --learning-rate 1e-3,1e-2 \
  --sweep 5,10,20,50,100,200 --max-bisections 1
"$PY" experiments/atlas.py --models "$MODELS,attention" "${ADDING[@]}"
