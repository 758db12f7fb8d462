#!/usr/bin/env bash
# experiments/fam.sh NAME TASK(family/subtask) key=value ...: run_family.sh with the common settings of
# experiments/FAMILIES.md (one family and subtask enabled, n_train 2000, n_val 64, n_test 1, that task
# everywhere), pretrain 400 steps without recall text (time), meta_train.steps 500 unless overridden.
set -euo pipefail
name=$1; task=$2; shift 2
fam=${task%/*}; sub=${task#*/}
here=$(cd "$(dirname "$0")/.." && pwd)
off=(); for f in needle babilong records retrieval; do [ "$f" = "$fam" ] || off+=("synth.tasks.$f.enabled=false"); done
exec "$here/experiments/run_family.sh" "$name" "${off[@]}" "synth.tasks.$fam.subtasks=[$sub]" \
  "synth.tasks.$fam.n_train=2000" "synth.tasks.$fam.n_val=64" "synth.tasks.$fam.n_test=1" \
  "meta_train.task=$task" "baseline.task=$task" "evaluate.tasks=[$task]" \
  pretrain.steps=400 pretrain.recall=false meta_train.steps=500 "$@"
