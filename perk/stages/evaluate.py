"""Stage `evaluate`: PERK and the baseline over task x length x depth, shardable by length."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Params
from ..data.imports.tasks import eval_lengths, train_length
from . import Shards, Stage, common, models, perk_model

ENCODE_CACHE_BYTES = 1 << 29  # 512 MiB of fast weights kept for reuse (a large model keeps fewer)


def _answerers(p: Params, tok, test_rows: list[dict]) -> dict:
    from ..controls import method_name, wrong_context_rows
    from ..evaluate import Encodes, init_answerer, perk_answerer, prompt_answerer

    cfg, dev, out = p.evaluate, common.device(), {}
    if "perk" in cfg.methods:
        bundle = perk_model.load_perk(p, tok).to(dev).eval()
        # the wrong-context control reuses the donor's encode (PERK's own answers ran it) while
        # the kept encodes fit in ENCODE_CACHE_BYTES: all 200 of the tiny default (~0.4 MB each)
        encodes = Encodes(bundle, tok, dev, cfg.micro_batch, max_bytes=ENCODE_CACHE_BYTES, steps=cfg.inner_steps)
        out["perk"] = perk_answerer(bundle, tok, cfg.max_new_tokens, dev, encodes=encodes)
        if "no_inner" in cfg.controls:
            out[method_name("no_inner")] = init_answerer(bundle, tok, cfg.max_new_tokens, dev)
        if "wrong_context" in cfg.controls:
            donors = wrong_context_rows(test_rows)
            out[method_name("wrong_context")] = perk_answerer(bundle, tok, cfg.max_new_tokens, dev,
                                                              context_of=lambda r: donors.get(r["id"]), encodes=encodes)
    if "baseline" in cfg.methods:
        model = models.load_baseline(p, tok).to(dev).eval()
        max_pos = getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
        out["baseline"] = prompt_answerer(model, tok, max_pos, cfg.max_new_tokens, dev)
    return out


def _no_inner_expectation(summary: dict, answerers: dict, tasks: list[str]) -> None:
    """no_inner's exact expected EM over every test key, next to its sampled EM per length: the
    figure that decides whether the control is at chance (perk/controls.py)."""
    from ..controls import method_name, no_inner_expectation

    name = method_name("no_inner")
    for task in tasks if name in answerers else []:
        found = no_inner_expectation(answerers[name], task)
        if found is not None and task in summary.get(name, {}):
            summary[name][task]["expected"] = found


def _cell_dir(p: Params) -> Path:
    """Cached cells are keyed by the artifacts and params that produced them, so stale ones never
    count; only_lengths is left out (the shards of one grid share its cache)."""
    whole = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={"only_lengths": None})})
    fp = common.fingerprint(whole, "evaluate", "inner", "model", "lora", "synth",
                            files=(common.perk_path(p), common.baseline_path(p)))
    return Path(p.evaluate.out_dir) / "cells" / fp


def evaluate(p: Params, progress: bool = True) -> Path:
    """Evaluate every (method, task, length, depth) cell not cached yet; metrics.json, predictions, plots."""
    from .. import eval_report, evaluate_bench, tracking
    from ..evaluate import run_cells, summarize

    cfg, out = p.evaluate, Path(p.evaluate.out_dir)
    tok = common.tokenizer(p)
    rows = {t: [r for r in common.rows(p, t, "test") if not cfg.only_lengths or r["target_tokens"] in cfg.only_lengths]
            for t in cfg.tasks}
    answerers = _answerers(p, tok, [r for rs in rows.values() for r in rs])
    tracking.set_tags({"evaluates.perk_run": common.run_id(p.meta_train.out_dir),
                       "evaluates.baseline_run": common.run_id(p.baseline.out_dir),
                       "baseline.long_context": "out_of_range beyond max_position_embeddings (no truncation)"})
    cells = _cell_dir(p)
    if not cfg.only_lengths:  # a shard must not delete what a sibling shard is writing
        for old in (out / "cells").glob("*"):
            if old != cells:
                shutil.rmtree(old, ignore_errors=True)
    preds = []
    for task in cfg.tasks:
        preds += run_cells(answerers, task, rows[task], cfg.per_cell, cells, progress)
    summary = summarize(preds)
    _no_inner_expectation(summary, answerers, cfg.tasks)
    trained = {t: train_length(p, t) for t in cfg.tasks}
    _, curve, figs = eval_report.write(out, preds, summary, trained)
    evaluate_bench.report(out, preds, rows, tracking.log_metrics)  # imported and needle tasks: the benchmark's own metric
    for point in curve:  # EM per method, task, length
        tracking.log_metrics({f"{point['method']}/{point['task'].replace('/', '_')}/em": point["acc"]}, point["length"])
    for f in figs:
        tracking.log_artifact(f, "plots")
    tracking.log_artifact(out / "metrics.json")
    tracking.log_artifact(out / "benchmark.json")
    tracking.log_artifact(out / "predictions.parquet")
    return out / "metrics.json"


def shards(p: Params) -> list[list[str]]:
    """One shard per evaluation length (its overrides); the whole call then merges them."""
    lengths = sorted({L for t in p.evaluate.tasks for L in eval_lengths(p, t)})
    return [[f"evaluate.only_lengths=[{L}]"] for L in lengths]


STAGE = Stage("evaluate", evaluate, family=lambda p: p.evaluate.tasks[0].split("/")[0],
              shards=Shards(split=shards, merge=evaluate))
