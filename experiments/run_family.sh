#!/usr/bin/env bash
# One measured family run (experiments/FAMILIES.md): synth -> pretrain -> meta-train of one task,
# from a snapshot of the committed code (later edits in the worktree cannot leak into a running
# job) with its own data/ and mlruns/, reusing this checkout's trained tokenizer. STAGES="synth pretrain
# baseline" trains the FT-ICR baseline instead of PERK.
#   experiments/run_family.sh NAME key=value ... > experiments/logs/NAME.log 2>&1 &
set -euo pipefail
name=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PERK_PYTHON:-$here/.venv/bin/python}
snap=/tmp/perk_runs/$name
rm -rf "$snap"; mkdir -p "$snap"
git -C "$here" archive HEAD | tar -x -C "$snap"
mkdir -p "$snap/data"; cp -r "$here/data/tokenizer" "$snap/data/"
cd "$snap"
args=(); for kv in "$@"; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$snap" PERK_ROOT="$snap" MLFLOW_DISABLE_TELEMETRY=true
echo "RUN $name commit $(git -C "$here" rev-parse --short HEAD) overrides: $*"
for stage in ${STAGES:-synth pretrain meta-train}; do
  t0=$(date +%s)
  nice -n 5 "$py" -m perk.cli "$stage" --no-progress "${args[@]}"
  echo "STAGE $stage $(( $(date +%s) - t0 )) s"
done
for d in meta_train baseline; do [ -f data/$d/metrics.json ] && cat data/$d/metrics.json; done; true
