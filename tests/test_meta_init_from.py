"""meta_train.init_from: a curriculum's second stage starts from an earlier meta-train's artifacts."""
import pytest
import torch

from perk.config import Params
from perk.stages import meta_train as stage


def _params(tmp_path, **meta):
    return Params.model_validate({"model": {"n_embd": 32, "n_head": 2}, "pretrain": {"out_dir": str(tmp_path / "pre")},
                                  "meta_train": {"out_dir": str(tmp_path / "mt"), **meta}})


def test_init_from_loads_the_earlier_artifacts_and_enters_the_fingerprint(tmp_path, tiny_tokenizer):
    p = _params(tmp_path)
    torch.manual_seed(0)
    first = stage._bundle(p, tiny_tokenizer)
    with torch.no_grad():  # stands for what a first curriculum stage learned
        for t in first.parameters():
            if t.requires_grad:
                t.add_(torch.randn_like(t))
    saved = first.save(tmp_path / "stage1.safetensors")
    fresh = stage._bundle(p, tiny_tokenizer)
    second = stage._bundle(_params(tmp_path, init_from=str(saved)), tiny_tokenizer)
    trained = {n: t for n, t in first.named_parameters() if t.requires_grad}
    got = dict(second.named_parameters())
    assert trained and all(torch.equal(got[n], t) for n, t in trained.items())
    assert not all(torch.equal(dict(fresh.named_parameters())[n], t) for n, t in trained.items())
    # a checkpoint of a run from another init must not resume this one
    assert stage.fingerprint(p) != stage.fingerprint(_params(tmp_path, init_from=str(saved)))


def test_init_from_a_missing_file_names_it(tmp_path, tiny_tokenizer):
    with pytest.raises(FileNotFoundError, match="meta_train.init_from: no such file .*nope.safetensors"):
        stage._bundle(_params(tmp_path, init_from=str(tmp_path / "nope.safetensors")), tiny_tokenizer)
