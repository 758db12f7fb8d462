"""Every greedy validation answer of a run's PERK, one line per record (right?, answer, prediction,
context tokens, depths): what experiments/val_em.py summarises, for reading the misses.
Run in the run's project dir with that run's overrides (key=value, no -P):
   PYTHONPATH=$PWD python experiments/val_dump.py TASK N [key=value ...]"""
import sys

import torch

from perk.config import load_params
from perk.evaluate import perk_answerer
from perk.scoring import exact_match
from perk.stages import common, perk_model

task, n, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
p = load_params("params.yaml", overrides)
tok = common.tokenizer(p)
answer = perk_answerer(perk_model.load_perk(p, tok).eval(), tok, p.evaluate.max_new_tokens, torch.device("cpu"),
                       micro_batch=p.evaluate.micro_batch)
rows = [r for r in common.rows(p, task, "val") if "/ask" not in r["id"]][:n]  # the benchmark's own questions
right = 0
for r in rows:
    pred = answer(r)[0]
    ok = exact_match(pred, r["answer"])
    right += ok
    print(int(ok), repr(r["answer"]), repr(pred), r.get("context_tokens"), r.get("depths"), flush=True)
print(f"EM {right}/{len(rows)}")
