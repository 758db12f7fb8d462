"""Shape-only models: a published architecture (its config.json) built with random weights.

Memory and latency depend on a model's shape, not on its weights, so a model built from the
published Qwen2.5-0.5B configuration measures what the real one would, with no download. The
shapes ship in profiles/shapes/*.json (HF config.json format plus a "_source" note). The token
ids come from whatever tokenizer the pipeline uses: its ids must fit the shape's vocabulary, the
rows past it are simply never looked up (the tokenizer is "padded" to the model's vocab).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

# The project's own shapes; a path (anything ending in .json) may name any other config.json.
SHAPES_DIR = Path(__file__).resolve().parents[1] / "profiles" / "shapes"


class ShapeError(ValueError):
    """A shape file is missing or invalid; the message names the file."""


def available_shapes() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def shape_path(shape: str) -> Path:
    """A name in profiles/shapes/ ('qwen2.5-0.5b') or a path to a config.json."""
    path = Path(shape).expanduser() if shape.endswith(".json") else SHAPES_DIR / f"{shape}.json"
    if not path.is_file():
        raise ShapeError(f"model.shape {shape!r}: no shape file at {path} "
                         f"(shipped shapes: {', '.join(available_shapes()) or 'none'}; or give a path to a config.json)")
    return path


def shape_config(shape: str, overrides: dict | None = None, **ids):
    """The transformers config of the shape, with `overrides` applied and token ids set (`ids`)."""
    from transformers import AutoConfig

    path = shape_path(shape)
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShapeError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(fields, dict) or "model_type" not in fields:
        raise ShapeError(f"{path}: expected an HF config.json object with a 'model_type' key")
    fields = {k: v for k, v in fields.items() if not k.startswith("_")}
    model_type = fields.pop("model_type")
    try:
        published = AutoConfig.for_model(model_type, **fields)
    except (ValueError, KeyError, TypeError) as err:
        raise ShapeError(f"{path}: transformers cannot build a config from it ({type(err).__name__}: {err})") from None
    for key in overrides or {}:
        if not hasattr(published, key):  # a typo would otherwise add an unused attribute silently
            raise ShapeError(f"model.shape_overrides: {key!r} is not a field of the {model_type} config in {path}")
    # Rebuilt rather than patched, so derived fields (e.g. one layer type per layer) follow the overrides.
    # Our tokenizer's ids replace the published ones; use_cache off as in training (generate() asks for it).
    return AutoConfig.for_model(model_type, **{**fields, **(overrides or {}), **ids, "use_cache": False})


def build_shape_model(shape: str, overrides: dict | None, tokenizer, dtype) -> nn.Module:
    """Random-weight causal LM of the shape; eager attention (the inner loop is differentiated twice)."""
    from transformers import AutoModelForCausalLM

    cfg = shape_config(shape, overrides, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if len(tokenizer) > cfg.vocab_size:
        raise ShapeError(f"model.shape {shape!r}: the tokenizer has {len(tokenizer)} tokens, more than the "
                         f"shape's vocab_size {cfg.vocab_size}; use a smaller tokenizer (tokenizer.vocab_size)")
    cfg._attn_implementation = "eager"
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(dtype)
