#!/usr/bin/env bash
# The retrieval position-bias protocol (issue #14, experiments/POSITION.md), scripted on a clone of HEAD
# in $DIR (default /tmp/pos-run) with profiles/tiny/position-retrieval.yaml as params.yaml.
# `dvc repro position@retrieval` alone runs the four cell chains one after another;
# this runs the same stage commands (perk <stage> --cell NAME, as dvc.yaml writes them) four chains side
# by side at one thread each, then `dvc commit` records their outputs in dvc.lock and `dvc repro
# position@retrieval` runs the last stage; `dvc status` must then report everything up to date.
#   experiments/position_retrieval.sh > experiments/logs/position_retrieval.log 2>&1
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${DIR:-/tmp/pos-run}
rm -rf "$dir"; git clone -q "$here" "$dir"; cd "$dir"
cp profiles/tiny/position-retrieval.yaml params.yaml
export PYTHONPATH=$dir PERK_ROOT=$dir MLFLOW_DISABLE_TELEMETRY=true  # this clone's code and mlruns
export PATH=$here/.venv/bin:$PATH  # its dvc, and the `perk` that dvc.yaml's commands call
py=${PERK_PYTHON:-$here/.venv/bin/python}
cells=(retrieval-first retrieval-middle retrieval-last retrieval-random)
stage() {  # stage NAME CELL...: one stage of each cell in turn, timed, its log in experiments/logs
  local st=$1; shift
  for cell in "$@"; do
    local t0; t0=$(date +%s)
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" -m perk.cli "$st" --no-progress --cell "$cell" \
      > "$here/experiments/logs/$(basename "$dir")_${st}_$cell.log" 2>&1
    echo "STAGE $st@$cell $(( $(date +%s) - t0 )) s"
  done
}
echo "RUN position_retrieval commit $(git rev-parse --short HEAD) $(date -u +%FT%TZ)"
dvc repro tokenizer synth import  # (side-by-side first runs share one new MLflow store: tracking.setup locks it)
for cell in "${cells[@]}"; do
  ( stage pretrain "$cell"; stage meta-train "$cell"
    # evaluate reads the cell's baseline too: wait for it (run.json is the baseline stage's last write)
    until [ -f "data/matrix/$cell/baseline/run.json" ]; do sleep 30; done
    stage evaluate "$cell" ) &
done
( for cell in "${cells[@]}"; do
    until [ -f "data/matrix/$cell/pretrain/info.json" ]; do sleep 30; done
    stage baseline "$cell"
  done ) &
wait
for cell in "${cells[@]}"; do [ -f "data/matrix/$cell/eval/metrics.json" ] || { echo "cell $cell did not finish"; exit 1; }; done
# record the side-by-side outputs as the stages' own (position@retrieval itself has none yet: DVC runs it)
dvc commit -f -d "${cells[@]/#/matrix-evaluate@}"
dvc repro position@retrieval
dvc status position@retrieval --with-deps  # "Data and pipelines are up to date."
cat data/position/retrieval/matrix.md
