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


BENCHES = {"synth": bench_synth}


def run_bench(what: str, p, args) -> None:
    BENCHES[what](p, args)
