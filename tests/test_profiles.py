"""Paper-scale profiles (profiles/*.yaml) validate, and the named-model path runs end to end:
tiny GPT-2 / Qwen2 checkpoints saved with save_pretrained stand in for gpt2 / Qwen2.5-0.5B."""
import json
from pathlib import Path

import pytest

from perk.config import load_params

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "tests" / "micro_params.yaml"
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def test_profiles_exist():
    assert {p.name for p in PROFILES} >= {"gpt2.yaml", "qwen2.5-0.5b.yaml"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_validates_and_follows_the_paper(path):
    p = load_params(path)
    assert p.model.name != "tiny" and p.model.dtype == "float32"
    assert (p.lora.rank, p.lora.alpha, p.lora.rslora, p.lora.target_modules) == (256, 16.0, True, "auto")
    assert (p.inner.steps, p.inner.differentiate_last, p.inner.optimizer) == (4, 2, "adam")
    assert p.meta_train.lr == 1e-5
    family, _ = p.meta_train.task.split("/")
    spec = getattr(p.synth.tasks, family)
    assert spec.enabled and spec.chunk_tokens == 256 and max(spec.train_lengths) == 8192
    assert max(spec.eval_lengths) >= 32768
    assert all(t.split("/")[0] in p.synth.tasks.enabled() for t in p.evaluate.tasks)


def _save_tiny(arch: str, out: Path, tok) -> Path:
    from transformers import AutoModelForCausalLM, GPT2Config, Qwen2Config

    from perk.tokenizer import save_tokenizer

    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
               eos_token_id=tok.eos_token_id)
    if arch == "gpt2":  # 512 positions: the micro 1024-token contexts exceed them, like 8K for real GPT-2
        cfg = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=512, **ids)
    else:
        cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True, **ids)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    save_tokenizer(tok, out / "_tok")
    for f in (out / "_tok").iterdir():  # the tokenizer next to the weights, as on the Hub
        f.rename(out / f.name)
    return out


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_named_model_runs_end_to_end(arch, tmp_path, monkeypatch, tiny_tokenizer):
    from perk import stages

    model_dir = _save_tiny(arch, tmp_path / f"tiny-{arch}", tiny_tokenizer)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PERK_ROOT", str(work))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = load_params(MICRO, [f"model.name={model_dir}", "meta_train.steps=2", "baseline.steps=2",
                            "meta_train.lr=1e-5", "baseline.lr=1e-5"])
    stages.call("tokenizer", p)
    assert (work / "data/tokenizer/tokenizer.json").exists()
    stages.call("synth", p, progress=False)
    info = json.loads(stages.call("pretrain", p, progress=False).read_text())
    assert info == {"base": str(model_dir), "pretrained_here": False}
    art = stages.call("meta-train", p, progress=False)
    from safetensors import safe_open
    with safe_open(str(art), framework="pt") as f:  # frozen named base: only LoRA, step sizes, weighting net
        keys = list(f.keys())
    assert keys and all("lora_" in k or "step_sizes" in k or "weight_net" in k for k in keys), keys[:5]
    stages.call("baseline", p, progress=False)
    metrics = json.loads(stages.call("evaluate", p, progress=False).read_text())
    perk = metrics["perk"]["needle_multikey"]
    assert "em_128" in perk and "em_1024" in perk and "out_of_range_1024" not in perk
    base = metrics["baseline"]["needle_multikey"]
    if arch == "gpt2":  # contexts beyond the positions are reported, never truncated
        assert base.get("out_of_range_1024", 0) >= 1 and "out_of_range_128" not in base
    else:
        assert "out_of_range_1024" not in base


def test_missing_named_model_says_what_to_do(tiny_tokenizer):
    from perk.model import ModelLoadError, load_model

    p = load_params(MICRO, ["model.name=/nonexistent/Qwen2.5-0.5B"])
    with pytest.raises(ModelLoadError) as err:
        load_model(p.model, tiny_tokenizer)
    msg = str(err.value)
    assert "/nonexistent/Qwen2.5-0.5B" in msg and "save_pretrained" in msg and "PERK_MODELS_DIR" in msg
