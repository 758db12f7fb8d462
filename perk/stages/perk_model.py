"""Loader of the meta-trained PERK system that evaluate and capacity read (kept out of models.py so
the baseline stage's code, and its DVC deps, stay free of the inner loop)."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import common, models


def load_perk(p: Params, tok, artifacts: str | Path | None = None):
    """Base + meta-learned LoRA init, step sizes and weighting net, from meta_train.out_dir."""
    from ..bundle import PerkBundle

    bundle = PerkBundle(p, tok, base=models.load_base(p, tok))
    bundle.load(artifacts or common.perk_path(p))
    return bundle
