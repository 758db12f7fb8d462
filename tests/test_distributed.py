"""Data parallelism (perk/distributed.py): 2 gloo processes with one episode each take the same
outer step as 1 process with both episodes (float64, so only summation order differs)."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from perk import distributed, loop
from perk.config import load_params

MICRO = os.path.join(os.path.dirname(__file__), "micro_params.yaml")
STEPS = 2


def _params(tmp, batch_size):
    return load_params(MICRO, [f"synth.out_dir={tmp}/synth", "model.dtype=float64", f"meta_train.batch_size={batch_size}",
                               f"meta_train.steps={STEPS}", "meta_train.grad_clip=1e9", "meta_train.warmup=0"])


def _train(tmp, tok_dir, batch_size, tag):
    """Meta-train STEPS steps; returns the (averaged) gradients of every step and the final weights."""
    from perk.bundle import PerkBundle
    from perk.meta.trainer import make_episodes, outer_loop
    from perk.stages.common import rows
    from perk.tokenizer import load_tokenizer

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    p = _params(tmp, batch_size)
    tok = load_tokenizer(tok_dir)
    eps = make_episodes(rows(p, p.meta_train.task, "train"), tok)
    torch.manual_seed(0)
    bundle = PerkBundle(p, tok)
    grads, average = [], distributed.average_gradients

    def spy(groups):
        average(groups)
        grads.append([p.grad.clone() if p.grad is not None else None for g in groups for p in g["params"]])
    distributed.average_gradients = spy
    try:
        outer_loop(bundle, p.meta_train, eps, [], p.seed, progress=False, ckpt_dir=f"{tmp}/ckpt-{tag}")
    finally:
        distributed.average_gradients = average
    return grads, {k: v.detach().clone() for k, v in bundle.state_dict().items()}


def _worker(rank, world, port, tmp, tok_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    assert distributed.init() and distributed.world_size() == world and distributed.rank() == rank
    grads, state = _train(tmp, tok_dir, 1, f"ddp{rank}")
    torch.save({"grads": grads, "state": state}, f"{tmp}/rank{rank}.pt")
    distributed.finish()


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory, tiny_tokenizer_dir):
    from perk.data.synth import synthesize
    from perk.tokenizer import load_tokenizer

    tmp = tmp_path_factory.mktemp("ddp")
    p = _params(tmp, 1)
    synthesize(p.synth, load_tokenizer(tiny_tokenizer_dir), p.synth.out_dir, progress=False)
    return tmp, tiny_tokenizer_dir


def test_shard_indices_without_torchrun_is_the_whole_batch():
    assert distributed.world_size() == 1 and distributed.is_main() and not distributed.init()
    idx = loop.batch_indices(0, 3, 100, 4)
    assert distributed.shard_indices(idx) == idx


def test_two_gloo_ranks_match_one_process_with_both_episodes(micro_data):
    tmp, tok_dir = micro_data
    # the two ranks' slices of each step are distinct episodes (else this test proves little)
    assert all(len(set(loop.batch_indices(0, s, 6, 2))) == 2 for s in range(STEPS))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp), str(tok_dir)), nprocs=2, join=True)
    default = torch.get_default_dtype()
    try:
        ref_grads, ref_state = _train(tmp, tok_dir, 2, "single")
    finally:
        torch.set_default_dtype(default)
    ranks = [torch.load(f"{tmp}/rank{r}.pt") for r in range(2)]
    assert len(ref_grads) == STEPS
    for r in ranks:
        assert len(r["grads"]) == STEPS
        for step, (got, ref) in enumerate(zip(r["grads"], ref_grads)):
            assert len(got) == len(ref)
            for g, e in zip(got, ref):
                assert (g is None) == (e is None) or (e is None and not g.any())
                if e is not None:
                    torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12, msg=f"step {step}")
        for k, v in ref_state.items():  # same averaged gradients -> same weights on every rank
            torch.testing.assert_close(r["state"][k], v, rtol=1e-9, atol=1e-12, msg=k)
    # only rank 0 wrote checkpoints
    assert list((tmp / "ckpt-ddp0").glob("step-*")) and not (tmp / "ckpt-ddp1").exists()
