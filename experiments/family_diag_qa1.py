"""babilong/qa1 validation answers of a finished family run (run in its snapshot dir
/tmp/perk_runs/NAME with the run's overrides): right; wrong but a room the asked person visited
earlier; another person's room of the same story; a room outside the story. Grouped by how often
the asked person moved."""
import collections
import re
import sys

import torch

from perk.config import load_params
from perk.evaluate import perk_answerer
from perk.scoring import exact_match
from perk.stages import common
from perk.stages.evaluate import _load_perk

torch.set_num_threads(1)
p = load_params("params.yaml", sys.argv[1:])
tok = common.tokenizer(p)
ans = perk_answerer(_load_perk(p, tok).eval(), tok, 8, torch.device("cpu"), micro_batch=16)
MOVE = re.compile(r"(\w+) (?:moved|went|journeyed|travelled) to the (\w+)\.")
rows = common.rows(p, p.meta_train.task, "val")
ctxs = list(dict.fromkeys(tuple(r["context"]) for r in rows))[:32]
keep = set(ctxs)
cat = collections.defaultdict(collections.Counter)
for r in rows:
    if tuple(r["context"]) not in keep:
        continue
    moves = MOVE.findall(" ".join(r["context"]))
    person = re.fullmatch(r"Where is (\w+)\?", r["question"]).group(1)
    own = [room for who, room in moves if who == person]
    pred = ans(r)[0]
    k = f"asked person moved {min(len(own), 3)}x"
    c = cat[k]
    c["n"] += 1
    if exact_match(pred, r["answer"]):
        c["right"] += 1
    elif pred in own:
        c["own earlier room"] += 1
    elif pred in {room for _, room in moves}:
        c["another person's room"] += 1
    else:
        c["outside the story"] += 1
for k in sorted(cat):
    print(k, dict(cat[k]))
