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
"$PY" experiments/atlas.py --models all --tasks adding --workdir runs/atlas_cpu --out experiments/results/atlas_adding_cpu2 \
  --hidden-size 32 --steps 1000 --num-seeds 3 --sweep 10,30,100,300,1000 --max-bisections 1
"$PY" experiments/atlas.py --models all --tasks copy --workdir runs/atlas_cpu --out experiments/results/atlas_copy_cpu2 \
  --hidden-size 32 --steps 1500 --num-seeds 3 --sweep 5,10,20,50,100,200 --max-bisections 1
