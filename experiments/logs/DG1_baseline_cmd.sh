#!/usr/bin/env bash
# Session 16: the FT-ICR baseline with DG1's tokenizer (3-digit number tokens) and base, its defaults (G's
# baseline settings), then its test; current code over the snapshot (its perk/ moved aside).
cd /tmp/r15/DG1_single2
export PYTHONPATH=/work/main OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
c="-P meta_train.task=ruler/niah_single_2 -P baseline.task=ruler/niah_single_2 -P imports.tokenizer_texts=1000 -P tokenizer.digit_group=3 -P tokenizer.vocab_size=7424"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli baseline --no-progress $c; echo "STAGE baseline $(( $(date +%s) - t0 )) s"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress $c -P "evaluate.tasks=[ruler/niah_single_2]" \
  -P "evaluate.methods=[baseline]" -P "evaluate.controls=[]" -P evaluate.per_cell=50 -P evaluate.max_new_tokens=12 -P evaluate.out_dir=data/eval_baseline
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"; cat data/eval_baseline/benchmark.json
