"""Stage `meta-train`: PERK's outer loop over episodes of one task."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common, models


def _bundle(p: Params, tok):
    """Base (+ its pretrained weighting net) with the LoRA memory, on this rank's device."""
    from .. import distributed
    from ..artifacts import load_modules
    from ..bundle import PerkBundle

    bundle = PerkBundle(p, tok, base=models.load_base(p, tok))
    if not p.model.frozen_base and common.net_path(p).exists():
        load_modules(common.net_path(p), {"weight_net": bundle.weight_net})
    if not p.model.frozen_base and p.meta_train.freeze_embeddings:
        # learned tied embeddings: freezes the output head too; a frozen random code is frozen already
        bundle.lm.get_input_embeddings().weight.requires_grad_(False)
    if p.meta_train.init_from:
        init = Path(p.meta_train.init_from)
        if not init.is_file():
            raise FileNotFoundError(f"meta_train.init_from: no such file {init} (expected the perk.safetensors "
                                    "an earlier meta-train wrote)")
        bundle.load(init)
    return bundle.to(distributed.device())


def fingerprint(p: Params) -> str:
    """What a meta-trained PERK is a function of (its checkpoints resume only on a match)."""
    return common.fingerprint(p, "seed", "model", "lora", "inner", "meta_train", "synth",
                              files=(common.base_path(p), common.net_path(p), common.tokenizer_file(p))
                              + ((Path(p.meta_train.init_from),) if p.meta_train.init_from else ()))


def meta_train(p: Params, progress: bool = True) -> Path:
    """Meta-train PERK; writes {meta_train.out_dir}/perk.safetensors, metrics.json and run.json."""
    import torch

    from .. import distributed, tracking
    from ..meta.exposure import Exposure
    from ..meta.trainer import evaluate_em, make_episodes, outer_loop

    cfg, out = p.meta_train, Path(p.meta_train.out_dir)
    torch.manual_seed(p.seed)
    tok = common.tokenizer(p)
    train_eps = make_episodes(common.rows(p, cfg.task, "train"), tok, cfg.support_span, cfg.max_questions,
                              cfg.spans_of, cfg.question_order, cfg.shuffle_index)
    # validation asks what training asks (max_questions), so selection sees the trained distribution;
    # its indices are 1..n as the test's are (shuffle_index is a training device)
    val_eps = make_episodes(common.rows(p, cfg.task, "val"), tok, cfg.support_span, cfg.max_questions,
                            order=cfg.question_order)[:cfg.eval_examples]
    distributed.init()  # under torchrun: join the group; only rank 0 tracks and writes (perk/distributed.py)
    bundle = _bundle(p, tok)
    expo = (Exposure(tok, "train", seed=p.seed + 1, family=cfg.task.split("/")[0],
                     babilong_prefix=p.synth.tasks.babilong.answer_prefix)  # the trained family's answer words
            if cfg.exposure_weight > 0 else None)
    fp = fingerprint(p)
    main = distributed.is_main()
    last = outer_loop(bundle, cfg, train_eps, val_eps, p.seed, tracking.log_metrics, progress and main,
                      ckpt_dir=out / "checkpoints", fingerprint=fp, exposure=expo)
    if main:
        final = {"val_em": evaluate_em(bundle, val_eps), "val_em_no_inner": evaluate_em(bundle, val_eps, with_inner=False),
                 "train_loss": last.get("loss"), "steps": cfg.steps}
        tracking.log_metrics({k: v for k, v in final.items() if isinstance(v, float)}, cfg.steps)
        bundle.save(common.perk_path(p), metadata={"task": cfg.task, "val_em": final["val_em"]})
        common.write_json(out / "metrics.json", final)
        common.write_json(out / "run.json", {"mlflow_run_id": tracking.active_run_id()})
        tracking.log_artifact(common.perk_path(p), "perk")
        tracking.log_artifacts(p.tokenizer.out_dir, "tokenizer")
        print(f"meta-train: val EM {final['val_em']:.3f} (no inner steps: {final['val_em_no_inner']:.3f})")
    distributed.finish()
    return common.perk_path(p)


STAGE = Stage("meta-train", meta_train, family=lambda p: p.meta_train.task.split("/")[0],
              run_name=lambda p: f"perk-{p.meta_train.task}")
