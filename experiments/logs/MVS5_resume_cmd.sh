#!/usr/bin/env bash
# MVS5 resumed from its step-1500 checkpoint with the windowed divergence guard (its own perk/ moved aside)
cd /tmp/perk_runs/MVS5_multivalue_sorted_cont2
[ -d perk ] && mv perk perk_snapshot_dad83db
O=$(grep -m1 "^RUN" /work/main/experiments/logs/MVS5_multivalue_sorted_cont2.log | sed 's/.*overrides: //')
args=(); for kv in $O; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "RESUME MVS5 code $(git -C /work/main rev-parse --short HEAD)"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli meta-train --no-progress "${args[@]}"
echo "STAGE meta-train (resumed) $(( $(date +%s) - t0 )) s"; cat data/meta_train/metrics.json
