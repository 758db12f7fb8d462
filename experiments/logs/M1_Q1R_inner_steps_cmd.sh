#!/usr/bin/env bash
# test-time inner steps on the multikey (M1) and qa1 (Q1R) runs' validation (current code: the snapshots' perk/ moved aside)
while pgrep -f f2_test.sh >/dev/null; do sleep 20; done
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main MLFLOW_DISABLE_TELEMETRY=true
for d in M1_mk_from_single Q1R_qa1_recency; do [ -d /tmp/r15/$d/perk ] && mv /tmp/r15/$d/perk /tmp/r15/$d/perk_snapshot; done
cd /tmp/r15/M1_mk_from_single; export PERK_ROOT=$PWD
O="meta_train.task=ruler/niah_multikey_1 baseline.task=ruler/niah_multikey_1 imports.tokenizer_texts=1000 meta_train.exposure_weight=0 meta_train.support_span=sentence evaluate.max_new_tokens=12"
for K in 4 6; do echo "== M1 K=$K"; nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 --first $O evaluate.inner_steps=$K 2>&1 | grep -v "^{"; done
cd /tmp/r15/Q1R_qa1_recency; export PERK_ROOT=$PWD
O="meta_train.task=babilong_bench/qa1 baseline.task=babilong_bench/qa1 imports.tokenizer_texts=1000 meta_train.exposure_weight=0 meta_train.support_span=sentence inner.recency=true evaluate.max_new_tokens=12"
for K in 4 6; do echo "== Q1R K=$K"; nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 --first $O evaluate.inner_steps=$K 2>&1 | grep -v "^{"; done
#!/usr/bin/env bash
cd /tmp/r15/Q1R_qa1_recency
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main PERK_ROOT=$PWD MLFLOW_DISABLE_TELEMETRY=true
O="meta_train.task=babilong_bench/qa1 baseline.task=babilong_bench/qa1 imports.tokenizer_texts=1000 meta_train.exposure_weight=0 meta_train.support_span=sentence inner.recency=true evaluate.max_new_tokens=12"
for K in 5 8; do echo "== Q1R K=$K"; nice -n 5 /work/main/.venv/bin/python /work/main/experiments/val_em.py --methods perk --n 64 --first $O evaluate.inner_steps=$K 2>&1 | grep -v "^{"; done
