"""Per-field validation answers of a finished family run; run in its snapshot dir (/tmp/perk_runs/NAME) with that run's overrides:
   PYTHONPATH=$PWD python experiments/family_diag.py key=value ... (records/recall groups by the asked field)."""
import re, sys, collections, torch
from perk.config import load_params
from perk.stages import common
from perk.stages.evaluate import _load_perk
from perk.evaluate import perk_answerer
from perk.scoring import exact_match
torch.set_num_threads(1)
p = load_params("params.yaml", sys.argv[1:])
tok = common.tokenizer(p)
b = _load_perk(p, tok).eval()
ans = perk_answerer(b, tok, 8, torch.device("cpu"), micro_batch=16)
by = collections.defaultdict(list)
for r in common.rows(p, p.meta_train.task, "val")[:48]:
    m = re.search(r"What is the (\w+) of", r["question"]); k = m.group(1) if m else r["subtask"]
    pred = ans(r)[0]
    by[k].append((exact_match(pred, r["answer"]), pred, r["answer"]))
for k, v in by.items():
    print(k, f"EM {sum(e for e,_,_ in v)}/{len(v)}", [(p_, a) for _, p_, a in v[:4]])
