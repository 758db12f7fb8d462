"""Loaders of the base and baseline models that several stages read (the PERK system: evaluate)."""
from __future__ import annotations

from ..config import Params
from . import common


def load_base(p: Params, tok):
    """The base model: built/loaded from params, with the pretrain stage's weights when it made any."""
    from ..artifacts import load_modules
    from ..model import load_model

    model = load_model(p.model, tok)
    if not p.model.frozen_base and common.base_path(p).exists():
        load_modules(common.base_path(p), {"base": model})
    return model


def load_baseline(p: Params, tok):
    from ..artifacts import load_modules

    model = load_base(p, tok)
    load_modules(common.baseline_path(p), {"base": model})
    return model
