"""PERK learns on a short real run: the stages synth -> pretrain -> meta-train on the default tiny
model (tests/short_params.yaml), then PERK's validation EM is above chance and above the
no-encode control by more than their 95% intervals. The micro profile only checks plumbing; this
is the check that fails when a change breaks learning (a lost gradient, a wrong span, an inner
loop that writes nothing)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from perk import stages
from perk.config import load_params
from perk.scoring import wilson_interval as wilson

SHORT = Path(__file__).parent / "short_params.yaml"


def test_perk_learns_needle_recall_above_chance_and_no_encode(tmp_path, mlflow_store, tiny_tokenizer_dir):
    torch.set_num_threads(1)  # the figure below is deterministic at one thread
    shutil.copytree(tiny_tokenizer_dir, tmp_path / "tokenizer")
    p = load_params(SHORT, [f"{s}.out_dir={tmp_path}/{s}" for s in ("tokenizer", "synth", "pretrain", "meta_train")])
    for name in ("synth", "pretrain", "meta-train"):
        stages.call(name, p, progress=False)
    m = json.loads((tmp_path / "meta_train" / "metrics.json").read_text())
    n = p.meta_train.eval_examples * p.synth.tasks.needle.num_keys  # validation questions asked
    perk_lo, _ = wilson(round(m["val_em"] * n), n)
    _, none_hi = wilson(round(m["val_em_no_inner"] * n), n)
    assert perk_lo > 1 / 230, f"PERK val EM {m['val_em']:.3f} of {n} is not above chance (1/230)"
    assert perk_lo > none_hi, (f"PERK val EM {m['val_em']:.3f} is not above the no-encode control "
                               f"{m['val_em_no_inner']:.3f} ({n} questions)")
