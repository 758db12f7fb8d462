"""Profile points run in their own process: a point that runs out of memory or time is recorded,
never fatal; a normal point reports time and a positive peak."""
from perk.config import Params
from perk.profile import growth_ratios, run_point


def _spec(tokenizer_dir, **kw):
    p = Params.model_validate({"model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "max_positions": 16384},
                               "lora": {"rank": 2}, "inner": {"steps": 1, "differentiate_last": 1}})
    return {"params": p.model_dump(mode="json"), "device": "cpu", "tokenizer": str(tokenizer_dir),
            "artifacts": None, "chunk_tokens": 32, "new_tokens": 2, "warmup": 0, "repeats": 1, **kw}


def test_points_ok_oom_and_timeout_are_recorded(tiny_tokenizer_dir):
    ok = run_point(_spec(tiny_tokenizer_dir, method="perk_mb4", length=128), timeout_s=120)
    assert ok["status"] == "ok", ok
    assert ok["seconds"] > 0 and ok["peak_mib"] >= 0 and ok["memory_method"]
    # prompt-based attention over 8K tokens needs far more than 16 MiB of new address space
    oom = run_point(_spec(tiny_tokenizer_dir, method="prompt", length=8192, memory_limit_mb=16), timeout_s=120)
    assert oom["status"] == "oom", oom
    slow = run_point(_spec(tiny_tokenizer_dir, method="prompt", length=128), timeout_s=0.2)
    assert slow["status"] == "timeout", slow
    ratios = growth_ratios([ok, {**ok, "length": 256, "peak_mib": 2 * ok["peak_mib"] or 1.0}, oom, slow])
    assert set(ratios) == {"perk_mb4", "prompt"} and ratios["prompt"] is None
