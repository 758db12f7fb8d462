"""Validation EM (greedy answers, the test's scoring) of a finished run's PERK and baseline on any
tasks: the figure settings are selected by (test sets are for the final tables only).
Run in the run's project dir, with that run's overrides and optionally --cell NAME:
   PYTHONPATH=$PWD python experiments/val_em.py [--cell NAME] [--tasks a/b,c/d] [--n 64] [--first] [--dump] [key=value ...]
A task with a benchmark metric also gets it (RULER's string_match_all for imported RULER and for needle,
order-free for list answers; BABILong's label check).
--dump prints every answer (right?, answer, prediction, context tokens, depths), for reading the misses.
--split picks another split (e.g. a held-out validation set synthesized at another length);
evaluate.inner_steps=N encodes with N inner steps (the test-time knob)."""
import argparse
import json
import time

import torch

from perk.benchmark_metrics import score_prediction
from perk.config import load_params
from perk.evaluate_bench import with_benchmark_metric
from perk.evaluate import Encodes, perk_answerer, prompt_answerer
from perk.scoring import exact_match, wilson_interval
from perk.stages import common, models, perk_model

ap = argparse.ArgumentParser()
ap.add_argument("--cell")
ap.add_argument("--tasks", help="comma-separated (default: the run's meta_train.task)")
ap.add_argument("--n", type=int, default=64, help="validation questions per task")
ap.add_argument("--methods", default="perk,baseline")
ap.add_argument("--first", action="store_true", help="only each context's own question (no ask_* siblings): "
                "what the test asks, so runs that asked more questions in training compare on one footing")
ap.add_argument("--dump", action="store_true", help="print every answer, one line per question")
ap.add_argument("--split", default="val")
ap.add_argument("overrides", nargs="*")
a = ap.parse_args()
p = load_params("params.yaml", a.overrides, cell=a.cell)
tok = common.tokenizer(p)
answer = {}
if "perk" in a.methods:
    bundle = perk_model.load_perk(p, tok).eval()
    encodes = Encodes(bundle, tok, torch.device("cpu"), p.evaluate.micro_batch, steps=p.evaluate.inner_steps)
    answer["perk"] = perk_answerer(bundle, tok, p.evaluate.max_new_tokens, torch.device("cpu"), encodes=encodes)
if "baseline" in a.methods:
    m = models.load_baseline(p, tok).eval()
    answer["baseline"] = prompt_answerer(m, tok, m.config.max_position_embeddings, p.evaluate.max_new_tokens,
                                         torch.device("cpu"))
out = {}
for task in (a.tasks.split(",") if a.tasks else [p.meta_train.task]):
    rows = [r for r in common.rows(p, task, a.split) if not (a.first and "/ask" in r["id"])][:a.n]
    for method, ans in answer.items():
        t0 = time.time()
        preds = [ans(r)[0] for r in rows]
        k = sum(exact_match(x, r["answer"]) for x, r in zip(preds, rows))
        if a.dump:
            for x, r in zip(preds, rows):
                print(int(exact_match(x, r["answer"])), repr(r["answer"]), repr(x), r.get("context_tokens"),
                      r.get("depths"), flush=True)
        lo, hi = wilson_interval(k, len(rows))
        out[f"{task} {method}"] = {"em": k / len(rows), "n": len(rows), "ci": [round(lo, 3), round(hi, 3)],
                                   "examples": [(x, r["answer"]) for x, r in zip(preds[:4], rows[:4])]}
        print(f"{task:22s} {method:8s} val EM {k:.0f}/{len(rows)} = {k / len(rows):.3f} [{lo:.2f}, {hi:.2f}] "
              f"({time.time() - t0:.0f} s) e.g. {out[f'{task} {method}']['examples'][:2]}", flush=True)
        scored = [with_benchmark_metric(r) for r in rows]  # the benchmark's own metric (RULER, BABILong) beside EM
        if scored and scored[0].get("metric"):
            bench = sum(score_prediction(r, x) for x, r in zip(preds, scored)) / len(rows)
            out[f"{task} {method}"][scored[0]["metric"]] = bench
            print(f"{task:22s} {method:8s} val {scored[0]['metric']} {bench:.3f}")
print(json.dumps(out))
