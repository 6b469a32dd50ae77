#!/usr/bin/env bash
# The GPU-scale lag atlas (issue: the lag atlas): every registered mixer on the four atlas tasks, each task at its
# preset's full budget (experiments/configs/TASK.py: steps, sweep, bisections), 3 seeds, and a
# learning-rate grid of four rates (3e-4 to 1e-2; the orthogonal cells need 1e-2 on adding, measured)
# trained as a vmapped axis next to the seeds (a lag counts at its best rate), every mixer sized to about 20,000
# parameters (--match-params: the hidden size with the nearest count, within 2x; the LSTM at the adding preset's
# hidden 64 has 17,217; every registered mixer matches on all four tasks, checked on CPU from shapes).
# Each (task, mixer) search is resumable: run the script again after an interruption. The searches run one after
# another, each run's members (seeds x rates) laid out over every visible device (run.mesh auto); to run the
# trials of one search side by side on a cluster instead, use `lrd lag-search --executor ray` (README, "Scale out").
#
# Runtime: not measured yet (no GPU run so far). The CPU atlas (experiments/results/atlas_*_cpu2.*) is the reduced
# budget for a 2-core CPU: two rates (1e-3, 1e-2), hidden 32, 1000-1500 steps, shorter sweeps, adding and copy.
set -euo pipefail
cd "$(dirname "$0")/.."
# Sweeps past the presets' ceilings on adding and copy: on the CPU atlas the GRU, DeltaNet and Gated DeltaNet solved
# every adding lag up to 1000, and the published records lie further out (IndRNN: adding beyond 5000; expRNN: copy
# at 1000-2000). A search that runs out of memory (attention at the longest lags) is recorded in its cell.
declare -A SWEEP=(
  [adding]=10,30,100,300,1000,3000,10000
  [copy]=5,10,20,50,100,200,500,1000,2000
  [selective_copy]=16,32,64,128,256,512
  [temporal_order]=10,30,100,300,1000
)
for task in adding copy selective_copy temporal_order; do
  python experiments/atlas.py --models all --tasks "$task" --workdir runs/atlas_gpu --sweep "${SWEEP[$task]}" \
    --num-seeds 3 --learning-rate 3e-4,1e-3,3e-3,1e-2 --match-params 20000 --out "experiments/results/atlas_${task}_gpu"
done
