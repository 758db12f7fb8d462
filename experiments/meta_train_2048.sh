#!/usr/bin/env bash
# Issue 16, acceptance 3: the full default meta-training schedule (700 outer steps) at 2048-token
# contexts (4x the default train length) with the memory-bounded meta-gradients, on the default
# base. Run from a checkout whose default pipeline has produced data/tokenizer and data/pretrain
# (`dvc repro pretrain`); writes data/meta_train_2048/ and data/synth_2048/, prints the process's
# peak RSS (/usr/bin/time) and the validation EM.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PERK_PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MLFLOW_DISABLE_TELEMETRY=true
S=(-P synth.out_dir=data/synth_2048 -P 'synth.tasks.needle.train_lengths=[2048]'
   -P 'synth.tasks.needle.eval_lengths=[2048,16384]' -P synth.tasks.needle.n_test=1)
M=(-P inner.bounded_memory=true -P inner.micro_batch=4 -P meta_train.out_dir=data/meta_train_2048)
"$py" -m perk.cli synth "${S[@]}"
/usr/bin/time -f "peak RSS %M KB, wall %e s" "$py" -m perk.cli meta-train "${S[@]}" "${M[@]}"
cat data/meta_train_2048/metrics.json
