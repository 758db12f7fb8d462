"""`perk bench ...`: benchmarks that print figures (targets live here, not in timed tests)."""
from __future__ import annotations


def bench_synth(p, args) -> None:
    from .data.synth import bench_synth as measure
    from .tokenizer import load_tokenizer

    lengths = tuple(int(x) for x in args.lengths.split(","))
    rows = measure(load_tokenizer(p.tokenizer.out_dir), lengths=lengths)
    print(f"{'task':<10} {'tokens':>7} {'examples/s':>11} {'tokens/s':>11}")
    for r in rows:
        print(f"{r['task']:<10} {r['length']:>7} {r['examples_per_s']:>11.2f} {r['tokens_per_s']:>11.0f}")


def _synthetic_episode(vocab: int, n_chunks: int, chunk_tokens: int, n_questions: int = 4):
    """Random tokens of the right shapes: step cost does not depend on the text."""
    import torch

    from .meta.trainer import Episode

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (n_chunks, chunk_tokens), generator=g)
    ones = torch.ones_like(ids)
    support = torch.zeros_like(ids)
    support[:, chunk_tokens // 2] = 1
    q = torch.randint(3, vocab, (n_questions, 24), generator=g)
    labels = torch.full_like(q, -100)
    labels[:, -2:] = q[:, -2:]
    return Episode("bench", {"input_ids": ids, "attention_mask": ones, "loss_mask": ones, "support_mask": support},
                   {"input_ids": q, "attention_mask": torch.ones_like(q), "labels": labels})


def bench_meta_step(p, args) -> None:
    """Time per outer step and peak memory, both inner-loop engines, tiny and a larger config."""
    import statistics
    import time

    import torch

    from .bundle import PerkBundle
    from .memory import peak_memory
    from .meta.trainer import episode_forward
    from .stages import device
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(p.tokenizer.out_dir)
    dev = device()
    sizes = {"tiny": {}, "larger": {"n_layer": 4, "n_embd": 256, "n_head": 8}}
    chunk = getattr(p.synth.tasks, p.meta_train.task.split("/")[0]).chunk_tokens
    n_chunks = max(1, args.length // chunk)
    print(f"meta-step benchmark on {dev.type}: {n_chunks} chunks x {chunk} tokens, K={p.inner.steps} "
          f"({p.inner.differentiate_last} differentiated), {args.repeats} steps after 1 warm-up")
    print(f"{'config':<8} {'engine':<11} {'params':>9} {'s/step':>8} {'spread':>15} {'peak MiB':>9}")
    for name, over in sizes.items():
        for engine in ("torch_func", "higher"):
            q = p.model_copy(update={"model": p.model.model_copy(update=over),
                                     "inner": p.inner.model_copy(update={"engine": engine})})
            torch.manual_seed(0)
            bundle = PerkBundle(q, tok).to(dev).train()
            ep = _synthetic_episode(len(tok), n_chunks, chunk)
            times, peak_max = [], 0.0
            for i in range(args.repeats + 1):
                with peak_memory(dev) as peak:
                    t0 = time.perf_counter()
                    loss, _, bce, _ = episode_forward(bundle, ep, train=True, aux=True)
                    (loss + (bce if bce is not None else 0)).backward()
                    bundle.zero_grad(set_to_none=True)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                if i:  # the first step is a warm-up
                    times.append(dt)
                    peak_max = max(peak_max, peak.mib)
            n = sum(x.numel() for x in bundle.parameters())
            print(f"{name:<8} {engine:<11} {n:>9,} {statistics.median(times):>8.3f} "
                  f"{min(times):>7.3f}-{max(times):<7.3f} {peak_max:>9.1f}", flush=True)


BENCHES = {"synth": bench_synth, "meta-step": bench_meta_step}


def run_bench(what: str, p, args) -> None:
    BENCHES[what](p, args)
