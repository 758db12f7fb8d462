"""Pretraining of the tiny base: the weighting net learns the supporting spans alongside the LM."""
from __future__ import annotations

import os

import torch

from perk.config import load_params

MICRO = os.path.join(os.path.dirname(__file__), "micro_params.yaml")


def test_weight_net_learns_supporting_spans_while_the_lm_pretrains(tmp_path, tiny_tokenizer):
    from perk.data.synth import synthesize
    from perk.meta.exposure import Exposure
    from perk.config import PretrainConfig
    from perk.meta.trainer import make_episodes, support_bce
    from perk.model import TokenWeightNet, load_model
    from perk.pretraining import pretrain_base
    from perk.stages.common import rows

    torch.manual_seed(0)
    torch.set_num_threads(1)
    p = load_params(MICRO, [f"synth.out_dir={tmp_path}/synth", "synth.tasks.needle.n_train=4"])
    synthesize(p.synth, tiny_tokenizer, p.synth.out_dir, progress=False)
    eps = make_episodes(rows(p, p.meta_train.task, "train"), tiny_tokenizer)
    base = load_model(p.model, tiny_tokenizer)
    net = TokenWeightNet(base.config.hidden_size)

    def scores():
        with torch.no_grad():
            bce = 0.0
            for ep in eps:
                out = base(input_ids=ep.chunks["input_ids"], output_hidden_states=True)
                bce += float(support_bce(net(out.hidden_states[-1][:, :-1])[1], ep.chunks, 10.0))
            return bce / len(eps)

    code = base.get_input_embeddings().weight.detach().clone()
    before = scores()
    logged = []
    cfg = PretrainConfig(steps=60, lr=3e-3, lr_weight_net=3e-3, checkpoint_every=60)
    pretrain_base(base, eps, cfg, 0, tmp_path / "ckpt", log_fn=lambda m, s: logged.append(m), progress=False,
                  weight_net=net, pos_weight=10.0, exposure=Exposure(tiny_tokenizer, "train"))
    after = scores()
    assert after < 0.5 * before, (before, after)
    assert {"loss", "net_bce", "exposure_loss", "grad_norm/model", "grad_norm/weight_net"} <= set(logged[-1])
    assert logged[-1]["loss"] < logged[0]["loss"]
    assert (tmp_path / "ckpt" / "step-0000060").is_dir()  # the shared loop's checkpoint
    assert torch.equal(code, base.get_input_embeddings().weight)  # the frozen input code never moves
