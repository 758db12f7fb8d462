#!/usr/bin/env bash
# experiments/fam_test.sh NAME TASK key=value ...: the test figures of a fam.sh / curriculum.sh run, in its
# snapshot /tmp/perk_runs/NAME, with the run's own overrides (a curriculum's: add synth.out_dir=data/synth2
# meta_train.out_dir=data/meta_train2): the FT-ICR baseline on the same base and train rows (its defaults,
# unless overridden), a fresh test split of n_test 10 per (length, depth) cell (5 depths: 50 questions per
# length) at 512 and 4096 tokens (1x, 8x) into data/synth_test, then PERK, the baseline and both PERK
# controls on it. STAGES="evaluate" skips the baseline's training.
set -euo pipefail
name=$1; task=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PERK_PYTHON:-$here/.venv/bin/python}
source "$here/experiments/fam_args.sh"; fam_args "$task"
fam=${task%/*}
snap=/tmp/perk_runs/$name; cd "$snap"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$snap" PERK_ROOT="$snap" MLFLOW_DISABLE_TELEMETRY=true
args=(); for kv in "${FAM_ARGS[@]}" "$@"; do args+=(-P "$kv"); done
test=(-P synth.out_dir=data/synth_test -P "synth.tasks.$fam.n_test=10" -P "synth.tasks.$fam.eval_lengths=[512,4096]")
echo "TEST $name $task commit $(git -C "$here" rev-parse --short HEAD) overrides: $*"
t0=$(date +%s)
for stage in ${STAGES:-baseline evaluate}; do
  case $stage in
    baseline) nice -n 5 "$py" -m perk.cli baseline --no-progress "${args[@]}" ;;
    evaluate)
      nice -n 5 "$py" -m perk.cli synth --no-progress "${args[@]}" "${test[@]}"
      nice -n 5 "$py" -m perk.cli evaluate --no-progress "${args[@]}" "${test[@]}" -P evaluate.per_cell=10 \
        -P "evaluate.only_lengths=[512,4096]" -P "evaluate.controls=[no_inner,wrong_context]" -P evaluate.max_new_tokens=8 ;;
  esac
  echo "STAGE $stage $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
done
cat data/eval/metrics.json
