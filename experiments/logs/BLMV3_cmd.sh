#!/usr/bin/env bash
# BLMV3: the FT-ICR baseline on BLMV1's recall base, multivalue in context order (RULER's order)
set -e  # BLMV3: BLMV2 with 2,500 steps (its val was still rising), current code
cd /tmp/perk_runs/BLMV1_multivalue_recallbase
O=$(grep -m1 "^RUN" /work/main/experiments/logs/BLMV1_multivalue_recallbase.log | sed 's/.*overrides: //')
args=(); for kv in $O synth.tasks.needle.value_order=context synth.out_dir=data/synth_ctx baseline.out_dir=data/baseline_ctx2500 baseline.steps=2500; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "RUN BLMV3 in $PWD overrides: $O synth.tasks.needle.value_order=context synth.out_dir=data/synth_ctx baseline.out_dir=data/baseline_ctx2500 baseline.steps=2500"
for stage in baseline; do
  t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli $stage --no-progress "${args[@]}"; echo "STAGE $stage $(( $(date +%s) - t0 )) s"
done
cat data/baseline_ctx2500/metrics.json
test=(-P synth.out_dir=data/synth_ctx_test -P synth.tasks.needle.n_test=10 -P "synth.tasks.needle.eval_lengths=[512,4096]")
[ -d perk ] && mv perk perk_snapshot_dad83db
export PYTHONPATH=/work/main
t0=$(date +%s)
nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress "${args[@]}" "${test[@]}" -P evaluate.per_cell=10 \
  -P "evaluate.only_lengths=[512,4096]" -P "evaluate.methods=[baseline]" -P evaluate.max_new_tokens=8 -P evaluate.out_dir=data/eval_ctx2500
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"; cat data/eval_ctx2500/metrics.json data/eval_ctx2500/benchmark.json
