"""inner.recency: the weighting net's meta-learned recency scale exp(b * x) on the inner loss.

Pinned against a hand-written weighting (the same factor applied by a wrapper net), across
micro-batches, with b = 0 equal to no recency at all, and b's meta-gradient checked by finite
differences (float64 tiny models, as tests/test_inner_loop.py)."""
from __future__ import annotations

import math

import torch
from torch import nn

from perk.meta import encode
from tests.test_inner_loop import H, cfg, data, make, steps_for


class HandWeighted(nn.Module):
    """The plain net's weights times exp(5 b x), x = (chunk + j / T) / C, written out by hand."""

    def __init__(self, net, b: float, C: int, T: int):
        super().__init__()
        self.net, self.C, self.T = net, C, T
        x = torch.tensor([[(c + j / T) / C for j in range(1, T)] for c in range(C)], dtype=torch.float64)
        self.factor = torch.exp(5.0 * b * x)
        self.next = 0

    def forward(self, hidden):
        w, logits = self.net(hidden)
        n = hidden.shape[0]
        f = self.factor[self.next:self.next + n]
        self.next = (self.next + n) % self.C  # micro-batches arrive in chunk order, every step
        return w * f, logits


def recency_net(net, b: float):
    from perk.model import TokenWeightNet
    r = TokenWeightNet(H, recency=True).double()
    r.load_state_dict(net.state_dict(), strict=False)  # the same fc1/fc2, recency stays 0 ...
    with torch.no_grad():
        r.recency.fill_(b)                              # ... until set here
    return r


def fast_of(m, net, c, chunks, ss):
    return [p.detach() for p in encode(m, chunks, c, ss, net, train=False).fast]


def test_zero_recency_is_no_recency():
    m, net = make("qwen2")
    c = cfg()
    ss = steps_for(m, c)
    chunks, _ = data(C=4)
    a = fast_of(m, net, c, chunks, ss)
    b = fast_of(m, recency_net(net, 0.0), c, chunks, ss)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_recency_matches_hand_weighting_in_every_micro_batch():
    m, net = make("qwen2")
    chunks, _ = data(C=4, T=9)
    for mb in (0, 1, 3):  # all chunks at once, one at a time, a partial last micro-batch
        c = cfg(micro_batch=mb)
        ss = steps_for(m, c)
        want = fast_of(m, HandWeighted(net, 0.3, 4, 9), c, chunks, ss)
        got = fast_of(m, recency_net(net, 0.3), c, chunks, ss)
        assert all(torch.allclose(x, y, rtol=1e-10, atol=1e-12) for x, y in zip(got, want)), mb
        plain = fast_of(m, net, c, chunks, ss)
        assert not all(torch.allclose(x, y) for x, y in zip(got, plain))  # the factor did change the write


def test_recency_factor_spans_the_context():
    from perk.model import TokenWeightNet
    net = TokenWeightNet(H, recency=True).double()
    with torch.no_grad():
        net.recency.fill_(0.2)  # b = 1
    f = net.recency_factor(0, 4, 4, 8).detach()
    assert f.shape == (4, 7)
    assert math.isclose(float(f[0, 0]), math.exp((1 / 8) / 4))
    assert math.isclose(float(f[-1, -1]), math.exp((3 + 7 / 8) / 4))
    assert bool((f.flatten()[1:] > f.flatten()[:-1]).all())  # later tokens weigh more for b > 0
    assert TokenWeightNet(H).recency_factor(0, 4, 4, 8) is None


def test_recency_meta_gradient_matches_finite_differences():
    # gpt2: float64 throughout (qwen2's attention computes in float32; see test_inner_loop's FD test)
    m, net = make("gpt2")
    c = cfg()
    ss = steps_for(m, c)
    chunks, q = data(C=3)
    r = recency_net(net, 0.1)

    def loss():
        return encode(m, chunks, c, ss, r).forward(input_ids=q).logits.pow(2).mean()

    (g,) = torch.autograd.grad(loss(), [r.recency])
    eps = 1e-6
    with torch.no_grad():
        r.recency.add_(eps)
        up = loss()
        r.recency.sub_(2 * eps)
        down = loss()
    fd = (up - down) / (2 * eps)
    assert abs(float(g)) > 1e-8
    assert math.isclose(float(g), float(fd), rel_tol=1e-5), (float(g), float(fd))


def test_bundle_loads_artifacts_saved_without_recency(tmp_path):
    from perk.bundle import PerkBundle
    from perk.config import load_params
    from perk.tokenizer import byte_tokenizer
    tok = byte_tokenizer()
    p = load_params("params.yaml", [])
    plain = PerkBundle(p, tok)
    path = plain.save(tmp_path / "perk.safetensors")
    p2 = load_params("params.yaml", ["inner.recency=true"])
    rec = PerkBundle(p2, tok)
    rec.load(path)
    assert float(rec.weight_net.recency.detach()) == 0.0
    assert torch.equal(rec.weight_net.fc1.weight, plain.weight_net.fc1.weight)
