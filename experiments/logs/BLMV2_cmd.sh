#!/usr/bin/env bash
# BLMV2: the FT-ICR baseline on BLMV1's recall base, multivalue in context order (RULER's order)
set -e
cd /tmp/perk_runs/BLMV1_multivalue_recallbase
O=$(grep -m1 "^RUN" /work/main/experiments/logs/BLMV1_multivalue_recallbase.log | sed 's/.*overrides: //')
args=(); for kv in $O synth.tasks.needle.value_order=context synth.out_dir=data/synth_ctx baseline.out_dir=data/baseline_ctx baseline.steps=1500; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$PWD PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "RUN BLMV2 in $PWD overrides: $O synth.tasks.needle.value_order=context synth.out_dir=data/synth_ctx baseline.out_dir=data/baseline_ctx baseline.steps=1500"
for stage in synth baseline; do
  t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli $stage --no-progress "${args[@]}"; echo "STAGE $stage $(( $(date +%s) - t0 )) s"
done
cat data/baseline_ctx/metrics.json
