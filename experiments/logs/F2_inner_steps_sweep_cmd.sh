#!/usr/bin/env bash
cd /tmp/r15/F2_swap50
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD
O="meta_train.task=ruler/niah_single_2 baseline.task=ruler/niah_single_2 imports.tokenizer_texts=1000 meta_train.steps=800 meta_train.exposure_weight=0 meta_train.support_span=sentence evaluate.max_new_tokens=12"
for K in 5 6 7; do
  echo "== K=$K val_1024"
  nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 --first $O evaluate.inner_steps=$K 2>&1 | grep -v "^{"
done
