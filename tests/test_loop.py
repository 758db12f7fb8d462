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


def _diverging(tmp_path, losses, factor=10.0):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    cfg = TrainLoopConfig(steps=len(losses), checkpoint_every=2, eval_every=100, divergence_factor=factor)

    def step_fn(step):
        model(torch.ones(1, 2)).sum().backward()
        return {"loss": losses[step]}
    return loop.run({"m": model}, [{"params": list(model.parameters()), "lr": 0.1}], cfg, step_fn, tmp_path,
                    progress=False, desc="meta-train")


def test_divergence_guard_names_the_step(tmp_path):
    from perk.divergence import WINDOW, TrainingDiverged

    assert WINDOW == 10
    # the parameter's description states the windows as numbers (config.py does not import divergence.py)
    desc = TrainLoopConfig.model_fields["divergence_factor"].description
    assert f"the last {WINDOW} steps" in desc and f"the first {WINDOW} steps'" in desc
    with pytest.raises(TrainingDiverged, match=r"meta-train: loss is nan at step 4: training diverged"):
        _diverging(tmp_path / "a", [2.0, 1.5, 1.2, float("nan"), 1.0, 1.0])
    ten = [2.0, 1.0] * 5  # mean 1.5
    # a loss that stays at 20: the mean of the last ten first passes 15 at step 18 ((2 + 1 + 8 x 20) / 10)
    with pytest.raises(TrainingDiverged, match=r"loss 16\.3 \(the mean of steps 9-18\) is over 10x its start "
                                               r"\(1\.5, the mean of the first 10 steps' losses\)"):
        _diverging(tmp_path / "b", ten + [20.0] * 9)
    assert isinstance(TrainingDiverged("x"), ValueError)  # the CLI exits 2; the flow does not retry it
    _diverging(tmp_path / "c", ten + [20.0] * 9, factor=0)  # 0: the ratio check is off


def test_divergence_reference_is_not_one_lucky_step(tmp_path):
    from perk.divergence import TrainingDiverged

    # one episode per meta-train step: a lucky first loss (0.1) is not the reference; against it the
    # ordinary losses after it (1-1.8) would be over 10x (experiments/REASONING.md run Q2_4)
    episodes = [0.1, 1.5, 1.2, 1.8, 1.0, 0.4, 1.6, 1.1, 0.9, 1.3]  # mean 1.09
    _diverging(tmp_path / "a", episodes + [1.8, 1.7, 1.5])
    with pytest.raises(TrainingDiverged, match=r"the mean of steps 6-15"):  # 25 sustained: 13.0 > 10.9 at step 15
        _diverging(tmp_path / "b", episodes + [25.0] * 10)


def test_one_hard_episode_does_not_stop_a_converged_run(tmp_path):
    """A run continued from a trained model starts near 0.1; one hard episode at 1.45 (over 10x that)
    is not a divergence (experiments/FAMILIES.md run MVS5 was stopped by one); a loss that stays there is."""
    from perk.divergence import TrainingDiverged

    converged = [0.12, 0.05, 0.2, 0.1, 0.08, 0.15, 0.11, 0.13, 0.1, 0.14]  # mean 0.118
    _diverging(tmp_path / "a", converged + [0.1, 1.45, 0.2, 0.05, 0.3])
    with pytest.raises(TrainingDiverged, match="is over 10x its start"):
        _diverging(tmp_path / "b", converged + [1.45] * 12)


def test_divergence_reference_survives_a_resume(tmp_path):
    from perk.divergence import TrainingDiverged

    losses = [2.0, 3.0, 1.0, 1.0, 2.0, 3.0, 1.0, 1.0, 2.0, 3.0, 1.0, 1.0] + [40.0] * 6  # first ten: mean 1.9
    with pytest.raises(TrainingDiverged, match="at step 5"):  # killed inside the window (checkpoint at step 4)
        _diverging(tmp_path, losses[:4] + [float("inf")] + losses[5:])
    # resumed from the step-4 checkpoint: its losses are kept and both windows fill as uninterrupted
    # ones do; steps 8-17 hold 1, 2, 3, 1, 1 and five 40s: 20.8 > 19, the first window over the bound
    with pytest.raises(TrainingDiverged, match=r"loss 20\.8 \(the mean of steps 8-17\) is over 10x its start \(1\.9,"):
        _diverging(tmp_path, losses)


def test_divergence_guard_reads_an_older_checkpoint():
    from perk.divergence import DivergenceGuard

    guard = DivergenceGuard("t", 10.0)
    guard.restore(0.5)  # checkpoints before the window saved the first step's loss as a float
    assert guard.start == 0.5 and len(guard.state()["first"]) == 10 and guard.state()["recent"] == []
    guard.restore([1.0, 3.0])  # then the first window alone
    assert guard.start == 2.0 and guard.state() == {"first": [1.0, 3.0], "recent": []}
    guard.restore({"first": [1.0] * 10, "recent": [2.0, 4.0]})
    assert guard.start == 1.0 and guard.state()["recent"] == [2.0, 4.0]
