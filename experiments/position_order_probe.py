"""Does a position cell's PERK depend on where a document sits? Test rows of the given gold positions
(512 tokens, the first 50), answered as they are and with the context's chunk order reversed.

Chunks are encoded in one batch and do not attend to each other, so reversal changes nothing a
chunk sees but its "Document i:" prefix (perk/meta/inner.py chunk_batch): if accuracy moves with
the reversal, the model reads the document index. Run in a position run's clone, e.g.
  cd /tmp/pos3 && PYTHONPATH=. PERK_ROOT=. python /work/main/experiments/position_order_probe.py retrieval-last first last
"""
import sys

from perk.config import load_params
from perk.evaluate import perk_answerer
from perk.stages import common, perk_model

cell = sys.argv[1]
p = load_params("params.yaml", cell=cell)
tok = common.tokenizer(p)
bundle = perk_model.load_perk(p, tok).eval()
answer = perk_answerer(bundle, tok, p.evaluate.max_new_tokens, "cpu", micro_batch=p.evaluate.micro_batch)
for sub in sys.argv[2:]:
    rows = [r for r in common.rows(p, f"retrieval/{sub}", "test") if r["target_tokens"] == 512][:50]
    for order in ("as is", "reversed"):
        hits = 0
        for r in rows:
            pred, _ = answer(dict(r, context=list(r["context"])[::-1]) if order == "reversed" else r)
            hits += bool(pred) and pred.split()[:1] == [r["answer"]]
        print(f"{cell} tested at {sub}, chunks {order}: {hits}/{len(rows)}", flush=True)
