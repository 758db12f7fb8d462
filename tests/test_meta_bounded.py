"""Memory-bounded meta-training (`inner.bounded_memory`): the same meta-gradients as the full graph.

Same tiny float64 models as tests/test_inner_loop.py. The bounded path recomputes each chunk
micro-batch in the outer backward instead of keeping its graph; every meta-gradient (LoRA init,
base, learned step sizes, weighting net, through the answer loss and the step-0 support logits)
must equal the full-graph path's to 1e-6 relative.
"""
from __future__ import annotations

import pytest
import torch

from perk.config import ConfigError, validate_params
from perk.meta import encode
from perk.model import lora_parameters

from test_inner_loop import cfg, data, make, rel, steps_for


def meta_grads(m, net, ss, c, chunks, q, with_logits: bool = True):
    """Gradient of (answer-like loss + a loss on the step-0 weight logits) w.r.t. every parameter."""
    params = list(m.parameters()) + list(ss.parameters()) + list(net.parameters())
    enc = encode(m, chunks, c, ss, net, return_weight_logits=with_logits)
    loss = enc.forward(input_ids=q).logits.pow(2).mean()
    if with_logits:  # stands in for the support BCE: any function of the logits
        loss = loss + enc.weight_logits.sin().mean()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
    return flat, enc


def groups(m, ss, net):
    """Slices of the flat gradient per parameter group, to check each one separately."""
    sizes, lora = {}, set(lora_parameters(m))
    off = 0
    for n, p in m.named_parameters():
        key = "lora init" if n in lora else "base"
        sizes.setdefault(key, []).append(slice(off, off + p.numel()))
        off += p.numel()
    for name, mod in (("step sizes", ss), ("weight net", net)):
        for p in mod.parameters():
            sizes.setdefault(name, []).append(slice(off, off + p.numel()))
            off += p.numel()
    return sizes


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("diff_last", [1, 2])
def test_bounded_meta_gradients_equal_full_graph(arch, opt, diff_last):
    m, net = make(arch, seed=11)
    c_full = cfg(optimizer=opt, differentiate_last=diff_last, micro_batch=2)
    ss = steps_for(m, c_full)
    chunks, q = data(seed=12, C=5)
    full, enc_full = meta_grads(m, net, ss, c_full, chunks, q)
    bounded, enc_b = meta_grads(m, net, ss, c_full.model_copy(update={"bounded_memory": True}), chunks, q)
    assert enc_b.inner_losses == pytest.approx(enc_full.inner_losses, rel=1e-12)
    for name, sls in groups(m, ss, net).items():
        a, b = torch.cat([bounded[s] for s in sls]), torch.cat([full[s] for s in sls])
        assert b.abs().sum() > 0, name  # every group really receives a meta-gradient
        assert rel(a, b) < 1e-6, (name, rel(a, b))


def test_bounded_keeps_no_graph_over_the_chunks():
    """The fast weights of a bounded encode hang on graph nodes that save only LoRA-sized tensors."""
    m, net = make("gpt2", seed=13)
    c = cfg(micro_batch=1, differentiate_last=3, bounded_memory=True)
    ss = steps_for(m, c)
    chunks, _ = data(seed=14, C=4, T=9)
    sizes = {n: p.numel() for n, p in lora_parameters(m).items()}
    biggest_lora = max(sizes.values())

    def biggest_saved(fast):
        seen, stack, biggest = set(), [t.grad_fn for t in fast], 0
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            for attr in dir(fn):
                if attr.startswith("_saved_"):
                    val = getattr(fn, attr, None)
                    if isinstance(val, torch.Tensor):
                        biggest = max(biggest, val.numel())
            if hasattr(fn, "saved_tensors"):  # our custom Function saves the step's fast weights
                biggest = max([biggest] + [t.numel() for t in fn.saved_tensors])
            stack += [nxt for nxt, _ in fn.next_functions]
        return biggest

    # an activation of the chunk batch: chunks x tokens x hidden
    activation = chunks["input_ids"].numel() * m.config.n_embd
    full = biggest_saved(encode(m, chunks, c.model_copy(update={"bounded_memory": False}), ss, net).fast)
    bounded = biggest_saved(encode(m, chunks, c, ss, net).fast)
    assert full >= activation  # the full graph does keep chunk activations (so the probe sees them)
    assert bounded <= biggest_lora, (bounded, biggest_lora)


def test_unsupported_combinations_name_the_keys():
    with pytest.raises(ConfigError, match=r"inner.bounded_memory.*inner.engine: torch_func only"):
        validate_params({"inner": {"bounded_memory": True, "engine": "higher", "micro_batch": 2}})
    with pytest.raises(ConfigError, match=r"inner.bounded_memory: true needs inner.micro_batch >= 1"):
        validate_params({"inner": {"bounded_memory": True}})
    assert validate_params({"inner": {"bounded_memory": True, "micro_batch": 4}}).inner.bounded_memory
    m, net = make("gpt2")
    c = cfg(micro_batch=2, bounded_memory=True)
    with pytest.raises(ValueError, match=r"inner.bounded_memory.*torch_func only, got 'higher'"):
        encode(m, data()[0], c, steps_for(m, c), net, engine="higher")


def test_bounded_replays_dropout_masks():
    """With LoRA dropout, recomputation must reuse the forward's masks (else gradients differ)."""
    from perk.config import LoraConfig, ModelConfig
    from perk.model import TokenWeightNet, add_lora, build_tiny_model

    torch.manual_seed(0)
    m = build_tiny_model(ModelConfig(arch="gpt2", n_layer=1, n_embd=16, n_head=2, dtype="float64"), 40)
    m = add_lora(m, LoraConfig(rank=2, alpha=4.0, dropout=0.3)).train()
    with torch.no_grad():
        for p in lora_parameters(m).values():
            p.normal_(0, 0.2)
    net = TokenWeightNet(16).double()
    c = cfg(micro_batch=2, differentiate_last=2)
    ss = steps_for(m, c)
    chunks, q = data(seed=15, C=4)
    torch.manual_seed(5)
    full, _ = meta_grads(m, net, ss, c, chunks, q, with_logits=False)
    torch.manual_seed(5)
    bounded, _ = meta_grads(m, net, ss, c.model_copy(update={"bounded_memory": True}), chunks, q, with_logits=False)
    torch.manual_seed(6)
    other, _ = meta_grads(m, net, ss, c, chunks, q, with_logits=False)
    assert rel(other, full) > 1e-3  # dropout really changes the gradient
    assert rel(bounded, full) < 1e-6


def test_trainer_episode_gives_the_same_gradients(tiny_tokenizer):
    """Through the real trainer path (answer loss + support BCE on the step-0 logits, PerkBundle)."""
    from perk.bench import _synthetic_episode
    from perk.bundle import PerkBundle
    from perk.config import Params
    from perk.meta.trainer import episode_forward

    p = Params.model_validate({"model": {"n_layer": 2, "n_embd": 32, "n_head": 2, "dtype": "float64"},
                               "lora": {"rank": 2}, "inner": {"steps": 3, "differentiate_last": 2}})
    torch.manual_seed(0)
    bundle = PerkBundle(p, tiny_tokenizer).double().train()
    with torch.no_grad():
        bundle.weight_net.fc2.weight.normal_(0, 0.5)
        for t in lora_parameters(bundle.lm).values():
            t.normal_(0, 0.2)
    ep = _synthetic_episode(len(tiny_tokenizer), n_chunks=6, chunk_tokens=16)

    def grads(inner):
        bundle.inner = inner
        bundle.zero_grad(set_to_none=True)
        loss, _, bce, _ = episode_forward(bundle, ep, train=True, aux=True)
        (loss + bce).backward()
        named = [(n, q) for n, q in bundle.named_parameters() if q.requires_grad]
        return {n: q.grad.clone() if q.grad is not None else torch.zeros_like(q) for n, q in named}

    full = grads(p.inner)
    bounded = grads(p.inner.model_copy(update={"bounded_memory": True, "micro_batch": 4}))
    flat = lambda g: torch.cat([v.flatten() for v in g.values()])
    assert flat(full).abs().sum() > 0
    assert rel(flat(bounded), flat(full)) < 1e-6
    for part in ("step_sizes", "weight_net", "lora_A", "mlp"):
        sel = [n for n in full if part in n]
        assert sel and torch.cat([full[n].flatten() for n in sel]).abs().sum() > 0, part


def test_bench_meta_step_point_runs_in_its_own_process(tiny_tokenizer_dir):
    """The bench's bounded point: perk.profile's meta_step workload with inner.bounded_memory on."""
    from perk.config import Params
    from perk.profile import METHOD_META_STEP, run_point

    inner = {"steps": 2, "differentiate_last": 1, "bounded_memory": True, "micro_batch": 2}
    p = Params.model_validate({"model": {"n_layer": 1, "n_embd": 32, "n_head": 2}, "lora": {"rank": 2},
                               "inner": inner})
    spec = {"params": p.model_dump(mode="json"), "device": "cpu", "tokenizer": str(tiny_tokenizer_dir),
            "artifacts": None, "chunk_tokens": 32, "warmup": 1, "repeats": 1, "threads": 1,
            "method": METHOD_META_STEP, "length": 128}
    res = run_point(spec, timeout_s=120)
    assert res["status"] == "ok", res
    assert res["seconds"] > 0 and res["peak_mib"] >= 0


def test_bounded_composes_with_grad_checkpointing():
    """inner.grad_checkpointing (per-layer recompute inside a forward) under the bounded path."""
    m, net = make("qwen2", seed=16)
    c = cfg(optimizer="adam", differentiate_last=2, micro_batch=2)
    ss = steps_for(m, c)
    chunks, q = data(seed=17, C=5)
    full, _ = meta_grads(m, net, ss, c, chunks, q)
    both, _ = meta_grads(m, net, ss, c.model_copy(update={"bounded_memory": True, "grad_checkpointing": True}),
                         chunks, q)
    assert full.abs().sum() > 0
    assert rel(both, full) < 1e-6


def test_bounded_outer_steps_free_their_graphs():
    """Repeated encode + outer backward leaves no tensors behind: the saved micro-batch closure once
    formed an autograd cycle that Python's gc cannot collect (~1.5 MB per outer step at 2048 tokens)."""
    import gc

    m, net = make("qwen2", seed=21)
    c = cfg(optimizer="adam", differentiate_last=2, micro_batch=2, bounded_memory=True)
    ss = steps_for(m, c)
    chunks, q = data(seed=22, C=5)

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())

    meta_grads(m, net, ss, c, chunks, q)  # warm-up: lazily built state is not a leak
    before = live_tensors()
    for _ in range(5):
        meta_grads(m, net, ss, c, chunks, q)
    assert live_tensors() <= before, (before, live_tensors())
