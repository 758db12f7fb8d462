"""`perk bench ...`: benchmarks that print figures (targets live here, not in timed tests)."""
from __future__ import annotations


def bench_synth(p, args) -> None:
    from .data.synth import bench_synth as measure
    from .tokenizer import load_tokenizer

    lengths = tuple(int(x) for x in (args.lengths or "4096,32768").split(","))
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


# "larger": the shape the issue measured memory growth on (6 layers x 256, 8 heads)
META_STEP_SIZES = {"tiny": {}, "larger": {"n_layer": 6, "n_embd": 256, "n_head": 8}}
META_STEP_METHODS = ("full", "bounded")
POINT_TIMEOUT_S = 3600


def bench_meta_step(p, args) -> None:
    """Time per outer step and peak memory, full-graph vs memory-bounded inner loop (torch_func),
    on the tiny and a larger config, over context lengths; each point in its own process."""
    import torch

    from .bundle import PerkBundle
    from .profile import METHOD_META_STEP, run_point
    from .stages.common import device
    from .tokenizer import load_tokenizer

    dev = device()
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else [args.length]
    configs = args.configs.split(",")
    unknown = set(configs) - set(META_STEP_SIZES)
    if unknown:
        raise ValueError(f"--configs: unknown {sorted(unknown)}; choose from {sorted(META_STEP_SIZES)}")
    chunk = getattr(p.synth.tasks, p.meta_train.task.split("/")[0]).chunk_tokens
    mb = args.micro_batch or p.inner.micro_batch or 4
    # the full graph is today's path as configured; the bounded one differs only in these two keys
    inner = {"full": {"engine": "torch_func"},
             "bounded": {"engine": "torch_func", "bounded_memory": True, "micro_batch": mb}}
    threads = torch.get_num_threads()
    tok = load_tokenizer(p.tokenizer.out_dir)
    print(f"meta-step benchmark on {dev.type}, {threads} thread(s): {chunk}-token chunks, K={p.inner.steps} "
          f"({p.inner.differentiate_last} differentiated), {p.inner.optimizer}, weighting {p.inner.weighting}; "
          f"full graph micro-batch {p.inner.micro_batch or 'all'}, bounded micro-batch {mb}; "
          f"median of {args.repeats} steps after 1 warm-up, each point in its own process")
    print("| config | params | tokens | full s/step | full peak MiB | bounded s/step | bounded peak MiB "
          "| time bounded/full | peak bounded/full |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in configs:
        max_pos = max(p.model.max_positions, max(lengths))
        model = p.model.model_copy(update={**META_STEP_SIZES[name], "max_positions": max_pos})
        bounded_peaks = {}
        n = sum(x.numel() for x in PerkBundle(p.model_copy(update={"model": model}), tok).parameters())
        for L in lengths:
            res = {}
            for m in META_STEP_METHODS:
                q = p.model_copy(update={"model": model, "inner": p.inner.model_copy(update=inner[m])})
                # perk.profile's meta_step workload: one outer step (encode + answer + support BCE + backward)
                spec = {"params": q.model_dump(mode="json"), "device": str(dev), "tokenizer": p.tokenizer.out_dir,
                        "artifacts": None, "chunk_tokens": chunk, "warmup": 1, "repeats": args.repeats,
                        "threads": threads, "method": METHOD_META_STEP, "length": L,
                        "memory_limit_mb": args.memory_limit_mb}
                res[m] = {**run_point(spec, POINT_TIMEOUT_S), "method": m}
            f, b = res["full"], res["bounded"]

            def cell(r, key, fmt):
                return format(r[key], fmt) if r["status"] == "ok" else r["status"]
            both = f["status"] == b["status"] == "ok"
            if b["status"] == "ok":
                bounded_peaks[L] = b["peak_mib"]
            ratio = (lambda key: f"{b[key] / f[key]:.2f}x") if both else (lambda key: "-")
            print(f"| {name} | {n:,} | {L} | {cell(f, 'seconds', '.2f')} | {cell(f, 'peak_mib', '.0f')} "
                  f"| {cell(b, 'seconds', '.2f')} | {cell(b, 'peak_mib', '.0f')} "
                  f"| {ratio('seconds')} | {ratio('peak_mib')} |", flush=True)
            for r in (f, b):
                if r["status"] != "ok":
                    print(f"  {name} {r['method']} {L}: {r['status']}: {r.get('error', '')}", flush=True)
        if len(bounded_peaks) >= 2:
            lo, hi = min(bounded_peaks), max(bounded_peaks)
            print(f"{name}: bounded peak at {hi} tokens = {bounded_peaks[hi] / bounded_peaks[lo]:.2f}x "
                  f"that at {lo}", flush=True)


def bench_import(p, args) -> None:
    """Seconds to import one RULER file (parse, chunk, count, length check, write), cold counter."""
    import tempfile
    import time
    from pathlib import Path

    from .config import ImportDataset
    from .data.haystack import as_counter
    from .data.imports import import_file, write_rows
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(p.tokenizer.out_dir)
    ds = ImportDataset(name="ruler/bench", format="ruler", chunk_tokens=args.chunk_tokens,
                       files={"test": [{"path": args.file}]})
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rows, rep = import_file(ds, ds.files["test"][0], "test", as_counter(tok))  # fresh memo each time
        with tempfile.TemporaryDirectory() as d:
            write_rows(rows, Path(d) / "test.parquet")
        times.append(time.perf_counter() - t0)
    toks = sum(r["context_tokens"] for r in rows)
    print(f"import {args.file}: {rep.imported} records, {toks} context tokens ({toks // max(1, len(rows))} per record, "
          f"run tokenizer), chunk_tokens {args.chunk_tokens}")
    print(f"seconds: best {min(times):.3f}, median {sorted(times)[len(times) // 2]:.3f} of {len(times)}; "
          f"{rep.imported / min(times):.0f} records/s, {toks / min(times):,.0f} tokens/s")


BENCHES = {"synth": bench_synth, "meta-step": bench_meta_step, "import": bench_import}


def run_bench(what: str, p, args) -> None:
    BENCHES[what](p, args)
