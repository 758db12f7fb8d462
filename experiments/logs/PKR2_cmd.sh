#!/usr/bin/env bash
# PKR2: PKR's PERK continued 1,000 steps (lr 1e-3, fresh Adam; its val was still rising at 1,000), then its test
cd /tmp/perk_runs/PKR_passkey_recallbase
[ -d perk ] && mv perk perk_snapshot_9fff198
O=$(grep -m1 "^RUN" /work/main/experiments/logs/PKR_passkey_recallbase.log | sed 's/.*overrides: //')
args=(); for kv in $O meta_train.lr=0.001 meta_train.init_from=data/meta_train/perk.safetensors meta_train.out_dir=data/meta_train2; do args+=(-P "$kv"); done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
echo "RUN PKR2 code $(git -C /work/main rev-parse --short HEAD) overrides: $O meta_train.lr=0.001 meta_train.init_from=data/meta_train/perk.safetensors meta_train.out_dir=data/meta_train2"
t0=$(date +%s); nice -n 5 /work/main/.venv/bin/python -m perk.cli meta-train --no-progress "${args[@]}"; echo "STAGE meta-train $(( $(date +%s) - t0 )) s"
test=(-P synth.out_dir=data/synth_test -P synth.tasks.needle.n_test=10 -P "synth.tasks.needle.eval_lengths=[512,4096]")
t0=$(date +%s)
nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress "${args[@]}" "${test[@]}" -P evaluate.per_cell=10 \
  -P "evaluate.only_lengths=[512,4096]" -P "evaluate.methods=[perk]" -P "evaluate.controls=[no_inner,wrong_context]" -P evaluate.max_new_tokens=8 -P evaluate.out_dir=data/eval_perk2
echo "STAGE evaluate $(( $(date +%s) - t0 )) s"; cat data/eval_perk2/metrics.json
