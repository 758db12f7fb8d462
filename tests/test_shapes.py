"""Shape-only models (profiles/shapes/*.json): the published architectures with random weights,
their errors, one profile point on a CPU-sized cut of the 0.5B shape, and the GPU check's dry mode."""
import csv
import json

import pytest
import torch

from perk.config import ConfigError, Params, load_params
from perk.model import load_model
from perk.shapes import ShapeError, available_shapes
from perk.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def byte_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("bytetok") / "tok"
    byte_tokenizer(path)
    return path


def _model_cfg(**kw):
    return Params.model_validate({"model": kw}).model


def test_byte_tokenizer_round_trips_any_text(byte_tok):
    from perk.tokenizer import load_tokenizer

    tok = load_tokenizer(byte_tok)
    text = "Document 3: the café's ID is 0042 ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(tok) == 260 and max(ids) < 260 and tok.decode(ids) == text
    assert tok.pad_token_id is not None and tok.eos_token_id is not None


@pytest.mark.parametrize("shape,n_params,fields", [
    ("qwen2.5-0.5b", 494_032_768, dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                       num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                                       max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    ("gpt2-small", 124_439_808, dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257)),
])
def test_published_shape_builds_with_its_parameter_count(shape, n_params, fields, byte_tok):
    """The full shapes, built on the meta device (no memory, no init): the published sizes."""
    from perk.tokenizer import load_tokenizer

    tok = load_tokenizer(byte_tok)
    with torch.device("meta"):
        model = load_model(_model_cfg(shape=shape), tok)
    cfg = model.config
    assert {k: getattr(cfg, k) for k in fields} == fields
    assert sum(p.numel() for p in model.parameters()) == n_params  # tied head counted once
    assert cfg.pad_token_id == tok.pad_token_id and cfg._attn_implementation == "eager"
    if shape.startswith("qwen"):
        assert cfg.rope_parameters["rope_theta"] == 1e6 and len(cfg.layer_types) == 24


def test_shape_errors_name_the_file(tmp_path, byte_tok):
    from perk.tokenizer import load_tokenizer

    tok = load_tokenizer(byte_tok)
    assert {"qwen2.5-0.5b", "gpt2-small"} <= set(available_shapes())
    with pytest.raises(ShapeError, match=r"profiles/shapes/qwen9\.json.*shipped shapes: .*qwen2\.5-0\.5b"):
        load_model(_model_cfg(shape="qwen9"), tok)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ShapeError, match="bad.json: not valid JSON"):
        load_model(_model_cfg(shape=str(bad)), tok)
    bad.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ShapeError, match="bad.json: .*model_type"):
        load_model(_model_cfg(shape=str(bad)), tok)
    with pytest.raises(ShapeError, match="'num_layerz' is not a field of the qwen2 config"):
        load_model(_model_cfg(shape="qwen2.5-0.5b", shape_overrides={"num_layerz": 1}), tok)
    with pytest.raises(ShapeError, match="tokenizer has 260 tokens, more than the shape's vocab_size 100"):
        load_model(_model_cfg(shape="qwen2.5-0.5b", shape_overrides={"vocab_size": 100}), tok)
    with pytest.raises(ConfigError, match="model.shape .* or model.name .*not both"):
        load_params("profiles/qwen2.5-0.5b.yaml", ["model.shape=qwen2.5-0.5b"])


def test_shape_overrides_shrink_layers_and_base_is_frozen(byte_tok):
    from perk.bundle import PerkBundle
    from perk.tokenizer import load_tokenizer

    p = load_params("profiles/qwen2.5-0.5b.yaml", ["model.name=tiny", "model.shape=qwen2.5-0.5b",
                                                   "model.shape_overrides={num_hidden_layers: 2}", "lora.rank=2"])
    assert p.model.frozen_base
    with torch.device("meta"):
        b = PerkBundle(p, load_tokenizer(byte_tok))
    cfg = b.lm.config
    assert (cfg.num_hidden_layers, len(cfg.layer_types), cfg.hidden_size) == (2, 2, 896)
    trainable = {n for n, q in b.lm.named_parameters() if q.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_shape_model_profiles_one_point(byte_tok):
    """One real profile point (own process, CPU RSS method) on a 1-layer cut of the 0.5B shape:
    real width, heads and 151936-row vocabulary."""
    from perk.profile import run_point

    p = load_params("profiles/qwen2.5-0.5b.yaml", ["model.name=tiny", "model.shape=qwen2.5-0.5b",
                                                   "model.shape_overrides={num_hidden_layers: 1}", "lora.rank=2",
                                                   "inner.steps=1"])
    spec = {"params": p.model_dump(mode="json"), "device": "cpu", "tokenizer": str(byte_tok), "artifacts": None,
            "chunk_tokens": 64, "new_tokens": 2, "warmup": 0, "repeats": 1, "threads": 1,
            "method": "perk_mb2", "length": 128}
    pt = run_point(spec, timeout_s=120)
    assert pt["status"] == "ok", pt
    # at least one chunk's fp32 logits over the 151936-token vocabulary (64 x 151936 x 4 bytes = 37 MiB)
    assert pt["seconds"] > 0 and pt["peak_mib"] > 30, pt


def test_gpucheck_markdown_compares_with_the_paper():
    from perk.gpucheck import K, markdown

    def row(method, attn, L, status="ok", gib=None, s=None, gc=None):
        return {"method": method, "attn": attn, "grad_checkpointing": gc, "length": L, "status": status,
                "seconds": s, "cuda_max_allocated_mib": gib * 1024 if gib else None}
    rows = [row("perk_mb16", "eager", 64 * K, gib=19.6, s=11.4), row("prompt", "eager", 64 * K, gib=55.7, s=32.6),
            row("prompt", "sdpa", 64 * K, status="timeout"), row("perk_mb16", "eager", 128 * K, gib=35.2, s=20.9),
            row("prompt", "eager", 128 * K, status="oom"), row("meta_step", "eager", 8 * K, gib=30.0, s=2.0, gc=True),
            row("meta_step", "eager", 8 * K, gib=90.0, s=3.0, gc=False)]
    md = markdown(rows, {"shape": "qwen2.5-0.5b", "device": "test"})
    assert "| 64K | 19.6 GiB / 11.4 s | not run | 55.7 GiB / 32.6 s | TIMEOUT | 19.6 GB / 11.4 s | 55.7 GB / 32.6 s |" in md
    assert "| 128K | 35.2 GiB / 20.9 s | not run | OOM | not run | 35.2 GB / 20.9 s | OOM |" in md
    assert "prompt (eager): memory 2.84x, latency 2.86x" in md and "prompt (sdpa): n/a" in md
    assert "| 8K | on | 30.0 GiB / 2.0 s |" in md and "| 8K | off | 90.0 GiB / 3.0 s (>H100) |" in md
    assert "prompt sdpa 65536: timeout" in md  # unfinished points are listed


def test_gpucheck_dry_mode_runs_every_point(tmp_path):
    """The whole check at CPU sizes, in an interpreter made to look like the GPU image: mlflow,
    prefect, dvc, higher, datasets, psutil ... cannot be imported (tests/gpu_image/sitecustomize.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from perk.gpucheck import plan

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root / 'tests' / 'gpu_image'}:{root}", "GPU_IMAGE_CARRIED_FROM_VENV": "1"}
    res = subprocess.run([sys.executable, "-m", "perk.gpucheck", "--dry", "--out", str(tmp_path)], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "gpu_check.csv")))
    assert len(rows) == len(plan(dry=True)) == 10
    assert all(r["status"] == "ok" and float(r["seconds"]) > 0 for r in rows), rows
    assert {(r["method"], r["attn"], r["grad_checkpointing"]) for r in rows if r["method"] == "meta_step"} == \
        {("meta_step", "eager", "False"), ("meta_step", "eager", "True")}
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| 512 | off |" in md and "| 512 | on |" in md and md.count("\n| 256 |") == 1


def test_gpucheck_budget_is_kept_and_recorded(tmp_path):
    """A budget too short for the model build: nothing runs past it, the points are recorded as
    not run, and both files are still written."""
    import time

    from perk.gpucheck import main

    t0 = time.monotonic()
    assert main(["--dry", "--out", str(tmp_path), "--budget-s", "0.5", "--only", "perk_mb16,meta_step"]) == 0
    assert time.monotonic() - t0 < 15
    rows = list(csv.DictReader(open(tmp_path / "gpu_check.csv")))
    # the budget ends during the model build (timeout) or before it (skipped), depending on how
    # long the imports took; every planned point has its row either way
    assert len(rows) == 4 and rows[0]["status"] in ("timeout", "skipped"), rows
    assert all(r["status"] == "skipped" for r in rows[1:]), rows
    assert "total budget" in rows[0]["error"] and (tmp_path / "gpu_check.md").exists()


def test_unset_shape_keys_stay_out_of_params_dumps():
    """Fingerprints of checkpoints and eval cells hash the dump: without a shape it is unchanged."""
    assert not {"shape", "shape_overrides"} & set(Params().model_dump(mode="json")["model"])
    p = Params.model_validate({"model": {"shape": "qwen2.5-0.5b", "shape_overrides": {"num_hidden_layers": 1}}})
    again = Params.model_validate(p.model_dump(mode="json")).model
    assert (again.shape, again.shape_overrides) == ("qwen2.5-0.5b", {"num_hidden_layers": 1})
