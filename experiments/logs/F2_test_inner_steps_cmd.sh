#!/usr/bin/env bash
# F2 (niah_single_2) test at K=4 (as meta-trained) and K=6 (chosen on val_1024), RULER test files, 50 per length
cd /tmp/r15/F2_swap50  # its own perk/ moved to perk_3fac1da: the current code (evaluate.inner_steps) runs
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
common="-P meta_train.task=ruler/niah_single_2 -P baseline.task=ruler/niah_single_2 -P imports.tokenizer_texts=1000 -P meta_train.steps=800 -P meta_train.exposure_weight=0 -P meta_train.support_span=sentence"
ev="-P evaluate.tasks=[ruler/niah_single_2] -P evaluate.methods=[perk] -P evaluate.controls=[no_inner,wrong_context] -P evaluate.per_cell=50 -P evaluate.max_new_tokens=12"
for K in 6 4; do
  echo "== TEST K=$K"
  t0=$(date +%s)
  nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress $common $ev -P evaluate.inner_steps=$K -P evaluate.out_dir=data/eval_k$K 2>&1 | tail -3
  echo "STAGE evaluate K=$K $(( $(date +%s) - t0 )) s"
  cat data/eval_k$K/benchmark.json
done
