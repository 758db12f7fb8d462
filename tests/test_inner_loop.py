"""The inner loop: engine parity, finite differences, truncation, NaN detection, bad inputs.

Tiny float64 models so that second-order gradients can be compared to 1e-6 and finite
differences are meaningful; the whole file runs in well under a minute on 2 cores.
"""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from perk.config import InnerConfig, LoraConfig, ModelConfig
from perk.meta import InnerAdam, InnerLoopError, InnerSGD, LearnedStepSizes, encode, token_losses
from perk.model import TokenWeightNet, add_lora, build_tiny_model, lora_parameters

VOCAB, H = 40, 16


def make(arch: str, seed: int = 0, rank: int = 4):
    torch.manual_seed(seed)
    m = build_tiny_model(ModelConfig(arch=arch, n_layer=2, n_embd=H, n_head=2, dtype="float64"), VOCAB)
    m = add_lora(m, LoraConfig(rank=rank, alpha=8.0))
    with torch.no_grad():  # non-zero B so every LoRA tensor has a non-trivial gradient
        for p in lora_parameters(m).values():
            p.normal_(0, 0.2)
    net = TokenWeightNet(H).double()
    with torch.no_grad():  # non-uniform weights, so the net's meta-gradient is non-trivial too
        net.fc2.weight.normal_(0, 0.5)
    return m, net


def cfg(**kw) -> InnerConfig:
    base = dict(steps=3, lr_init=3e-2, lr_min=1e-4, lr_max=0.3, differentiate_last=3, optimizer="adam")
    base.update(kw)
    return InnerConfig(**base)


def data(seed: int = 1, C: int = 3, T: int = 9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (C, T), generator=g)
    att = torch.ones_like(ids)
    att[-1, -2:] = 0  # some padding
    chunks = dict(input_ids=ids, attention_mask=att, loss_mask=torch.ones_like(ids))
    q = torch.randint(0, VOCAB, (2, 5), generator=g)
    return chunks, q


def steps_for(m, c: InnerConfig):
    ss = LearnedStepSizes(len(lora_parameters(m)), c.steps, c.lr_init, c.lr_min, c.lr_max).double()
    with torch.no_grad():  # different lr per tensor and step
        ss.log_lr.add_(torch.randn_like(ss.log_lr) * 0.3).clamp_(ss.log_min + 0.5, ss.log_max - 0.5)
    return ss


def outer_loss(m, net, ss, c, chunks, q, engine="torch_func"):
    enc = encode(m, chunks, c, ss, net, engine=engine)
    return enc.forward(input_ids=q).logits.pow(2).mean()


def meta_grads(m, net, ss, c, chunks, q, engine):
    params = list(m.parameters()) + list(ss.parameters()) + list(net.parameters())
    loss = outer_loss(m, net, ss, c, chunks, q, engine)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def rel(a, b):
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------ engine parity

@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
@pytest.mark.parametrize("opt,diff_last", [("adam", 3), ("sgd", 3), ("adam", 1)])
def test_engines_give_same_meta_gradients(arch, opt, diff_last):
    m, net = make(arch)
    c = cfg(optimizer=opt, differentiate_last=diff_last)
    ss = steps_for(m, c)
    chunks, q = data()
    a = meta_grads(m, net, ss, c, chunks, q, "torch_func")
    b = meta_grads(m, net, ss, c, chunks, q, "higher")
    assert a.abs().sum() > 0
    assert rel(a, b) < 1e-6


# Unit directions, central differences. In float64 GPT-2 matches to ~1e-8 at step 1e-6 (inner
# Adam bends sharply where a gradient entry is ~1e-8, so larger steps are not accurate there).
# Qwen2's eager attention and RMSNorm compute in float32 even in a float64 model, so its loss is
# only smooth to ~1e-7 relative: there SGD, step 1e-3 and a looser tolerance.
@pytest.mark.parametrize("arch,opt,eps,rtol,engine", [
    ("gpt2", "sgd", 1e-6, 1e-5, "torch_func"), ("gpt2", "adam", 1e-6, 1e-5, "torch_func"),
    ("gpt2", "adam", 1e-6, 1e-5, "higher"), ("qwen2", "sgd", 1e-3, 1e-2, "torch_func"),
    ("qwen2", "sgd", 1e-3, 1e-2, "higher")])
def test_meta_gradient_matches_finite_differences(arch, opt, eps, rtol, engine):
    m, net = make(arch, seed=3)
    c = cfg(optimizer=opt, differentiate_last=3)
    ss = steps_for(m, c)
    chunks, q = data(seed=4)
    lora = lora_parameters(m)
    base = [p for n, p in m.named_parameters() if "lora_" not in n]
    # random directions in: the learned step sizes, the LoRA init, the base model, the weighting net
    probes = {"step sizes + weight net": [ss.log_lr, *net.parameters()],
              "lora init + base": [*lora.values(), *base]}
    g = torch.Generator().manual_seed(0)
    for name, params in probes.items():
        dirs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        norm = torch.cat([d.flatten() for d in dirs]).norm()
        dirs = [d / norm for d in dirs]  # unit direction: eps is the real step length
        grads = torch.autograd.grad(outer_loss(m, net, ss, c, chunks, q, engine), params)
        analytic = float(sum((gr * d).sum() for gr, d in zip(grads, dirs)))
        # the scale the error is judged against: a random direction can be nearly orthogonal to the
        # gradient (qwen2, seed 3: 5e-6 against a gradient norm of 9e-3), and there the FD noise
        # floor of a float32-internal loss (~1e-7 here, and CPU-dependent: AVX2 vs AVX-512
        # rounding) is a large share of |analytic|; a wrong gradient errs on the gradient's scale
        scale = max(abs(analytic), 0.1 * float(torch.cat([gr.flatten() for gr in grads]).norm()))

        def shifted(t):
            with torch.no_grad():
                for p, d in zip(params, dirs):
                    p.add_(t * d)
            val = float(outer_loss(m, net, ss, c, chunks, q, engine).detach())
            with torch.no_grad():
                for p, d in zip(params, dirs):
                    p.sub_(t * d)
            return val
        fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
        assert abs(analytic) > 1e-8, name
        assert abs(fd - analytic) <= rtol * scale, (name, fd, analytic, scale)


# ------------------------------------------------------------------ truncation

def manual_unroll(m, net, ss, c, chunks, q, second_order_steps: set[int]):
    """Independent reference: explicit loop, grads detached outside `second_order_steps`."""
    lora = lora_parameters(m)
    names, fast = list(lora), list(lora.values())
    opt = InnerAdam(c.betas) if c.optimizer == "adam" else InnerSGD()
    state = opt.init_state(fast)
    ids, att = chunks["input_ids"], chunks["attention_mask"]
    tm = (chunks["loss_mask"][:, 1:] * att[:, 1:]).double()
    for k in range(c.steps):
        out = functional_call(m, dict(zip(names, fast)), args=(), kwargs=dict(input_ids=ids, attention_mask=att,
                                                                             output_hidden_states=True))
        w, _ = net(out.hidden_states[-1][:, :-1])
        loss = (w * tm * token_losses(out.logits, ids)).sum() / tm.sum()
        so = k in second_order_steps
        grads = torch.autograd.grad(loss, fast, create_graph=so)
        if not so:
            grads = [x.detach() for x in grads]
        fast, state = opt.step(fast, grads, ss(k), state)
    out = functional_call(m, dict(zip(names, fast)), args=(), kwargs=dict(input_ids=q))
    return out.logits.pow(2).mean()


@pytest.mark.parametrize("diff_last,first_order,expect", [(3, False, {0, 1, 2}), (1, False, {2}), (0, False, set()),
                                                          (3, True, set())])
def test_truncation_drops_exactly_the_detached_terms(diff_last, first_order, expect):
    m, net = make("qwen2", seed=5)
    c = cfg(differentiate_last=diff_last, first_order=first_order)
    ss = steps_for(m, c)
    chunks, q = data(seed=6)
    params = list(m.parameters()) + [ss.log_lr] + list(net.parameters())
    got = torch.autograd.grad(outer_loss(m, net, ss, c, chunks, q), params, allow_unused=True)
    ref = torch.autograd.grad(manual_unroll(m, net, ss, c, chunks, q, expect), params, allow_unused=True)
    flat = lambda gs: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])
    assert rel(flat(got), flat(ref)) < 1e-10
    if expect != {0, 1, 2}:  # the dropped terms were really there
        full = torch.autograd.grad(manual_unroll(m, net, ss, c, chunks, q, {0, 1, 2}), params, allow_unused=True)
        assert rel(flat(got), flat(full)) > 1e-4


def test_first_order_still_reaches_lora_init_and_step_sizes():
    m, net = make("gpt2", seed=7)
    c = cfg(first_order=True)
    ss = steps_for(m, c)
    chunks, q = data()
    loss = outer_loss(m, net, ss, c, chunks, q)
    g_lr, *g_lora = torch.autograd.grad(loss, [ss.log_lr, *lora_parameters(m).values()])
    assert (g_lr.abs() > 0).all()
    assert all(g.abs().sum() > 0 for g in g_lora)


# ------------------------------------------------------------------ test time

@pytest.mark.parametrize("engine", ["torch_func", "higher"])
def test_micro_batches_accumulate_to_the_full_batch(engine):
    m, net = make("qwen2", seed=8)
    ss = steps_for(m, cfg())
    chunks, _ = data(C=5)
    full = encode(m, chunks, cfg(micro_batch=0), ss, net, engine=engine, train=False).fast
    parts = encode(m, chunks, cfg(micro_batch=2), ss, net, engine=engine, train=False).fast
    train = encode(m, chunks, cfg(), ss, net, engine=engine, train=True).fast
    for a, b, t in zip(full, parts, train):
        assert a.grad_fn is None and torch.allclose(a, b, atol=1e-12, rtol=1e-10)
        assert torch.allclose(a, t.detach(), atol=1e-12, rtol=1e-10)


def test_encode_under_no_grad_still_adapts():
    m, net = make("gpt2", seed=9)
    ss = steps_for(m, cfg())
    chunks, _ = data()
    with torch.no_grad():
        enc = encode(m, chunks, cfg(), ss, net, train=False)
    init = list(lora_parameters(m).values())
    assert any(not torch.equal(a, b) for a, b in zip(enc.fast, init))
    assert enc.inner_losses[-1] < enc.inner_losses[0]


def test_weight_gate_drops_the_tokens_below_it():
    m, net = make("gpt2", seed=9)
    ss = steps_for(m, cfg())
    chunks, _ = data()
    init = list(lora_parameters(m).values())
    closed = encode(m, chunks, cfg(weight_gate=1e6), ss, net, train=False)  # no token reaches the gate
    assert closed.inner_losses == [0.0] * 3 and all(torch.equal(a, b) for a, b in zip(closed.fast, init))
    open_ = encode(m, chunks, cfg(weight_gate=1e-12), ss, net, train=False)  # every token above it
    plain = encode(m, chunks, cfg(), ss, net, train=False)
    assert all(torch.allclose(a, b) for a, b in zip(open_.fast, plain.fast))


# ------------------------------------------------------------------ failures

@pytest.mark.parametrize("engine", ["torch_func", "higher"])
def test_nan_in_inner_loss_is_reported_with_step_and_example(engine):
    m, net = make("qwen2")
    ss = steps_for(m, cfg())
    chunks, _ = data()
    with torch.no_grad():
        next(iter(lora_parameters(m).values()))[0, 0] = float("nan")
    with pytest.raises(InnerLoopError, match=r"loss at inner step 0 for example 'ex-7'"):
        encode(m, chunks, cfg(), ss, net, engine=engine, example_id="ex-7")


def test_inf_gradient_is_reported():
    m, net = make("gpt2")
    c = cfg(optimizer="sgd", lr_max=0.3)
    ss = steps_for(m, c)
    with torch.no_grad():
        ss.log_lr.fill_(ss.log_max)
        for p in lora_parameters(m).values():
            p.mul_(1e150)  # finite weights whose loss or gradient overflows
    with pytest.raises(InnerLoopError, match=r"non-finite inner (loss|gradient) at inner step \d+ for example 3"):
        encode(m, data()[0], c, ss, net, example_id=3)


def test_bad_inputs_raise_clear_errors():
    m, net = make("gpt2")
    ss = steps_for(m, cfg())
    chunks, _ = data()
    with pytest.raises(ValueError, match="unknown inner-loop engine 'jax'"):
        encode(m, chunks, cfg(), ss, net, engine="jax")
    with pytest.raises(ValueError, match="steps"):
        InnerConfig(steps=0)
    with pytest.raises(ValueError, match="inner steps must be >= 1"):
        LearnedStepSizes(4, 0, 1e-2, 1e-4, 1e-1)
    with pytest.raises(ValueError, match="step_sizes has 3 steps"):
        encode(m, chunks, cfg(steps=5, differentiate_last=5), ss, net)
    with pytest.raises(ValueError, match="lr_min <= lr_init <= lr_max"):
        LearnedStepSizes(4, 2, 1.0, 1e-4, 1e-1)
    plain = build_tiny_model(ModelConfig(arch="gpt2", n_layer=1, n_embd=16, n_head=2), VOCAB)
    with pytest.raises(ValueError, match="no LoRA parameters"):
        encode(plain, chunks, cfg(), ss, net)


# ------------------------------------------------------------------ gradient checkpointing

@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_grad_checkpointing_gives_the_same_meta_gradients(arch):
    """Per-layer checkpointing recomputes with the FAST weights (transformers' own would use the
    init): second-order meta-gradients and the result are unchanged, and the patch is undone."""
    m, net = make(arch)
    c = cfg(differentiate_last=2)
    ss = steps_for(m, c)
    chunks, q = data()
    plain = meta_grads(m, net, ss, c, chunks, q, "torch_func")
    ckpt = meta_grads(m, net, ss, c.model_copy(update={"grad_checkpointing": True}), chunks, q, "torch_func")
    assert plain.abs().sum() > 0 and rel(ckpt, plain) < 1e-10, rel(ckpt, plain)
    assert not any("forward" in vars(mod) for mod in m.modules())  # no instance forward left behind
    with pytest.raises(ValueError, match="torch_func"):
        encode(m, chunks, c.model_copy(update={"grad_checkpointing": True}), ss, net, engine="higher")


def test_test_time_encode_may_run_more_steps_than_learned():
    """evaluate.inner_steps: at test, steps past the meta-learned ones repeat the last learned step
    size (so the first K are the default encode's, and a step K+1 keeps writing); training may not."""
    m, net = make("gpt2")
    c = cfg(steps=3, differentiate_last=1)
    ss = steps_for(m, c)
    chunks, _ = data()
    base = encode(m, chunks, c, ss, net, train=False)
    five = c.model_copy(update={"steps": 5})
    more = encode(m, chunks, five, ss, net, train=False)
    assert len(more.inner_losses) == 5 and more.inner_losses[:3] == base.inner_losses
    assert more.inner_losses[4] < more.inner_losses[2]  # the extra steps still lower the inner loss
    # the same as step sizes learned for 5 steps whose last two equal the third
    ss5 = LearnedStepSizes(len(lora_parameters(m)), 5, c.lr_init, c.lr_min, c.lr_max).double()
    with torch.no_grad():
        ss5.log_lr.copy_(torch.cat([ss.log_lr, ss.log_lr[-1:], ss.log_lr[-1:]]))
    same = encode(m, chunks, five, ss5, net, train=False)
    for a, b in zip(more.fast, same.fast):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="step_sizes has 3 steps"):
        encode(m, chunks, five, ss, net, train=True)
