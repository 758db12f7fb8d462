#!/usr/bin/env bash
# The retrieval position-bias protocol (issue #14, experiments/POSITION.md), scripted: a clone of HEAD
# in $DIR (default /tmp/pos-run) with profiles/tiny/position-retrieval.yaml as params.yaml, the stage
# commands `dvc repro position@retrieval` runs (perk <stage> --cell NAME), in three one-thread chains
# side by side instead of DVC's one serial chain, then `perk position`. (The measured P2 run launched
# the same commands by hand: POSITION.md says how.)
#   experiments/position_retrieval.sh > experiments/logs/position_retrieval.log 2>&1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${DIR:-/tmp/pos-run}
rm -rf "$dir"; git clone -q "$here" "$dir"; cd "$dir"
cp profiles/tiny/position-retrieval.yaml params.yaml
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$dir PERK_ROOT=$dir MLFLOW_DISABLE_TELEMETRY=true
py=${PERK_PYTHON:-$here/.venv/bin/python}
stage() {  # stage NAME CELL...: one stage of each cell in turn, timed
  local st=$1; shift
  for cell in "$@"; do
    until [ -f "data/matrix/$cell/pretrain/info.json" ] || [ "$st" = pretrain ]; do sleep 30; done
    local t0; t0=$(date +%s)
    "$py" -m perk.cli "$st" --no-progress --cell "$cell"
    echo "STAGE $st@$cell $(( $(date +%s) - t0 )) s"
  done
}
echo "RUN position_retrieval commit $(git rev-parse --short HEAD)"
OMP_NUM_THREADS=2 "$py" -m perk.cli tokenizer --no-progress
OMP_NUM_THREADS=2 "$py" -m perk.cli synth --no-progress
( for c in retrieval-first retrieval-last; do stage pretrain $c; stage meta-train $c; done ) &
( for c in retrieval-random retrieval-middle; do stage pretrain $c; stage meta-train $c; done ) &
( stage baseline retrieval-first retrieval-random retrieval-last retrieval-middle ) &
wait
( stage evaluate retrieval-first retrieval-last ) & ( stage evaluate retrieval-random retrieval-middle ) &
wait
"$py" -m perk.cli position --no-progress
cat data/position/retrieval/matrix.md
