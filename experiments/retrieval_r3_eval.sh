#!/usr/bin/env bash
# Test evaluation of FAMILIES.md run R3 in its snapshot (/tmp/perk_runs/R3_retrieval_ask_all, made by
#   experiments/run_family.sh R3_retrieval_ask_all <the overrides below>): a fresh retrieval test split of
#   n_test 50 into data/synth_test, then PERK, the baseline and both controls at 512-4096 tokens.
set -euo pipefail
cd /tmp/perk_runs/R3_retrieval_ask_all
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$PWD PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
A="-P meta_train.task=retrieval/random -P baseline.task=retrieval/random -P synth.tasks.retrieval.hard_negatives=0 -P synth.tasks.retrieval.name_pool=shared -P synth.tasks.retrieval.ask_docs=64 -P synth.tasks.retrieval.n_train=4000 -P synth.tasks.retrieval.n_val=256 -P pretrain.steps=400 -P meta_train.steps=1400"
py=/work/main/.venv/bin/python
t0=$(date +%s)
$py -m perk.cli synth --no-progress --tasks retrieval --out-dir data/synth_test $A -P synth.tasks.retrieval.n_test=50
echo "STAGE synth_test $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
$py -m perk.cli evaluate --no-progress $A -P synth.out_dir=data/synth_test -P synth.tasks.retrieval.n_test=50 \
  -P "evaluate.tasks=[retrieval/random]" -P "evaluate.methods=[${METHODS:-perk,baseline}]" \
  -P "evaluate.controls=[no_inner,wrong_context]" -P evaluate.per_cell=50 -P evaluate.max_new_tokens=8
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"
cat data/eval/metrics.json
