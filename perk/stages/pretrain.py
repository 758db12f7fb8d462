"""Stage `pretrain`: LM-pretrain the tiny base (a named model is used as it is)."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common


def checkpoint_dir(p: Params) -> Path:
    """Beside out_dir, not in it: DVC tracks out_dir whole, and an output cannot hold another."""
    return Path(f"{p.pretrain.out_dir}-checkpoints")


def pretrain(p: Params, progress: bool = True) -> Path:
    """LM-pretrain the tiny base on haystack text, with the weighting net and exposure text;
    writes base.safetensors (+ weight_net.safetensors) and info.json; resumes after a kill."""
    import torch

    from .. import tracking
    from ..artifacts import save_modules
    from ..meta.exposure import Exposure
    from ..meta.recall_text import RecallText
    from ..meta.trainer import make_episodes
    from ..model import TokenWeightNet, load_model
    from ..pretraining import pretrain_base

    out, pc = Path(p.pretrain.out_dir), p.pretrain
    out.mkdir(parents=True, exist_ok=True)
    if p.model.frozen_base or pc.steps == 0:  # a named or shape-only model is used as it is
        common.base_path(p).unlink(missing_ok=True)
        common.net_path(p).unlink(missing_ok=True)
        base = f"shape:{p.model.shape}" if p.model.shape else p.model.name
        return common.write_json(out / "info.json", {"base": base, "pretrained_here": False})
    torch.manual_seed(p.seed)
    tok = common.tokenizer(p)
    eps = make_episodes(common.rows(p, p.meta_train.task, "train"), tok, p.meta_train.support_span)
    base = load_model(p.model, tok)
    net = TokenWeightNet(base.config.hidden_size) if pc.lr_weight_net > 0 else None
    expo = Exposure(tok, pc.exposure_keys, seed=p.seed, family=p.meta_train.task.split("/")[0],
                    babilong_prefix=p.synth.tasks.babilong.answer_prefix) if pc.exposure else None
    recall = RecallText(tok, p.seed, pc.recall_batch, pc.recall_length, pc.recall_min_length, pc.recall_ramp_steps,
                        pc.recall_facts, pc.recall_answer_weight, pc.recall_hold_steps) if pc.recall else None
    mt = p.meta_train
    fp = common.fingerprint(p, "seed", "model", "pretrain", "synth", files=(common.tokenizer_file(p),),
                            extra={"task": mt.task, "support_span": mt.support_span, "pos_weight": mt.aux_pos_weight})
    pretrain_base(base, eps, pc, p.seed, checkpoint_dir(p), fp, tracking.log_metrics, progress, weight_net=net,
                  pos_weight=mt.aux_pos_weight, exposure=expo, recall=recall)
    save_modules(common.base_path(p), {"base": base})
    common.net_path(p).unlink(missing_ok=True)
    if net is not None:
        save_modules(common.net_path(p), {"weight_net": net})
    return common.write_json(out / "info.json", {"base": "tiny", "pretrained_here": True, "steps": pc.steps,
                                                 "weight_net_pretrained": net is not None})


STAGE = Stage("pretrain", pretrain, family=lambda p: p.meta_train.task.split("/")[0])
