"""babilong/qa1 validation answers of a finished family run by story shape (run in its snapshot dir
/tmp/perk_runs/NAME with the run's overrides): right, or wrong but another room of the same story."""
import re, sys, collections, torch
from perk.config import load_params
from perk.stages import common
from perk.stages.evaluate import _load_perk
from perk.evaluate import perk_answerer
from perk.scoring import exact_match
torch.set_num_threads(1)
p = load_params("params.yaml", sys.argv[1:])
tok = common.tokenizer(p)
ans = perk_answerer(_load_perk(p, tok).eval(), tok, 8, torch.device("cpu"), micro_batch=16)
MOVE = re.compile(r"(\w+) (?:moved|went|journeyed|travelled) to the (\w+)\.")
cat = collections.defaultdict(lambda: [0, 0, 0])
for r in common.rows(p, p.meta_train.task, "val")[:64]:
    moves = MOVE.findall(" ".join(r["context"]))
    people = {a for a, _ in moves}
    k = "one person moved twice" if len(people) == 1 else "two people, one move each"
    pred = ans(r)[0]
    c = cat[k]; c[0] += 1; c[1] += exact_match(pred, r["answer"])
    c[2] += (not exact_match(pred, r["answer"])) and pred in {b for _, b in moves}
for k, (n, em, other) in cat.items():
    print(f"{k}: {n} questions, EM {em:.0f}/{n}, wrong but another room of the story {other}/{n}")
