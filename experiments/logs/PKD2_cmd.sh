#!/usr/bin/env bash
# Session 16: needle/passkey on the recall base with 3-digit number tokens (PKR's recipe, 600 steps: PKD reached
# 100 % val at 300 of 1,000), then its test (FT-ICR at its defaults on the same base and rows, 512 / 4096, controls)
cd /work/main
O="meta_train.support_span=sentence meta_train.steps=600 pretrain.recall=true pretrain.steps=800 tokenizer.digit_group=3"
STAGES="tokenizer synth pretrain meta-train" experiments/fam.sh PKD2_passkey_digits needle/passkey $O
experiments/fam_test.sh PKD2_passkey_digits needle/passkey $O
