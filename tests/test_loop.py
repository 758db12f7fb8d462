"""The shared outer loop: an interrupted run resumes to exactly the uninterrupted result."""
import pytest
import torch

from perk import loop
from perk.config import TrainLoopConfig

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
Y = X @ torch.randn(6, 1, generator=torch.Generator().manual_seed(1))


class Crash(Exception):
    pass


def _train(ckpt, crash_at=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    cfg = TrainLoopConfig(steps=12, batch_size=8, lr=1e-2, warmup=3, checkpoint_every=4, eval_every=6)

    def step_fn(step):
        if step == crash_at:
            raise Crash()
        idx = loop.batch_indices(0, step, len(X), cfg.batch_size)
        loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])  # dropout: RNG state matters
        loss.backward()
        return {"loss": float(loss.detach())}
    last = loop.run({"model": model}, [{"params": list(model.parameters()), "lr": cfg.lr}], cfg, step_fn,
                    ckpt, eval_fn=lambda: {"val": float(model[0].weight.sum())}, progress=False)
    return model, last


def test_resume_matches_uninterrupted(tmp_path):
    ref, ref_last = _train(tmp_path / "a")
    with pytest.raises(Crash):
        _train(tmp_path / "b", crash_at=9)       # dies after the step-8 checkpoint
    resumed, last = _train(tmp_path / "b")
    for p, q in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    timing = {"step_time_s"}
    assert {k: v for k, v in last.items() if k not in timing} == \
        pytest.approx({k: v for k, v in ref_last.items() if k not in timing})
    # rerunning a finished run changes nothing
    again, _ = _train(tmp_path / "b")
    assert all(torch.equal(p, q) for p, q in zip(ref.parameters(), again.parameters()))


def test_warmup_cosine_shape():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.warmup_cosine(opt, warmup=2, total=10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step(); sched.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[-1] < 0.05
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_warmup_cosine_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = loop.warmup_cosine(opt, warmup=0, total=10, min_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(sched.get_last_lr()[0])
        opt.step(); sched.step()
    assert lrs[0] == 2.0 and abs(lrs[5] - 1.1) < 1e-9 and lrs[10] == lrs[11] == 0.2


def test_checkpoints_of_other_inputs_are_not_resumed(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    cfg = TrainLoopConfig(steps=2, checkpoint_every=1, eval_every=10)

    def step_fn(step):
        model(torch.ones(1, 2)).sum().backward()
        return {"loss": 0.0}
    loop.run({"m": model}, [{"params": list(model.parameters()), "lr": 0.1}], cfg, step_fn, tmp_path,
             progress=False, fingerprint="a")
    calls = []
    loop.run({"m": model}, [{"params": list(model.parameters()), "lr": 0.1}], cfg,
             lambda s: calls.append(s) or step_fn(s), tmp_path, progress=False, fingerprint="b")
    assert calls == [0, 1], "a run with other inputs must start from step 0"
    assert "other params/data" in capsys.readouterr().out
