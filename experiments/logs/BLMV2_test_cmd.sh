#!/usr/bin/env bash
# BLMV2's test: the FT-ICR baseline (context order, recall base) on a fresh test split of context-order
# multivalue (the contexts of MVS3's test split; only the gold order differs), 50 per length at 512 / 4096
cd /tmp/perk_runs/BLMV1_multivalue_recallbase
[ -d perk ] && mv perk perk_snapshot_dad83db
O=$(grep -m1 "^RUN" /work/main/experiments/logs/BLMV1_multivalue_recallbase.log | sed 's/.*overrides: //')
args=(); for kv in $O synth.tasks.needle.value_order=context baseline.out_dir=data/baseline_ctx; do args+=(-P "$kv"); done
test=(-P synth.out_dir=data/synth_ctx_test -P synth.tasks.needle.n_test=10 -P "synth.tasks.needle.eval_lengths=[512,4096]")
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "TEST BLMV2 code $(git -C /work/main rev-parse --short HEAD)"
t0=$(date +%s)
nice -n 5 /work/main/.venv/bin/python -m perk.cli synth --no-progress "${args[@]}" "${test[@]}"
nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress "${args[@]}" "${test[@]}" -P evaluate.per_cell=10 \
  -P "evaluate.only_lengths=[512,4096]" -P "evaluate.methods=[baseline]" -P evaluate.max_new_tokens=8 -P evaluate.out_dir=data/eval_ctx
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"
cat data/eval_ctx/metrics.json data/eval_ctx/benchmark.json
