"""Stage `capacity`: recall vs facts per context at one length, PERK per LoRA rank and the baseline."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common, models, perk_model


def rank_params(p: Params, rank: int) -> Params:
    """The params of PERK at LoRA `rank`: the default meta-train model, or an extra rank meta-trained
    here (same base, data and everything else; capacity.rank_steps outer steps, and lora.alpha
    scaled so its first inner update is as large as the default rank's, unless rank_alpha: same).
    Why scale: the update a LoRA of scale alpha / r makes from its init grows like sqrt(r), so at
    a fixed alpha rank 64 writes half as much per inner step as rank 16, which measures the
    learning rate, not the capacity."""
    if rank == p.lora.rank:
        return p
    cfg = p.capacity
    # rsLoRA (scale alpha / sqrt(r)) is matched already
    alpha = p.lora.alpha * (rank / p.lora.rank) ** 0.5 if cfg.rank_alpha == "matched" and not p.lora.rslora else p.lora.alpha
    return p.model_copy(update={
        "lora": p.lora.model_copy(update={"rank": rank, "alpha": alpha}),
        "meta_train": p.meta_train.model_copy(update={"steps": cfg.rank_steps or p.meta_train.steps,
                                                      "out_dir": f"{cfg.out_dir}/ranks/perk_r{rank}"})})


def _train_rank(q: Params, progress: bool) -> None:
    """Meta-train one extra rank unless its artifacts were made from these very inputs."""
    from ..guarded import read_json
    from .meta_train import fingerprint, meta_train

    stamp = Path(q.meta_train.out_dir) / "trained.json"
    fp = fingerprint(q)  # the same inputs meta_train's own resume checks
    if common.perk_path(q).exists() and stamp.exists() and read_json(stamp).get("fingerprint") == fp:
        return
    meta_train(q, progress)
    common.write_json(stamp, {"fingerprint": fp, "steps": q.meta_train.steps, "rank": q.lora.rank})


def _answerers(p: Params, tok, ranks: dict[int, Params]) -> dict:
    from ..evaluate import perk_answerer, prompt_answerer

    ev, dev, out = p.evaluate, common.device(), {}
    for rank, q in ranks.items():
        bundle = perk_model.load_perk(q, tok).to(dev).eval()
        out[f"perk_r{rank}"] = perk_answerer(bundle, tok, ev.max_new_tokens, dev, micro_batch=ev.micro_batch)
    if "baseline" in p.capacity.methods:
        model = models.load_baseline(p, tok).to(dev).eval()
        max_pos = getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
        out["baseline"] = prompt_answerer(model, tok, max_pos, ev.max_new_tokens, dev)
    return out


def capacity(p: Params, progress: bool = True) -> Path:
    """Meta-train the extra ranks, answer every key of every capacity context; capacity.json/.csv,
    predictions.parquet and the plot in capacity.out_dir."""
    from .. import tracking
    from ..capacity import contexts, write
    from ..evaluate import run_cells

    cfg, out = p.capacity, Path(p.capacity.out_dir)
    ranks = {r: rank_params(p, r) for r in dict.fromkeys([p.lora.rank, *cfg.ranks])} if "perk" in cfg.methods else {}
    for q in ranks.values():
        if q is not p:
            _train_rank(q, progress)
    # ranks/ is a DVC out even with no extra rank (the default): its index says which were trained
    common.write_json(out / "ranks" / "index.json", {"extra_ranks": [r for r in ranks if r != p.lora.rank]})
    tok = common.tokenizer(p)
    rows, answerers = contexts(p, tok), _answerers(p, tok, ranks)
    cells = out / "cells" / common.fingerprint(p, "capacity", "evaluate", "inner", "model", "lora", "synth",
                                               files=tuple(common.perk_path(q) for q in ranks.values())
                                               + (common.baseline_path(p),))
    preds = []
    for f in cfg.facts:
        point = [r for r in rows if r["facts"] == f]
        preds += [dict(x, facts=f) for x in run_cells(answerers, cfg.task, point, len(point), cells / f"facts{f}", progress)]
    report, files = write(out, preds, cfg.length)
    for r in (r for r in report["points"] if r["em"] is not None):
        tracking.log_metrics({f"{r['method']}/em": r["em"], f"{r['method']}/em_lo": r["em_lo"]}, r["facts"])
    tracking.set_tags({f"capacity.{m}.below_90_at": str(f) for m, f in report["falls_below"].items()})
    for f in files:
        tracking.log_artifact(f, "plots" if f.suffix == ".png" else None)
    print("capacity: facts at which EM falls below 90%: " + ", ".join(f"{m} {f}" for m, f in report["falls_below"].items()))
    return out / "capacity.json"


STAGE = Stage("capacity", capacity, family=lambda p: p.capacity.task.split("/")[0])
