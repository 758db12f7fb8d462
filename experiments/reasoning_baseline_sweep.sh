#!/usr/bin/env bash
# experiments/reasoning_baseline_sweep.sh LR... : the FT-ICR baseline of the reasoning profile's qa2 and qa3
# cells at other learning rates (REASONING.md, session 12): the default lr 1e-3 left it at chance
# (val EM 3-9 %), and a baseline arm is only as good as its tuning. A clone of HEAD in $DIR (default
# /tmp/rbl) with profiles/tiny/reasoning.yaml as params.yaml; tokenizer / synth / import by DVC; each
# cell's base by its own stage command; then `perk baseline --cell CELL -P baseline.lr=LR` per LR, each
# baseline directory kept as baseline_lr<LR>. Selection is on the stage's validation EM only.
#   experiments/reasoning_baseline_sweep.sh 3e-3 3e-4 > experiments/logs/reasoning_baseline_sweep.log 2>&1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${DIR:-/tmp/rbl}
rm -rf "$dir"; git clone -q "$here" "$dir"; cd "$dir"
cp profiles/tiny/reasoning.yaml params.yaml
export PYTHONPATH=$dir PERK_ROOT=$dir MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PERK_PYTHON:-$here/.venv/bin/python}
echo "RUN reasoning_baseline_sweep commit $(git rev-parse --short HEAD) lr: $* $(date -u +%FT%TZ)"
PATH=$here/.venv/bin:$PATH dvc repro -q tokenizer synth import
for cell in babilong-qa3 babilong-qa2; do
  t0=$(date +%s); "$py" -m perk.cli pretrain --no-progress --cell "$cell" > /dev/null
  echo "STAGE pretrain@$cell $(( $(date +%s) - t0 )) s"
  for lr in "$@"; do
    t0=$(date +%s)
    "$py" -m perk.cli baseline --no-progress --cell "$cell" -P "baseline.lr=$lr" 2>&1 | grep -E "step|val EM|rror"
    mv "data/matrix/$cell/baseline" "data/matrix/$cell/baseline_lr$lr"
    echo "STAGE baseline@$cell lr=$lr $(( $(date +%s) - t0 )) s run $(cat "data/matrix/$cell/baseline_lr$lr/run.json")"
  done
done
