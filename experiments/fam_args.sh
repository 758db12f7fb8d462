# Sourced by fam.sh, curriculum.sh and fam_test.sh: fam_args TASK sets the array FAM_ARGS to the common
# settings of experiments/FAMILIES.md for one family/subtask (only it synthesized, n_train 2000, n_val 64,
# n_test 1, that task everywhere), pretrain 400 steps without recall text (time), meta_train.steps 500.
fam_args() {
  local task=$1 fam=${1%/*} sub=${1#*/} f
  FAM_ARGS=()
  for f in needle babilong records retrieval; do [ "$f" = "$fam" ] || FAM_ARGS+=("synth.tasks.$f.enabled=false"); done
  FAM_ARGS+=("synth.tasks.$fam.subtasks=[$sub]" "synth.tasks.$fam.n_train=2000" "synth.tasks.$fam.n_val=64"
             "synth.tasks.$fam.n_test=1" "meta_train.task=$task" "baseline.task=$task" "evaluate.tasks=[$task]"
             pretrain.steps=400 pretrain.recall=false meta_train.steps=500)
}
