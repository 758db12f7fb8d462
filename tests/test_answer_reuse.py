"""Work the answerers share between questions is exact: a cached encode or a cached context
prefill gives the answers a fresh one gives, and is actually reused."""
import torch

from perk.config import load_params

from test_pretrain import MICRO


def noisy_micro_bundle(tmp_path, tiny_tokenizer):
    """(params, an untrained PERK bundle with noised weights, the micro test rows of its task)."""
    from perk.bundle import PerkBundle
    from perk.data.synth import synthesize
    from perk.stages.common import rows

    torch.manual_seed(0)
    torch.set_num_threads(1)
    p = load_params(MICRO, [f"synth.out_dir={tmp_path}/synth"])
    synthesize(p.synth, tiny_tokenizer, p.synth.out_dir, progress=False)
    test = rows(p, p.meta_train.task, "test")
    bundle = PerkBundle(p, tiny_tokenizer).eval()
    with torch.no_grad():  # a non-trivial model, so answers vary with the prompt
        for t in bundle.lm.parameters():
            t.add_(0.05 * torch.randn_like(t))
    return p, bundle, test


def test_prompt_answers_with_a_shared_context_prefill_equal_fresh_ones(tmp_path, tiny_tokenizer):
    from perk.evaluate import prompt_answerer
    from perk.prompts import context_prompt, greedy_answer

    _, bundle, test = noisy_micro_bundle(tmp_path, tiny_tokenizer)
    lm = bundle.lm
    # siblings: the questions of one context asked one after the other, as capacity asks every key
    rows = [dict(r, question=q["question"], answer_prefix=q.get("answer_prefix", "")) for r in test[:2] for q in test[:4]]
    answer = prompt_answerer(lm, tiny_tokenizer, 10**6, 4)
    calls = []
    real_forward = lm.forward

    def counting_forward(*a, **k):
        ids = k.get("input_ids", a[0] if a else None)
        calls.append(ids.shape[1])
        return real_forward(*a, **k)
    lm.forward = counting_forward
    shared = [answer(r) for r in rows]
    lm.forward = real_forward
    fresh = [(greedy_answer(lm, tiny_tokenizer, context_prompt(r), 4), "ok") for r in rows]
    assert shared == fresh and len({a for a, _ in fresh}) > 1
    longest = max(len(tiny_tokenizer(context_prompt(r), add_special_tokens=False)["input_ids"]) for r in rows)
    long_passes = [n for n in calls if n > longest // 2]
    assert len(long_passes) == 2, f"one context prefill per context expected, got passes of {calls}"


def test_wrong_context_reuses_the_donor_encode(tmp_path, tiny_tokenizer):
    from perk.controls import wrong_context_rows
    from perk.evaluate import Encodes, perk_answerer

    p, bundle, test = noisy_micro_bundle(tmp_path, tiny_tokenizer)
    donors = wrong_context_rows(test)
    assert donors, "micro test rows should have a wrong-context donor"
    shared = Encodes(bundle, tiny_tokenizer, micro_batch=2, max_bytes=1 << 29)
    own = perk_answerer(bundle, tiny_tokenizer, 3, encodes=shared)
    wrong = perk_answerer(bundle, tiny_tokenizer, 3, context_of=lambda r: donors.get(r["id"]), encodes=shared)
    got = [own(r) for r in test] + [wrong(r) for r in test]
    assert shared.encoded == len({tuple(r["context"]) for r in test})  # the control encoded nothing new
    alone = Encodes(bundle, tiny_tokenizer, micro_batch=2)  # keeps one context: encodes again
    again = [perk_answerer(bundle, tiny_tokenizer, 3, encodes=alone)(r) for r in test]
    again += [perk_answerer(bundle, tiny_tokenizer, 3, context_of=lambda r: donors.get(r["id"]), encodes=alone)(r)
              for r in test]
    assert got == again and alone.encoded > shared.encoded


def test_encodes_run_the_test_time_inner_steps(tmp_path, tiny_tokenizer):
    """evaluate.inner_steps reaches the encode: Encodes(steps=N) gives the bundle's N-step encode,
    not the meta-trained K-step one."""
    from perk.evaluate import Encodes
    from perk.meta import chunk_batch

    p, bundle, test = noisy_micro_bundle(tmp_path, tiny_tokenizer)
    ctx = list(test[0]["context"])
    k = p.inner.steps
    chunks = chunk_batch(tiny_tokenizer, ctx)
    want = {n: t.detach() for n, t in bundle.encode(chunks, train=False, micro_batch=2, steps=k + 3).as_dict().items()}
    got = Encodes(bundle, tiny_tokenizer, micro_batch=2, steps=k + 3)(ctx)
    default = Encodes(bundle, tiny_tokenizer, micro_batch=2)(ctx)
    assert all(torch.equal(got[n], want[n]) for n in want)
    assert any(not torch.equal(got[n], default[n]) for n in want)
