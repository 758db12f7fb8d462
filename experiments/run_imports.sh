#!/usr/bin/env bash
# One measured imported-benchmark run (experiments/IMPORTS.md): tokenizer -> import -> pretrain ->
# meta-train -> evaluate (PERK) of one imported task, from a snapshot of the committed code, with
# its own data/ and mlruns/. The snapshot lives in $PERK_RUNS/NAME (default /tmp/r15) beside a
# `shared` link to the benchmarks' parent, so the default ../shared/benchmarks paths resolve.
#   experiments/run_imports.sh NAME TASK "pretrain overrides" "meta-train overrides" > log 2>&1 &
#   STAGES="meta-train evaluate" REUSE=OTHER_NAME reuses OTHER_NAME's data/ up to pretrain.
#   IMP="-P imports.haystack_swap=0.5" adds import-stage overrides.
#   ALL="-P inner.steps=8" adds overrides to every stage.
set -euo pipefail
name=$1; task=$2; pre=${3:-}; meta=${4:-}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PERK_PYTHON:-$here/.venv/bin/python}; [ -x "$py" ] || py=/work/main/.venv/bin/python
runs=${PERK_RUNS:-/tmp/r15}; snap=$runs/$name
[ -e "$runs/shared" ] || ln -s "${PERK_SHARED:-$(cd "$here/.." && pwd)/shared}" "$runs/shared"
rm -rf "$snap"; mkdir -p "$snap"
git -C "$here" archive HEAD | tar -x -C "$snap"
if [ -n "${REUSE:-}" ]; then cp -r "$runs/$REUSE/data/." "$snap/data/"; fi
cd "$snap"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$snap" PERK_ROOT="$snap" MLFLOW_DISABLE_TELEMETRY=true
echo "RUN $name task $task commit $(git -C "$here" rev-parse --short HEAD) pretrain: $pre meta: $meta"
common="-P meta_train.task=$task -P baseline.task=$task -P imports.tokenizer_texts=1000 ${ALL:-}"
ev="-P evaluate.tasks=[$task] -P evaluate.methods=[${METHODS:-perk}] -P evaluate.controls=[] -P evaluate.per_cell=50 -P evaluate.max_new_tokens=12"
for stage in ${STAGES:-tokenizer import pretrain meta-train evaluate}; do
  t0=$(date +%s)
  case $stage in
    import) nice -n 5 "$py" -m perk.cli import --only "$task" --no-progress $common ${IMP:-} ;;
    pretrain) nice -n 5 "$py" -m perk.cli pretrain --no-progress $common $pre ;;
    meta-train) nice -n 5 "$py" -m perk.cli meta-train --no-progress $common $meta ;;
    baseline) nice -n 5 "$py" -m perk.cli baseline --no-progress $common ${BASE:-} ;;
    evaluate) nice -n 5 "$py" -m perk.cli evaluate --no-progress $common ${BASE:-} $ev ;;  # BASE: the evaluate run records the baseline it reads
    *) nice -n 5 "$py" -m perk.cli "$stage" --no-progress $common ;;
  esac
  echo "STAGE $stage $(( $(date +%s) - t0 )) s"
done
cat data/meta_train/metrics.json 2>/dev/null || true
cat data/eval/benchmark.json 2>/dev/null || true
