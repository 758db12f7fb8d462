"""One function per pipeline stage, `stage(params) -> outputs`.

The CLI, dvc.yaml and the Prefect flow all call these and nothing else, so the three ways of
running the pipeline cannot drift apart. Each stage writes its outputs atomically.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .config import Params


def tokenizer(p: Params) -> Path:
    """Train the tiny profile's tokenizer, or copy a named model's tokenizer, into tokenizer.out_dir."""
    from .tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    if p.model.name == "tiny":
        from .data.lexicon import all_words
        from .data.synth import sample_corpus

        texts = sample_corpus(p.tokenizer.corpus_texts, seed=p.synth.seed)
        train_tokenizer(texts, p.tokenizer.vocab_size, p.tokenizer.out_dir, must_include=all_words())
    else:
        save_tokenizer(load_tokenizer(p.model.name), p.tokenizer.out_dir)
    return Path(p.tokenizer.out_dir)


def synth(p: Params, progress: bool = True) -> dict[str, Path]:
    """Synthesize every enabled task family into {synth.out_dir}/{task}/{split}.parquet."""
    from .data.synth import synthesize
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(p.tokenizer.out_dir)
    return synthesize(p.synth, tok, p.synth.out_dir, progress=progress)


# ---------------------------------------------------------------- shared helpers

def device():
    """cuda when there is a GPU, else cpu."""
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _rows(p: Params, task: str, split: str) -> list[dict]:
    """Rows of `family/subtask` from the synth output; fails clearly on a file of another task."""
    from .data.io import DataError, read_rows

    family, _, sub = task.partition("/")
    path = Path(p.synth.out_dir) / family / f"{split}.parquet"
    rows = [r for r in read_rows(path, task=family) if r["subtask"] == sub]
    if not rows:
        raise DataError(f"{path}: no {sub!r} rows (is {sub!r} in synth.tasks.{family}.subtasks?)")
    return rows


def _tokenizer(p: Params):
    from .tokenizer import load_tokenizer
    return load_tokenizer(p.tokenizer.out_dir)


def _base_path(p: Params) -> Path:
    return Path(p.pretrain.out_dir) / "base.safetensors"


def _net_path(p: Params) -> Path:
    """The weighting net pretrained with the base (when pretrain.lr_weight_net > 0)."""
    return Path(p.pretrain.out_dir) / "weight_net.safetensors"


def load_base(p: Params, tok):
    """The base model: built/loaded from params, with the pretrain stage's weights when it made any."""
    from .artifacts import load_modules
    from .model import load_model

    model = load_model(p.model, tok)
    if p.model.name == "tiny" and _base_path(p).exists():
        load_modules(_base_path(p), {"base": model})
    return model


def load_perk(p: Params, tok, artifacts: str | Path | None = None):
    from .bundle import PerkBundle

    bundle = PerkBundle(p, tok, base=load_base(p, tok))
    bundle.load(artifacts or Path(p.meta_train.out_dir) / "perk.safetensors")
    return bundle


def fingerprint(p: Params, *sections: str, files: tuple[Path, ...] = ()) -> str:
    """Hash of the given params sections and input files: what a checkpoint or cached cell was made from."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps({s: p.model_dump(mode="json")[s] for s in sections}, sort_keys=True).encode())
    for f in files:
        h.update(Path(f).read_bytes() if Path(f).exists() else b"-")
    return h.hexdigest()[:16]


def _write_json(path: Path, obj) -> Path:
    import json

    from .data.io import atomic_write_bytes
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))
    return path


# ---------------------------------------------------------------- training stages

def pretrain(p: Params, progress: bool = True) -> Path:
    """LM-pretrain the tiny base on haystack text (PERK assumes a pretrained base; the baseline
    starts from the same one). A named model is used as it is."""
    import torch

    from . import tracking
    from .artifacts import save_modules
    from .meta.exposure import Exposure
    from .meta.recall_text import RecallText
    from .meta.trainer import make_episodes, pretrain_base
    from .model import TokenWeightNet, load_model

    out = Path(p.pretrain.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if p.model.name != "tiny" or p.pretrain.steps == 0:
        _base_path(p).unlink(missing_ok=True)
        _net_path(p).unlink(missing_ok=True)
        return _write_json(out / "info.json", {"base": p.model.name, "pretrained_here": False})
    torch.manual_seed(p.seed)
    tok = _tokenizer(p)
    pc = p.pretrain
    eps = make_episodes(_rows(p, p.meta_train.task, "train"), tok, p.meta_train.support_span)
    base = load_model(p.model, tok)
    net = TokenWeightNet(base.config.hidden_size) if pc.lr_weight_net > 0 else None
    expo = Exposure(tok, pc.exposure_keys, seed=p.seed) if pc.exposure else None
    recall = RecallText(tok, p.seed, pc.recall_batch, pc.recall_length, pc.recall_min_length, pc.recall_ramp_steps,
                        pc.recall_facts, pc.recall_answer_weight, pc.recall_hold_steps) if pc.recall else None
    with tracking.run("pretrain", p, task=p.meta_train.task.split("/")[0]):
        pretrain_base(base, eps, pc.steps, pc.lr, p.seed, tracking.log_metrics, progress, weight_net=net,
                      lr_weight_net=pc.lr_weight_net, pos_weight=p.meta_train.aux_pos_weight, exposure=expo,
                      recall=recall)
    save_modules(_base_path(p), {"base": base})
    _net_path(p).unlink(missing_ok=True)
    if net is not None:
        save_modules(_net_path(p), {"weight_net": net})
    return _write_json(out / "info.json", {"base": "tiny", "pretrained_here": True, "steps": pc.steps,
                                           "weight_net_pretrained": net is not None})


def meta_train(p: Params, progress: bool = True) -> Path:
    """Meta-train PERK; writes {meta_train.out_dir}/perk.safetensors and metrics.json."""
    import torch

    from . import tracking
    from .artifacts import load_modules
    from .bundle import PerkBundle
    from .meta.exposure import Exposure
    from .meta.trainer import evaluate_em, make_episodes
    from .meta.trainer import meta_train as train

    cfg = p.meta_train
    out = Path(cfg.out_dir)
    torch.manual_seed(p.seed)
    tok = _tokenizer(p)
    span = cfg.support_span
    train_eps = make_episodes(_rows(p, cfg.task, "train"), tok, span, cfg.max_questions)
    val_eps = make_episodes(_rows(p, cfg.task, "val"), tok, span)[:cfg.eval_examples]
    from . import distributed
    distributed.init()  # under torchrun: join the group; only rank 0 tracks and writes (perk/distributed.py)
    bundle = PerkBundle(p, tok, base=load_base(p, tok))
    if p.model.name == "tiny" and _net_path(p).exists():
        load_modules(_net_path(p), {"weight_net": bundle.weight_net})
    if p.model.name == "tiny" and cfg.freeze_embeddings:
        # learned tied embeddings: freezes the output head too; a frozen random code is frozen already
        bundle.lm.get_input_embeddings().weight.requires_grad_(False)
    bundle = bundle.to(distributed.device())
    expo = Exposure(tok, "train", seed=p.seed + 1) if cfg.exposure_weight > 0 else None
    fp = fingerprint(p, "seed", "model", "lora", "inner", "meta_train", "synth",
                     files=(_base_path(p), _net_path(p), Path(p.tokenizer.out_dir) / "tokenizer.json"))
    if not distributed.is_main():
        train(bundle, cfg, train_eps, val_eps, p.seed, progress=False, ckpt_dir=out / "checkpoints", fingerprint=fp,
              exposure=expo)
        distributed.finish()
        return out / "perk.safetensors"
    with tracking.run("meta_train", p, task=cfg.task.split("/")[0], run_name=f"perk-{cfg.task}") as run:
        last = train(bundle, cfg, train_eps, val_eps, p.seed, tracking.log_metrics, progress,
                     ckpt_dir=out / "checkpoints", fingerprint=fp, exposure=expo)
        final = {"val_em": evaluate_em(bundle, val_eps),
                 "val_em_no_inner": evaluate_em(bundle, val_eps, with_inner=False),
                 "train_loss": last.get("loss"), "steps": cfg.steps}
        tracking.log_metrics({k: v for k, v in final.items() if isinstance(v, float)}, cfg.steps)
        path = bundle.save(out / "perk.safetensors", metadata={"task": cfg.task, "val_em": final["val_em"]})
        _write_json(out / "metrics.json", final)
        _write_json(out / "run.json", {"mlflow_run_id": run.info.run_id})
        tracking.log_artifact(path, "perk")
        tracking.log_artifacts(p.tokenizer.out_dir, "tokenizer")
    print(f"meta_train: val EM {final['val_em']:.3f} (no inner steps: {final['val_em_no_inner']:.3f})")
    distributed.finish()
    return path


def baseline(p: Params, progress: bool = True) -> Path:
    """Prompt-based long-context fine-tuning (FT-ICR) from the same base, same data."""
    import torch

    from . import tracking
    from .artifacts import save_modules
    from .baseline import evaluate_em, train

    cfg = p.baseline
    out = Path(cfg.out_dir)
    torch.manual_seed(p.seed)
    tok = _tokenizer(p)
    model = load_base(p, tok)
    train_rows, val_rows = _rows(p, cfg.task, "train"), _rows(p, cfg.task, "val")[:cfg.eval_examples]
    dev = device()
    with tracking.run("baseline", p, task=cfg.task.split("/")[0], run_name=f"baseline-{cfg.task}") as run:
        fp = fingerprint(p, "seed", "model", "baseline", "synth",
                         files=(_base_path(p), Path(p.tokenizer.out_dir) / "tokenizer.json"))
        train(cfg, model, tok, train_rows, val_rows, p.seed, tracking.log_metrics, progress, dev, fp)
        final = {"val_em": evaluate_em(model, tok, val_rows, dev), "steps": cfg.steps}
        tracking.log_metrics({"val_em": final["val_em"]}, cfg.steps)
        path = save_modules(out / "model.safetensors", {"base": model.cpu()}, metadata={"task": cfg.task})
        _write_json(out / "metrics.json", final)
        _write_json(out / "run.json", {"mlflow_run_id": run.info.run_id})
        tracking.log_artifact(path, "baseline")
    print(f"baseline: val EM {final['val_em']:.3f}")
    return path



# ---------------------------------------------------------------- evaluation and profiling

def _run_id(out_dir: str) -> str | None:
    import json
    f = Path(out_dir) / "run.json"
    return json.loads(f.read_text()).get("mlflow_run_id") if f.exists() else None


def evaluate(p: Params, progress: bool = True) -> Path:
    """PERK vs baseline over task x length x depth; per-cell Parquet, metrics.json, plots."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import plots, tracking
    from .artifacts import load_modules
    from .data.io import atomic_write_bytes
    from .evaluate import PRED_SCHEMA, perk_answerer, prompt_answerer, run_cells, summarize

    cfg = p.evaluate
    out = Path(cfg.out_dir)
    tok = _tokenizer(p)
    dev = device()
    answerers = {}
    if "perk" in cfg.methods:
        bundle = load_perk(p, tok).to(dev).eval()
        inner = p.inner.model_copy(update={"micro_batch": cfg.micro_batch})
        answerers["perk"] = perk_answerer(bundle.lm, tok, bundle.step_sizes, bundle.weight_net, inner,
                                          cfg.max_new_tokens, dev)
    if "baseline" in cfg.methods:
        model = load_base(p, tok)
        load_modules(Path(p.baseline.out_dir) / "model.safetensors", {"base": model})
        model.to(dev).eval()
        max_pos = getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
        answerers["baseline"] = prompt_answerer(model, tok, max_pos, cfg.max_new_tokens, dev)
    tags = {"evaluates.perk_run": _run_id(p.meta_train.out_dir), "evaluates.baseline_run": _run_id(p.baseline.out_dir),
            "baseline.long_context": "out_of_range beyond max_position_embeddings (no truncation, no interpolation)"}
    family = cfg.tasks[0].split("/")[0]
    with tracking.run("evaluate", p, task=family, run_name="evaluate", tags={k: v for k, v in tags.items() if v}):
        # cached cells are keyed by the artifacts and params that produced them: stale ones never count
        # (only_lengths is left out: shards of one grid share its cache)
        shardless = p.model_copy(update={"evaluate": cfg.model_copy(update={"only_lengths": None})})
        fp = fingerprint(shardless, "evaluate", "inner", "model", "lora", "synth", files=(
            Path(p.meta_train.out_dir) / "perk.safetensors", Path(p.baseline.out_dir) / "model.safetensors"))
        cells = out / "cells" / fp
        if not cfg.only_lengths:  # a shard must not delete what a sibling shard is writing
            for old in (out / "cells").glob("*"):
                if old != cells:
                    shutil.rmtree(old, ignore_errors=True)
        preds = []
        for task in cfg.tasks:
            rows = [r for r in _rows(p, task, "test") if not cfg.only_lengths or r["target_tokens"] in cfg.only_lengths]
            preds += run_cells(answerers, task, rows, cfg.per_cell, cells, progress)
        summary = summarize(preds)
        table = pa.Table.from_pylist(preds, schema=PRED_SCHEMA)
        atomic_write_bytes(out / "predictions.parquet", lambda tmp: pq.write_table(table, tmp))
        metrics, curve = {}, []
        for method, tasks in summary.items():
            for task, t in tasks.items():
                key = task.replace("/", "_")
                m = metrics.setdefault(method, {}).setdefault(key, {})
                for L, cell in sorted(t["by_length"].items(), key=lambda kv: int(kv[0])):
                    m[f"em_{L}"] = cell["em"]
                    m[f"em_{L}_ci"] = [round(cell["em_lo"], 4), round(cell["em_hi"], 4)]
                    if cell["out_of_range"]:
                        m[f"out_of_range_{L}"] = cell["out_of_range"]
                    if cell["em"] is not None:
                        curve.append({"method": method, "task": task, "length": int(L), "acc": cell["em"],
                                      "lo": cell["em_lo"], "hi": cell["em_hi"]})
                        tracking.log_metrics({f"{method}/{key}/em": cell["em"]}, int(L))
                m["max_depth_spread"] = t["max_depth_spread"]
        _write_json(out / "metrics.json", metrics)
        _write_json(out / "summary.json", summary)

        def write_csv(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, ["method", "task", "length", "acc", "lo", "hi"])
                w.writeheader()
                w.writerows(curve)
        atomic_write_bytes(out / "accuracy.csv", write_csv)
        figs = []
        for task in cfg.tasks:
            spec = getattr(p.synth.tasks, task.split("/")[0])
            key = task.replace("/", "_")
            figs.append(plots.accuracy_vs_length([r for r in curve if r["task"] == task], out / "plots" / f"{key}_accuracy.png",
                                                 f"{task}: exact match vs context length", max(spec.train_lengths)))
            for method, tasks in summary.items():
                t = tasks.get(task)
                if not t:
                    continue
                lengths = sorted(int(L) for L in t["by_length"])
                depths = sorted({float(d) for c in t["by_length"].values() for d in c.get("by_depth", {})})
                grid = [[t["by_length"][str(L)].get("by_depth", {}).get(str(d), {}).get("em") for L in lengths]
                        for d in depths]
                figs.append(plots.heatmap(grid, depths, lengths, out / "plots" / f"{key}_{method}_heatmap.png",
                                          f"{method}: {task} exact match by length x depth"))
        for f in figs:
            tracking.log_artifact(f, "plots")
        tracking.log_artifact(out / "metrics.json")
        tracking.log_artifact(out / "predictions.parquet")
    return out / "metrics.json"


def _evaluate_shards(p: Params) -> list[list[str]]:
    """Fan-out hook for the Prefect flow: one shard per evaluation length (overrides per shard)."""
    lengths = sorted({L for t in p.evaluate.tasks for L in getattr(p.synth.tasks, t.split("/")[0]).eval_lengths})
    return [[f"evaluate.only_lengths=[{L}]"] for L in lengths]


evaluate.cells = _evaluate_shards  # the flow runs each shard as its own task,
evaluate.merge = evaluate           # then the full-grid call reuses every cached cell and summarizes


def profile(p: Params, progress: bool = True) -> Path:
    """Peak memory and latency vs context length (each point in its own process)."""
    import csv

    from tqdm.auto import tqdm

    from . import plots, tracking
    from .data.io import atomic_write_bytes
    from .profile import METHOD_PROMPT, growth_ratios, perk_method, run_point

    cfg = p.profile
    out = Path(cfg.out_dir)
    artifacts = Path(p.meta_train.out_dir) / "perk.safetensors"
    spec_task = getattr(p.synth.tasks, p.meta_train.task.split("/")[0])
    base = {"params": p.model_dump(mode="json"), "device": str(device()), "tokenizer": p.tokenizer.out_dir,
            "artifacts": str(artifacts) if artifacts.exists() else None, "chunk_tokens": spec_task.chunk_tokens,
            "new_tokens": cfg.new_tokens, "warmup": cfg.warmup, "repeats": cfg.repeats,
            "memory_limit_mb": cfg.memory_limit_mb}
    methods = [perk_method(m) for m in cfg.micro_batches] + ([METHOD_PROMPT] if cfg.prompt else [])
    trace_method = perk_method(cfg.micro_batches[len(cfg.micro_batches) // 2])
    jobs = [(m, L) for m in methods for L in cfg.lengths]
    points = []
    with tracking.run("profile", p, run_name=f"profile-{device().type}"):
        for m, L in tqdm(jobs, desc="profile", disable=not progress, dynamic_ncols=True):
            pt = run_point({**base, "method": m, "length": L,
                            "trace": m == trace_method and L == max(cfg.lengths)}, cfg.timeout_s)
            trace = pt.pop("trace", None)
            if trace:
                for i, (t, mib) in enumerate(trace):
                    tracking.log_metrics({f"memory_trace/{m}_L{L}_mib": mib}, i)
                tracking.log_artifact(plots.series(trace, out / "plots" / "memory_trace.png",
                                                   f"{m} encode+answer at {L} tokens: memory over time"), "plots")
            points.append(pt)
            if pt["status"] == "ok":
                tracking.log_metrics({f"{m}/peak_mib": pt["peak_mib"], f"{m}/seconds": pt["seconds"]}, L)
        fields = ["method", "length", "status", "peak_mib", "peak_mib_max", "seconds", "seconds_min",
                  "seconds_max", "memory_method", "error"]

        def write_csv(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(points)
        atomic_write_bytes(out / "points.csv", write_csv)
        mem, lat = growth_ratios(points, "peak_mib"), growth_ratios(points, "seconds")
        metrics = {"device": device().type, "lengths": [min(cfg.lengths), max(cfg.lengths)],
                   "memory_growth": mem, "latency_growth": lat,
                   "failed_points": {f"{q['method']}@{q['length']}": q["status"] for q in points if q["status"] != "ok"}}
        _write_json(out / "metrics.json", metrics)
        for f in (plots.scaling(points, "peak_mib", out / "plots" / "memory_vs_length.png",
                                "peak memory vs context length", "peak memory above model (MiB)"),
                  plots.scaling(points, "seconds", out / "plots" / "latency_vs_length.png",
                                "latency vs context length (encode/prefill + answer)", "seconds")):
            tracking.log_artifact(f, "plots")
        tracking.log_artifact(out / "points.csv")
        tracking.log_metrics({f"memory_growth/{k}": v for k, v in mem.items() if v is not None})
    return out / "metrics.json"


# Pipeline order; the Prefect flow and `perk run` walk this table. Later stages register here.
STAGES = {
    "tokenizer": tokenizer,
    "synth": synth,
    "pretrain": pretrain,
    "meta_train": meta_train,
    "baseline": baseline,
    "evaluate": evaluate,
    "profile": profile,
}
