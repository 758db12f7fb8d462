#!/usr/bin/env bash
# PKR's baseline trained longer (2,000 steps x 4: val was still rising at 700), then its test on PKR's test split
cd /tmp/perk_runs/PKR_passkey_recallbase
O=$(grep -m1 "^RUN" /work/main/experiments/logs/PKR_passkey_recallbase.log | sed 's/.*overrides: //')
args=(); for kv in $O baseline.steps=2000 baseline.out_dir=data/baseline_2000; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$PWD PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "RUN PKR baseline 2000 overrides: $O baseline.steps=2000 baseline.out_dir=data/baseline_2000"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli baseline --no-progress "${args[@]}"; echo "STAGE baseline $(( $(date +%s) - t0 )) s"
test=(-P synth.out_dir=data/synth_test -P synth.tasks.needle.n_test=10 -P "synth.tasks.needle.eval_lengths=[512,4096]")
t0=$(date +%s)
nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress "${args[@]}" "${test[@]}" -P evaluate.per_cell=10 \
  -P "evaluate.only_lengths=[512,4096]" -P "evaluate.methods=[baseline]" -P evaluate.max_new_tokens=8 -P evaluate.out_dir=data/eval_bl2000
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"; cat data/eval_bl2000/metrics.json
