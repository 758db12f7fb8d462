#!/usr/bin/env bash
# Session 16: the DG runs' PERK on validation at 1024 (the dev val file) and at 2048/4096 (imports.val_lengths:
# the same val records in book prose of that length), current code over each snapshot (its perk/ moved aside).
set -u
# The first try (log DG_val_lengths_trainprose.log) ran before imports.val_haystack_source existed: val_<L> was
# filled from haystack_source, the train-side prose.
for run in "$@"; do
  cd /tmp/r15/$run || continue
  case $run in
    DG1*|DGC*) ALL="-P tokenizer.digit_group=3 -P tokenizer.vocab_size=7424" ;;
    DG2*) ALL="-P tokenizer.digit_group=2" ;;
    *) ALL="" ;;
  esac
  snap=$(ls -d perk_snapshot_* 2>/dev/null | head -1); [ -n "$snap" ] || { mv perk perk_snapshot_$run; }
  export PYTHONPATH=/work/main OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
  common="-P meta_train.task=ruler/niah_single_2 -P imports.tokenizer_texts=1000 -P imports.haystack_swap=0.5 -P imports.val_lengths=[2048,4096] $ALL"
  /work/main/.venv/bin/python -m perk.cli import --only ruler/niah_single_2 --no-progress $common
  ov=$(echo "$common" | sed 's/-P //g')
  for split in val val_2048 val_4096; do
    echo "== $run $split"
    /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 --split $split $ov evaluate.max_new_tokens=12
  done
done
