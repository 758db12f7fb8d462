"""retrieval validation answers of a finished family run (run in its snapshot dir /tmp/perk_runs/NAME with the run's overrides): right, another API of the same context, or a name not in it."""
import re, sys, collections, torch
from perk.config import load_params
from perk.stages import common
from perk.stages.perk_model import load_perk
from perk.evaluate import perk_answerer
from perk.scoring import exact_match
torch.set_num_threads(1)
p = load_params("params.yaml", sys.argv[1:])
tok = common.tokenizer(p)
ans = perk_answerer(load_perk(p, tok).eval(), tok, 8, torch.device("cpu"), micro_batch=16)
rows = [r for r in common.rows(p, p.meta_train.task, "val") if "/ask" not in r["id"]][:24]
c = collections.Counter(); preds = collections.Counter()
for r in rows:
    names = set(re.findall(r" is (\w+)\. Parameters:", " ".join(r["context"])))
    pred = ans(r)[0]; preds[pred] += 1
    c["right" if exact_match(pred, r["answer"]) else ("another API of the context" if pred in names else "not in the context")] += 1
    c["shares a code word with the gold"] += bool(set(pred.split("_")) & set(r["answer"].split("_")))
print(dict(c), "distinct answers", len(preds), preds.most_common(3))
