#!/bin/sh
# usage: experiments/bl_run.sh NAME "pretrain -P overrides" "baseline -P overrides"
# runs perk pretrain then perk baseline with the shared model overrides in $MODEL_P
set -e
N=$1; PRE=$2; BL=$3
export PYTHONPATH=$(pwd) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true
PY=/work/main/.venv/bin/python
start=$(date +%s)
$PY -m perk.cli pretrain --no-progress $MODEL_P $PRE -P pretrain.out_dir=data/pretrain_$N
mid=$(date +%s); echo "TIME pretrain $((mid-start)) s"
$PY -m perk.cli baseline --no-progress $MODEL_P $BL -P pretrain.out_dir=data/pretrain_$N -P baseline.out_dir=data/baseline_$N
end=$(date +%s); echo "TIME baseline $((end-mid)) s"
