"""Issue 15 step 6: tiny PERK meta-trained on RULER niah_single_2 (dev train file), string_match_all on test.

Imported tasks are not yet wired into perk/stages.py (_rows), so this patches stages._rows with
perk.data.imports.tasks.imported_rows for the run.

Usage: PYTHONPATH=. python experiments/imported_ruler.py STAGE [-P-style overrides...]
STAGE: tokenizer | import | pretrain | meta_train | baseline | evaluate; outputs under $PERK_EXP_DIR
(default /tmp/wt15_exp). The run measured in docs/imports.md, in order:
  tokenizer imports.tokenizer_texts=1000 / import / pretrain / meta_train meta_train.steps=400 /
  evaluate evaluate.methods=[perk] evaluate.per_cell=50 evaluate.max_new_tokens=12
"""
import json, os, sys, time
from pathlib import Path

os.environ.setdefault("PERK_ROOT", os.environ.get("PERK_EXP_DIR", "/tmp/wt15_exp"))
from perk import stages
from perk.config import load_params
from perk.data.imports import tasks as itasks

E = Path(os.environ.get("PERK_EXP_DIR", "/tmp/wt15_exp"))
_orig = stages._rows
def _rows(p, task, split):
    return itasks.imported_rows(p, task, split) if itasks.is_imported(task) else _orig(p, task, split)
stages._rows = _rows

stage = sys.argv[1]
over = [f"tokenizer.out_dir={E}/tokenizer", f"imports.out_dir={E}/imports", f"pretrain.out_dir={E}/pretrain",
        f"meta_train.out_dir={E}/meta_train", f"baseline.out_dir={E}/baseline", f"evaluate.out_dir={E}/eval",
        "meta_train.task=ruler/niah_single_2", "baseline.task=ruler/niah_single_2",
        "evaluate.tasks=[ruler/niah_single_2]"] + sys.argv[2:]
p = load_params(Path(__file__).resolve().parents[1] / "params.yaml", over)
t0 = time.perf_counter()
if stage == "tokenizer":
    from perk.data.lexicon import all_words
    from perk.data.synth import sample_corpus
    from perk.tokenizer import train_tokenizer
    texts = sample_corpus(p.tokenizer.corpus_texts, seed=p.synth.seed) + itasks.corpus_texts(p, p.imports.tokenizer_texts, p.seed)
    train_tokenizer(texts, p.tokenizer.vocab_size, p.tokenizer.out_dir, must_include=all_words())
elif stage == "import":
    from perk.stages.imports import import_benchmarks
    import_benchmarks(p, only=["ruler/niah_single_2"])
elif stage in ("pretrain", "meta_train", "baseline"):
    print(getattr(stages, stage)(p, progress=False))
elif stage == "evaluate":
    # evaluate's plots read synth specs (not wired for imports yet): run its cells + benchmark scoring directly
    import pyarrow as pa, pyarrow.parquet as pq
    from perk.evaluate import PRED_SCHEMA, perk_answerer, prompt_answerer, run_cells
    from perk.evaluate_bench import benchmark_scores, summarize_benchmark
    from perk.artifacts import load_modules
    cfg = p.evaluate
    tok = stages._tokenizer(p)
    answerers = {}
    if "perk" in cfg.methods:
        bundle = stages.load_perk(p, tok).eval()
        inner = p.inner.model_copy(update={"micro_batch": cfg.micro_batch})
        answerers["perk"] = perk_answerer(bundle.lm, tok, bundle.step_sizes, bundle.weight_net, inner, cfg.max_new_tokens)
    if "baseline" in cfg.methods:
        model = stages.load_base(p, tok)
        load_modules(Path(p.baseline.out_dir) / "model.safetensors", {"base": model})
        model.eval()
        answerers["baseline"] = prompt_answerer(model, tok, model.config.max_position_embeddings, cfg.max_new_tokens)
    rows = [r for r in itasks.imported_rows(p, cfg.tasks[0], "test") if not cfg.only_lengths or r["target_tokens"] in cfg.only_lengths]
    preds = run_cells(answerers, cfg.tasks[0], rows, cfg.per_cell, Path(cfg.out_dir) / "cells", progress=False)
    s = summarize_benchmark(benchmark_scores(preds, {r["id"]: r for r in rows}))
    em = {}
    for pr in preds:
        em.setdefault(pr["method"], {}).setdefault(pr["length"], []).append(pr["em"])
    out = {"benchmark": s, "em": {m: {L: round(100 * sum(v) / len(v), 2) for L, v in d.items()} for m, d in em.items()}}
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out_dir) / "metrics.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))
    for pr in preds[:8]:
        print(pr["method"], pr["length"], repr(pr["prediction"]), pr["answer"])
print(f"{stage}: {time.perf_counter() - t0:.1f}s")
