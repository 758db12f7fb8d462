#!/usr/bin/env bash
# test-time inner steps on MVS3: 8x validation (data/synth_val8x, val keys, seed as synth) and 1x val
cd /tmp/perk_runs/MVS3_multivalue_sorted_3200
O=$(cat /tmp/mvs3_overrides)
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD
for K in 4 8 16; do
  echo "== K=$K 8x val"
  nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 $O synth.out_dir=data/synth_val8x "synth.tasks.needle.train_lengths=[4096]" "synth.tasks.needle.eval_lengths=[4096,32768]" synth.tasks.needle.n_train=5 evaluate.inner_steps=$K 2>&1 | grep -v "^{"
done
for K in 8 16; do
  echo "== K=$K 1x val"
  nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 $O evaluate.inner_steps=$K 2>&1 | grep -v "^{"
done
