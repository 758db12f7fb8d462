"""In-context recall text: training keys only, every fact asked and answered, the answer mask on
the answered values, a function of (seed, step), short-to-long ramp; and the copy-friendly init."""
from __future__ import annotations

import re

import torch

from perk.data import needle
from perk.data.lexicon import pool
from perk.meta.recall_text import RecallText

_FACT = re.compile(needle.NEEDLE.replace(".", r"\.").replace("{key}", r"(\S+)").replace("{value}", r"(\S+)"))
_ANSWER = re.compile(re.escape(needle.PREFIX).replace(r"\{key\}", r"(\S+)") + r" (\S+)")


def test_facts_are_asked_and_answered_with_training_keys(tiny_tokenizer):
    rt = RecallText(tiny_tokenizer, seed=1, batch=3, length=128, facts=3)
    for step in range(5):
        text, spans = rt.sample(__import__("random").Random(step), 128)
        facts, answers = _FACT.findall(text), _ANSWER.findall(text)
        assert sorted(facts) == sorted(answers) and len(facts) == 3
        assert {k for k, _ in facts} <= set(pool("key", "train"))
        assert [text[a:b] for a, b in spans] == [v for _, v in answers]


def test_answer_mask_marks_the_answered_values_and_text_is_a_function_of_step(tiny_tokenizer):
    rt = RecallText(tiny_tokenizer, seed=2, batch=2, length=96, facts=2)
    ids, real, ans = rt.batch_at(4)
    assert ans.sum() >= 2 * 2 and (ans <= real).all()
    texts = [tiny_tokenizer.decode(ids[b, 1:][ans[b] > 0]) for b in range(ids.shape[0])]
    assert all(t.strip() for t in texts)
    again = RecallText(tiny_tokenizer, seed=2, batch=2, length=96, facts=2).batch_at(4)[0]
    assert torch.equal(ids, again) and not torch.equal(ids, rt.batch_at(5)[0])


def test_ramp_holds_then_grows_with_about_constant_tokens(tiny_tokenizer):
    rt = RecallText(tiny_tokenizer, batch=2, length=256, min_length=16, hold_steps=3, ramp_steps=10, facts=2)
    assert [rt.haystack_tokens(s) for s in (0, 2, 3, 8, 13, 50)] == [16, 16, 16, 136, 256, 256]
    assert rt.batch_size(0) > rt.batch_size(8) > rt.batch_size(13) == 2


def test_copy_init_is_an_identity_value_path_and_head_starts_as_the_code(tiny_tokenizer):
    from perk.config import ModelConfig
    from perk.model import load_model
    m = load_model(ModelConfig(head_init="code", copy_init=True), tiny_tokenizer)
    att = m.model.layers[1].self_attn
    eye = torch.eye(att.v_proj.weight.shape[0])
    assert torch.equal(att.v_proj.weight, eye) and torch.equal(att.o_proj.weight, eye)
    assert not torch.equal(m.model.layers[0].self_attn.v_proj.weight, eye)  # the local layer keeps its init
    assert torch.equal(m.get_output_embeddings().weight, m.get_input_embeddings().weight)
    assert m.get_output_embeddings().weight.requires_grad and not m.get_input_embeddings().weight.requires_grad
