"""Checkpoints round-trip every piece of training state exactly, via safetensors + JSON only."""
import random

import numpy as np
import pytest
import torch

from perk import checkpoint


def _train_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_roundtrip_restores_training_exactly(tmp_path):
    model, opt, sched = _train_state()
    random.seed(5); np.random.seed(5); torch.manual_seed(5)
    state = {"step": 3, "model": model.state_dict(), "optim": opt.state_dict(),
             "sched": sched.state_dict(), "rng": checkpoint.rng_state(), "name": "x", "none": None}
    checkpoint.save(checkpoint.step_dir(tmp_path, 3), state)
    expected = (random.random(), float(np.random.rand()), torch.rand(2))

    model2, opt2, sched2 = _train_state()
    random.seed(0); np.random.seed(0); torch.manual_seed(0)
    loaded = checkpoint.load(checkpoint.latest(tmp_path))
    model2.load_state_dict(loaded["model"]); opt2.load_state_dict(loaded["optim"])
    sched2.load_state_dict(loaded["sched"]); checkpoint.set_rng_state(loaded["rng"])
    assert loaded["step"] == 3 and loaded["name"] == "x" and loaded["none"] is None
    assert (random.random(), float(np.random.rand())) == expected[:2]
    assert torch.equal(torch.rand(2), expected[2])
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == sched.last_epoch
    # only safetensors + json on disk: nothing to unpickle
    assert sorted(p.name for p in checkpoint.latest(tmp_path).iterdir()) == ["state.json", "tensors.safetensors"]


def test_latest_ignores_half_written_and_prune(tmp_path):
    for s in (1, 2, 3):
        checkpoint.save(checkpoint.step_dir(tmp_path, s), {"step": s})
    (tmp_path / ".step-0000004.tmpdir").mkdir()         # a save killed mid-way
    (tmp_path / "step-0000005").mkdir()                  # no state.json: incomplete
    assert checkpoint.latest(tmp_path).name == "step-0000003"
    checkpoint.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*") if (p / "state.json").exists()) == \
        ["step-0000002", "step-0000003"]
    assert not list(tmp_path.glob(".step-*"))


def test_unreadable_checkpoint_is_named(tmp_path):
    d = checkpoint.save(tmp_path / "step-0000001", {"w": torch.ones(2)})
    (d / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="step-0000001 is unreadable"):
        checkpoint.load(d)
    with pytest.raises(TypeError, match="cannot store"):
        checkpoint.save(tmp_path / "x", {"f": object()})
