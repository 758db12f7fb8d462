"""Base causal LM, LoRA memory and the token-weighting net.

The base is either a tiny model built from `ModelConfig` (Qwen2- or GPT-2-style, trained from
scratch on CPU) or a named Hugging Face model loaded from disk only (no downloads on these
machines). Attention is always "eager": the inner loop is differentiated twice and the fused
SDPA kernels have no double backward.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from perk.config import LoraConfig, ModelConfig

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

# LoRA targets per architecture family (peft module-name suffixes).
_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


class ModelLoadError(RuntimeError):
    """A named model could not be found locally; the message says where we looked."""


def build_tiny_model(model_cfg: ModelConfig, vocab_size: int, pad_id: int | None = None,
                     bos_id: int | None = None, eos_id: int | None = None) -> nn.Module:
    """A small causal LM with random weights, built from the config (no files needed).

    Qwen2 only: `local_layers` bottom layers may use sliding-window attention of `sliding_window`
    tokens. A short window makes the representation of a token depend on its few predecessors
    only, so "... for KEY is" reads the same in a haystack fact and in the question: what the inner
    loop writes while reading the fact is then retrieved from the question (binding).
    """
    from transformers import AutoModelForCausalLM, GPT2Config, Qwen2Config

    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    ids = dict(pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id)
    window = getattr(model_cfg, "sliding_window", 0) or 0
    local = getattr(model_cfg, "local_layers", 0)
    if local is None:  # the default: one local layer where the architecture supports it
        local = 1 if model_cfg.arch == "qwen2" else 0
    local = min(local, model_cfg.n_layer) if window else 0
    if model_cfg.arch == "qwen2":
        sliding = dict(use_sliding_window=True, sliding_window=window, max_window_layers=local,
                       layer_types=["sliding_attention"] * local + ["full_attention"] * (model_cfg.n_layer - local)
                       ) if local else {}
        cfg = Qwen2Config(
            vocab_size=vocab_size, hidden_size=model_cfg.n_embd, intermediate_size=4 * model_cfg.n_embd,
            num_hidden_layers=model_cfg.n_layer, num_attention_heads=model_cfg.n_head,
            num_key_value_heads=model_cfg.n_head, max_position_embeddings=model_cfg.max_positions,
            tie_word_embeddings=True, use_cache=False, **sliding, **ids)
    elif local:
        raise ValueError("sliding-window (local) layers are only supported for arch 'qwen2'")
    elif model_cfg.arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size, n_embd=model_cfg.n_embd, n_layer=model_cfg.n_layer,
            n_head=model_cfg.n_head, n_positions=model_cfg.max_positions,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, **ids)
    else:  # pydantic already restricts this; kept for direct callers
        raise ValueError(f"unknown arch {model_cfg.arch!r}; choose 'qwen2' or 'gpt2'")
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    return model.to(_DTYPES[model_cfg.dtype])


def freeze_random_input_embeddings(model: nn.Module, std: float, head_from_code: bool = False) -> None:
    """Untie the input embeddings from the output head and fix them at N(0, std).

    Test keys never occur in training, so a learned table would leave their rows at init while
    every seen word moved; with a fixed random code every row comes from one distribution and the
    layers must learn to read any of them. The output head (a separate copy) is still learned.
    """
    emb = model.get_input_embeddings()
    model.config.tie_word_embeddings = False
    if getattr(model.config, "get_text_config", None):
        model.config.get_text_config().tie_word_embeddings = False
    head = model.get_output_embeddings()
    head.weight = nn.Parameter(emb.weight.detach().clone())
    g = torch.Generator().manual_seed(0x5EED)
    code = torch.randn(emb.weight.shape, generator=g, dtype=torch.float32) * std
    emb.weight = nn.Parameter(code.to(emb.weight.dtype), requires_grad=False)
    if head_from_code:
        head.weight = nn.Parameter(code.clone().to(head.weight.dtype))


def identity_copy_init(model: nn.Module) -> None:
    """W_O W_V = I in every full-attention layer (v_proj, o_proj square: n_kv_heads == n_heads)."""
    types = getattr(model.config, "layer_types", None) or ["full_attention"] * model.config.num_hidden_layers
    with torch.no_grad():
        for layer, kind in zip(model.model.layers, types):
            if kind != "full_attention":
                continue
            att = layer.self_attn
            for lin in (att.v_proj, att.o_proj):
                if lin.weight.shape[0] != lin.weight.shape[1]:
                    raise ValueError("copy_init needs square v/o projections (n_kv_heads == n_heads)")
                lin.weight.copy_(torch.eye(lin.weight.shape[0], dtype=lin.weight.dtype))
                if lin.bias is not None:
                    lin.bias.zero_()


def _candidate_dirs(name: str) -> list[Path]:
    """Where a named model may live: the name as a path, then under $PERK_MODELS_DIR."""
    dirs = [Path(name).expanduser()]
    if os.environ.get("PERK_MODELS_DIR"):
        dirs.append(Path(os.environ["PERK_MODELS_DIR"]) / name)
    return dirs


def load_model(model_cfg: ModelConfig, tokenizer) -> nn.Module:
    """'tiny' builds from config, a shape from its config file (random weights); any other name
    loads from a local directory or the HF cache only."""
    if model_cfg.shape is not None:
        from .shapes import build_shape_model
        return build_shape_model(model_cfg.shape, model_cfg.shape_overrides, tokenizer, _DTYPES[model_cfg.dtype])
    if model_cfg.name == "tiny":
        model = build_tiny_model(model_cfg, len(tokenizer), tokenizer.pad_token_id,
                                 tokenizer.bos_token_id, tokenizer.eos_token_id)
        if model_cfg.input_embeddings == "frozen_random":
            freeze_random_input_embeddings(model, model_cfg.input_embedding_std, model_cfg.head_init == "code")
        if model_cfg.copy_init and model_cfg.arch == "qwen2":  # the recipe's copy path is for the qwen2 layout
            identity_copy_init(model)
        return model
    from transformers import AutoModelForCausalLM

    dtype = _DTYPES[model_cfg.dtype]
    tried = []
    for d in _candidate_dirs(model_cfg.name):
        tried.append(str(d))
        if (d / "config.json").is_file():
            return AutoModelForCausalLM.from_pretrained(d, dtype=dtype, attn_implementation="eager",
                                                        local_files_only=True)
    try:  # an HF id already in the local cache
        return AutoModelForCausalLM.from_pretrained(model_cfg.name, dtype=dtype, attn_implementation="eager",
                                                    local_files_only=True)
    except (OSError, ValueError) as err:
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise ModelLoadError(
            f"model {model_cfg.name!r} not found locally. Looked in: {', '.join(tried)} "
            f"(need config.json + weights) and the Hugging Face cache under {cache} "
            f"(local_files_only, no downloads here). Provide it by setting model.name to a directory "
            f"saved with save_pretrained, by putting it under $PERK_MODELS_DIR/<name>, or by "
            f"pre-populating the HF cache on a machine with internet. ({type(err).__name__}: {err})"
        ) from None


def _family(model: nn.Module) -> str:
    return "gpt2" if getattr(model.config, "model_type", "") == "gpt2" else "llama"


def _num_layers(model: nn.Module) -> int:
    cfg = model.config
    return getattr(cfg, "num_hidden_layers", None) or cfg.n_layer


def lora_target_modules(model: nn.Module, lora_cfg: LoraConfig) -> list[str]:
    """Module names (regex for peft) to adapt: per-arch projections, optionally only the top layers."""
    suffixes = _TARGETS[_family(model)] if lora_cfg.target_modules == "auto" else list(lora_cfg.target_modules)
    names = [n for n, _ in model.named_modules() if n.split(".")[-1] in suffixes]
    if lora_cfg.top_layers is not None:
        first = _num_layers(model) - lora_cfg.top_layers
        keep = []
        for n in names:
            parts = n.split(".")
            idx = [int(p) for p in parts if p.isdigit()]
            if idx and idx[0] >= max(first, 0):
                keep.append(n)
        names = keep
    if not names:
        raise ValueError(f"no LoRA target modules matched {suffixes} (top_layers={lora_cfg.top_layers})")
    return names


def add_lora(model: nn.Module, lora_cfg: LoraConfig):
    """Wrap with a peft LoRA adapter. Base weights keep their requires_grad (the tiny base is meta-trained)."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    if lora_cfg.rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {lora_cfg.rank}")
    targets = lora_target_modules(model, lora_cfg)
    pcfg = PeftLoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, use_rslora=lora_cfg.rslora,
                          lora_dropout=lora_cfg.dropout, target_modules=targets,
                          fan_in_fan_out=_family(model) == "gpt2", bias="none")
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    with warnings.catch_warnings():  # peft reads a property transformers 5 deprecated; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        pmodel = get_peft_model(model, pcfg)
    # peft freezes the base; restore the caller's choice (freeze it yourself for a pretrained base).
    for n, p in pmodel.base_model.model.named_parameters():
        if "lora_" not in n:
            p.requires_grad_(trainable.get(n.replace(".base_layer", ""), False))
    return pmodel


def lora_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors (the memory): name -> parameter, in a stable order."""
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    if not params:
        raise ValueError("model has no LoRA parameters; call add_lora first")
    return params


class TokenWeightNet(nn.Module):
    """Per-token inner-loss weights from last hidden states (CaMeLS-style).

    The last layer starts at zero, so every token starts with the same weight softplus(0);
    `forward` also returns the pre-softplus logits, which an auxiliary loss can train against
    the supporting-fact spans recorded in the training data.
    """

    RECENCY_SCALE = 5.0  # b = 5 * raw: Adam moves raw ~lr per step, too slow for b to matter in a few hundred steps

    def __init__(self, hidden_size: int, width: int = 128, beta: float = 1.0, recency: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, width)
        self.fc2 = nn.Linear(width, 1)
        self.beta = beta
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        # absent unless asked for, so artifacts trained without it load and save unchanged
        self.recency = nn.Parameter(torch.zeros(())) if recency else None

    def recency_factor(self, first_chunk: int, n_chunks: int, n_chunks_all: int, length: int) -> torch.Tensor | None:
        """exp(b * x) for the predicted tokens (positions 1..length-1) of chunks first_chunk.. of a context
        of n_chunks_all chunks; x = (chunk + position / length) / n_chunks_all in [0, 1). None when off."""
        if self.recency is None:
            return None
        dev = self.recency.device
        chunk = torch.arange(first_chunk, first_chunk + n_chunks, device=dev, dtype=self.recency.dtype)[:, None]
        tok = torch.arange(1, length, device=dev, dtype=self.recency.dtype)[None, :] / length
        return torch.exp(self.RECENCY_SCALE * self.recency * (chunk + tok) / n_chunks_all)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc2(F.gelu(self.fc1(hidden.to(self.fc1.weight.dtype)))).squeeze(-1)  # bf16 base, fp32 net
        return F.softplus(logits, beta=self.beta), logits
