#!/usr/bin/env bash
# Session 16: DG1_baseline_cmd.sh with 2,000 steps (its 700-step val EM 7.8 %: was it still learning?)
# baseline settings), then its test; current code over the snapshot (its perk/ moved aside).
cd /tmp/r15/DG1_single2
export PYTHONPATH=/work/main OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
c="-P meta_train.task=ruler/niah_single_2 -P baseline.task=ruler/niah_single_2 -P imports.tokenizer_texts=1000 -P tokenizer.digit_group=3 -P tokenizer.vocab_size=7424"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli baseline --no-progress $c -P baseline.steps=2000 -P baseline.out_dir=data/baseline_2000; echo "STAGE baseline $(( $(date +%s) - t0 )) s"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress $c -P "evaluate.tasks=[ruler/niah_single_2]" \
  -P "evaluate.methods=[baseline]" -P "evaluate.controls=[]" -P evaluate.per_cell=50 -P evaluate.max_new_tokens=12 -P evaluate.out_dir=data/eval_baseline_2000 -P baseline.out_dir=data/baseline_2000
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"; cat data/eval_baseline_2000/benchmark.json
