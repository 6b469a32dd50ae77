#!/usr/bin/env bash
# The CPU lag atlas (issue: the lag atlas): every registered mixer on adding (Arjovsky) and copy memory, at a budget
# meant for about two hours of a quiet 2-core CPU: hidden 32, 3 seeds, one learning rate (the preset's, 1e-3),
# adding 1000 steps per lag over the sweep 10, 30, 100, 300, 1000, copy 1500 steps over 5, 10, 20, 50, 100, 200,
# one bisection each. Resumable: every (task, mixer) search lives in runs/atlas_cpu/TASK/MIXER and is read back
# when finished. Run niced in the background:   nohup nice -n 15 experiments/atlas_cpu.sh > atlas.log 2>&1 &
# Writes experiments/results/atlas_{adding,copy}_cpu2.{json,csv,png}, rewritten after every finished search.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# Every registered mixer, cheapest first and attention last: its adding trial at lag 1000 costs about 10 s a step on
# this CPU (3 seeds x 32 sequences x 4 heads x 1000^2 scores, memory-bound), hours on its own, so it runs after
# everything else: adding without attention, then copy (attention included: its lags stop at 200), then adding
# again with every mixer (the 26 finished searches are read back; attention's is run).
MODELS=rnn,rnn_relu,rnn_sigmoid,irnn,indrnn,lstm,gru,cornn,unicornn,exprnn,scornn,urnn,mingru,minlstm,slstm,mlstm
MODELS=$MODELS,lru,s5,s4d,rglru,linoss,selective_ssm,mamba2,linear_attention,deltanet,gated_deltanet
ADDING=(--tasks adding --workdir runs/atlas_cpu --out experiments/results/atlas_adding_cpu2 --hidden-size 32
  --steps 1000 --num-seeds 3 --sweep 10,30,100,300,1000 --max-bisections 1)
"$PY" experiments/atlas.py --models "$MODELS" "${ADDING[@]}"
"$PY" experiments/atlas.py --models "$MODELS,attention" --tasks copy --workdir runs/atlas_cpu \
  --out experiments/results/atlas_copy_cpu2 --hidden-size 32 --steps 1500 --num-seeds 3 --sweep 5,10,20,50,100,200 \
  --max-bisections 1
"$PY" experiments/atlas.py --models "$MODELS,attention" "${ADDING[@]}"
