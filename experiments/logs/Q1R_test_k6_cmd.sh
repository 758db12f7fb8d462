#!/usr/bin/env bash
# Q1R (BABILong qa1, recency) test at K=6 (chosen on val: K=4 46.9, 5 57.8, 6 57.8, 8 56.3 %); K=4's test is IMPORTS.md's
cd /tmp/r15/Q1R_qa1_recency
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
common="-P meta_train.task=babilong_bench/qa1 -P baseline.task=babilong_bench/qa1 -P imports.tokenizer_texts=1000 -P meta_train.exposure_weight=0 -P meta_train.support_span=sentence -P inner.recency=true"
ev="-P evaluate.tasks=[babilong_bench/qa1] -P evaluate.methods=[perk] -P evaluate.controls=[no_inner,wrong_context] -P evaluate.per_cell=50 -P evaluate.max_new_tokens=12"
t0=$(date +%s)
nice -n 5 /work/main/.venv/bin/python -m perk.cli evaluate --no-progress $common $ev -P evaluate.inner_steps=6 -P evaluate.out_dir=data/eval_k6 2>&1 | tail -3
echo "STAGE evaluate K=6 $(( $(date +%s) - t0 )) s"
python3 -c "
import json; b=json.load(open('data/eval_k6/benchmark.json'))
for m,t in b.items():
  for task,c in t.items(): print(m, task, {L: (v['score'], v['ci']) for L,v in sorted(c.items(), key=lambda kv: int(kv[0]))})"
