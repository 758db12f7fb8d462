"""perk.model: tiny models from config, named models from disk only, LoRA targets, weighting net."""
from __future__ import annotations

import pytest
import torch

from perk.config import LoraConfig, ModelConfig
from perk.meta import LearnedStepSizes, encode
from perk.config import InnerConfig
from perk.model import (ModelLoadError, TokenWeightNet, add_lora, build_tiny_model, load_model,
                        lora_parameters, lora_target_modules)


class _Tok:  # the only things load_model needs from a tokenizer
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __len__(self):
        return 64


def tiny(arch, **kw):
    return ModelConfig(arch=arch, n_layer=3, n_embd=16, n_head=2, **kw)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_tiny_model_uses_eager_attention_and_config_sizes(arch):
    m = load_model(tiny(arch), _Tok())
    assert m.config._attn_implementation == "eager"
    assert m.get_input_embeddings().weight.shape == (64, 16)
    assert m(input_ids=torch.tensor([[3, 4, 5]])).logits.shape == (1, 3, 64)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_named_model_loads_from_a_local_directory(arch, tmp_path):
    torch.manual_seed(0)
    src = build_tiny_model(tiny(arch), 64)
    src.save_pretrained(tmp_path / "m")
    got = load_model(ModelConfig(name=str(tmp_path / "m")), _Tok())
    assert got.config._attn_implementation == "eager"
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(src(input_ids=x).logits, got(input_ids=x).logits, atol=1e-6)
    # and it works end to end with LoRA + one inner step
    lm = add_lora(got, LoraConfig(rank=2))
    ss = LearnedStepSizes(len(lora_parameters(lm)), 1, 1e-2, 1e-4, 1e-1)
    ch = dict(input_ids=x, attention_mask=torch.ones_like(x), loss_mask=torch.ones_like(x))
    enc = encode(lm, ch, InnerConfig(steps=1, differentiate_last=1), ss, None)
    assert len(enc.fast) == len(lora_parameters(lm))


def test_named_model_found_under_models_dir(tmp_path, monkeypatch):
    build_tiny_model(tiny("qwen2"), 64).save_pretrained(tmp_path / "my-model")
    monkeypatch.setenv("PERK_MODELS_DIR", str(tmp_path))
    assert load_model(ModelConfig(name="my-model"), _Tok()).config.model_type == "qwen2"


def test_missing_named_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelConfig(name=str(missing)), _Tok())
    msg = str(err.value)
    assert str(missing) in msg and "save_pretrained" in msg and "cache" in msg


@pytest.mark.parametrize("arch,suffixes", [("gpt2", {"c_attn", "c_proj", "c_fc"}),
                                           ("qwen2", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"})])
def test_lora_targets_per_arch_and_top_layers(arch, suffixes):
    m = build_tiny_model(tiny(arch), 64)
    names = lora_target_modules(m, LoraConfig(rank=2))
    assert {n.split(".")[-1] for n in names} == suffixes
    top = lora_target_modules(m, LoraConfig(rank=2, top_layers=1))
    assert top and all(".2." in n for n in top)  # layer index 2 = the top of 3 layers
    pm = add_lora(m, LoraConfig(rank=2, top_layers=1))
    lora = lora_parameters(pm)
    assert len(lora) == 2 * len(top) and all(".2." in n for n in lora)
    # the tiny base stays trainable (it is meta-trained), LoRA B starts at zero
    assert all(p.requires_grad for p in pm.parameters())
    assert all(float(p.abs().sum()) == 0 for n, p in lora.items() if "lora_B" in n)


def test_rslora_scaling():
    m = add_lora(build_tiny_model(tiny("qwen2"), 64), LoraConfig(rank=4, alpha=8.0, rslora=True))
    layer = m.get_submodule("base_model.model.model.layers.0.self_attn.q_proj")
    assert layer.scaling["default"] == pytest.approx(8.0 / 2.0)


def test_bad_lora_and_model_configs_raise():
    with pytest.raises(ValueError):
        LoraConfig(rank=0)
    m = build_tiny_model(tiny("gpt2"), 64)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        add_lora(m, LoraConfig.model_construct(rank=0, alpha=1.0, rslora=False, dropout=0.0,
                                               target_modules="auto", top_layers=None))
    with pytest.raises(ValueError, match="no LoRA target modules"):
        add_lora(m, LoraConfig(rank=2, target_modules=["nonexistent"]))
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(n_embd=30, n_head=4)


def test_token_weight_net_starts_uniform_and_returns_logits():
    net = TokenWeightNet(16)
    w, logits = net(torch.randn(2, 5, 16))
    assert w.shape == logits.shape == (2, 5)
    assert torch.allclose(w, torch.full_like(w, torch.log(torch.tensor(2.0)).item()))
    assert torch.all(logits == 0)


def test_local_layers_see_only_their_window():
    class Cfg:  # ModelConfig plus the two local-attention attributes
        arch, n_layer, n_embd, n_head, max_positions, dtype = "qwen2", 2, 16, 2, 128, "float32"
        sliding_window, local_layers = 3, 1
    m = build_tiny_model(Cfg(), 64)
    assert m.config.layer_types == ["sliding_attention", "full_attention"]
    x = torch.randint(0, 64, (1, 12))
    y = x.clone()
    y[0, :6] = (y[0, :6] + 1) % 64  # change only tokens outside the last position's window
    h = lambda ids: m(input_ids=ids, output_hidden_states=True).hidden_states[1][0, -1]
    assert torch.equal(h(x), h(y))
    Cfg.arch = "gpt2"
    with pytest.raises(ValueError, match="only supported for arch 'qwen2'"):
        build_tiny_model(Cfg(), 64)


def test_default_local_layer_per_arch():
    assert build_tiny_model(tiny("qwen2"), 64).config.layer_types[0] == "sliding_attention"
    assert build_tiny_model(tiny("qwen2", local_layers=0), 64).config.layer_types[0] == "full_attention"
    build_tiny_model(tiny("gpt2"), 64)  # None resolves to no local layers for GPT-2


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_frozen_random_input_code_is_untied_fixed_and_reproducible(arch):
    a = load_model(tiny(arch, input_embeddings="frozen_random", input_embedding_std=0.5), _Tok())
    emb, head = a.get_input_embeddings().weight, a.get_output_embeddings().weight
    assert emb.data_ptr() != head.data_ptr() and not emb.requires_grad and head.requires_grad
    assert abs(float(emb.std()) - 0.5) < 0.05
    # every stage that builds the base gets the same code, whatever the global RNG did before
    torch.manual_seed(123)
    b = load_model(tiny(arch, input_embeddings="frozen_random", input_embedding_std=0.5), _Tok())
    assert torch.equal(emb, b.get_input_embeddings().weight)
    # training moves the head, never the input code
    opt = torch.optim.SGD([p for p in a.parameters() if p.requires_grad], lr=0.1)
    a(input_ids=torch.tensor([[3, 4, 5]]), labels=torch.tensor([[3, 4, 5]])).loss.backward()
    before = head.detach().clone()
    opt.step()
    assert torch.equal(emb, b.get_input_embeddings().weight) and not torch.equal(before, head)


def test_learned_embeddings_stay_tied():
    m = load_model(tiny("qwen2", input_embeddings="learned"), _Tok())
    assert m.get_input_embeddings().weight is m.get_output_embeddings().weight
    assert m.get_input_embeddings().weight.requires_grad
