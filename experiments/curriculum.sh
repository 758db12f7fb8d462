#!/usr/bin/env bash
# experiments/curriculum.sh NAME TASK "STAGE1 key=value ..." "STAGE2 key=value ..." [common key=value ...]
# A two-stage curriculum (experiments/REASONING.md): fam.sh's run with the STAGE1 overrides (synth ->
# pretrain -> meta-train), then, in the same snapshot and on the same base, a fresh synth with the STAGE2
# overrides into data/synth2 and a meta-train from stage 1's perk.safetensors (meta_train.init_from)
# into data/meta_train2. Its val EM is on stage 2's validation split (the task as it is tested).
set -euo pipefail
name=$1; task=$2; s1=$3; s2=$4; shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PERK_PYTHON:-$here/.venv/bin/python}
read -r -a one <<< "$s1"; read -r -a two <<< "$s2"
"$here/experiments/fam.sh" "$name" "$task" "$@" "${one[@]}"
snap=/tmp/perk_runs/$name; cd "$snap"
source "$here/experiments/fam_args.sh"; fam_args "$task"
args=(); for kv in "${FAM_ARGS[@]}" "$@" "${two[@]}" synth.out_dir=data/synth2 meta_train.out_dir=data/meta_train2 \
  meta_train.init_from=data/meta_train/perk.safetensors; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$snap" PERK_ROOT="$snap" MLFLOW_DISABLE_TELEMETRY=true
echo "CURRICULUM stage 2 overrides: $s2 $*"
for stage in synth meta-train; do
  t0=$(date +%s)
  nice -n 5 "$py" -m perk.cli "$stage" --no-progress "${args[@]}"
  echo "STAGE2 $stage $(( $(date +%s) - t0 )) s"
done
cat data/meta_train2/metrics.json
