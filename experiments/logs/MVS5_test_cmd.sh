#!/usr/bin/env bash
while pgrep -f mvs5_resume.sh >/dev/null; do sleep 15; done
# evaluate with the current code (its own perk/, dad83db, predates needle string_match_all in benchmark.json)
cd /tmp/perk_runs/MVS5_multivalue_sorted_cont2 && rm -rf perk && git -C /work/main archive HEAD perk | tar -x -C .
cd /work/main
STAGES=evaluate experiments/fam_test.sh MVS5_multivalue_sorted_cont2 needle/multivalue meta_train.support_span=sentence synth.tasks.needle.value_order=sorted meta_train.steps=3200 meta_train.lr=0.0005 "evaluate.methods=[perk]" > experiments/logs/MVS5_multivalue_sorted_cont2_test.log 2>&1
