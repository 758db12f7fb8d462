"""Synthesize every enabled task family into `{out_dir}/{task}/{train,val,test}.parquet`.

train/val: `n_train`/`n_val` examples spread evenly over subtasks x train_lengths, random depths.
test: the full grid eval_lengths x depths x subtasks x n_test (retrieval: its subtasks are the
positions, so its grid is eval_lengths x subtasks x n_test). Every example has its own seed,
a stable hash of (seed, task, subtask, split, length, depth, index), so splits never share seeds
and the same parameters give byte-identical files. `context_tokens` is measured by tokenizing
every chunk with the run's tokenizer, and must be within 5% of the target.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from ..config import ConfigError, SynthConfig, TaskSpec
from . import babilong, needle, records, retrieval
from .haystack import TokenCounter, approx_count, as_counter
from .io import write_examples
from .schema import SPLITS, Example

FAMILIES = {"needle": needle, "babilong": babilong, "records": records, "retrieval": retrieval}
LENGTH_TOLERANCE = 0.05


def plan(task: str, spec: TaskSpec, split: str) -> list[tuple[str, int, float | None, int]]:
    """(subtask, length, depth, n) cells for one split of one task."""
    if split == "test":
        if task == "retrieval":
            return [(s, L, None, spec.n_test) for L in spec.eval_lengths for s in spec.subtasks]
        return [(s, L, d, spec.n_test) for L in spec.eval_lengths for d in spec.depths for s in spec.subtasks]
    n = spec.n_train if split == "train" else spec.n_val
    cells = [(s, L) for L in spec.train_lengths for s in spec.subtasks]
    q, r = divmod(n, len(cells))
    return [(s, L, None, q + (i < r)) for i, (s, L) in enumerate(cells) if q + (i < r)]


def measure(examples: list[Example], counter: TokenCounter, spot_check: int = 0) -> None:
    """Set context_tokens by tokenizing every chunk (one batch).

    With `spot_check` k > 0, only k examples are re-tokenized first; if their planned counts are
    exact (true for byte-level BPE, where counts add up over sentences) the rest are trusted,
    otherwise every example is measured."""
    if spot_check and len(examples) > spot_check:
        probe = examples[:: max(1, len(examples) // spot_check)][:spot_check]
        planned = [e.context_tokens for e in probe]
        measure(probe, counter)
        if planned == [e.context_tokens for e in probe]:
            return
    chunks = [c for e in examples for c in e.context]
    counts = counter._raw(chunks) if chunks else []
    i = 0
    for e in examples:
        e.context_tokens = sum(counts[i:i + len(e.context)])
        i += len(e.context)


def _cell(task: str, spec: TaskSpec, split: str, sub: str, length: int, depth, n: int, seed: int,
          counter: TokenCounter) -> list[Example]:
    key = f"synth.tasks.{task}.{'eval_lengths' if split == 'test' else 'train_lengths'}"
    try:
        examples = FAMILIES[task].generate(spec, split, n, length, depth, seed, counter, subtask=sub)
    except ValueError as err:
        raise ConfigError(f"{key}: cannot synthesize {task}/{sub} at {length} tokens: {err}") from None
    measure(examples, counter, spot_check=2)
    for e in examples:
        if abs(e.context_tokens - length) > LENGTH_TOLERANCE * length:
            raise ConfigError(f"{key}: {task}/{sub} example {e.id} has {e.context_tokens} tokens, more than "
                              f"{LENGTH_TOLERANCE:.0%} away from the target {length}; use a longer length")
    return examples


def synthesize(cfg: SynthConfig, tokenizer, out_dir: str | Path | None = None,
               progress: bool = True) -> dict[str, Path]:
    """Write every enabled task's splits; returns {"task/split": path}."""
    from ..progress import bar as progress_bar

    out = Path(out_dir if out_dir is not None else cfg.out_dir)
    if isinstance(tokenizer, (str, Path)):  # a saved tokenizer directory or a model name
        from ..tokenizer import load_tokenizer
        tokenizer = load_tokenizer(tokenizer)
    counter = as_counter(tokenizer)
    tasks = cfg.tasks.enabled()
    plans = {(t, s): plan(t, spec, s) for t, spec in tasks.items() for s in SPLITS}
    total = sum(n for cells in plans.values() for *_, n in cells)
    written: dict[str, Path] = {}
    # a bar on a terminal, plain lines under dvc repro / CI (perk/progress.py), like every stage
    with progress_bar(total=total, desc="synth", unit="ex", enabled=progress) as bar:
        for (task, split), cells in plans.items():
            bar.set_postfix(split=f"{task}/{split}")
            examples: list[Example] = []
            for sub, length, depth, n in cells:
                examples += _cell(task, tasks[task], split, sub, length, depth, n, cfg.seed, counter)
                bar.update(n)
            written[f"{task}/{split}"] = write_examples(examples, out / task / f"{split}.parquet")
    return written


def sample_corpus(n: int, seed: int = 0, length: int = 192) -> list[str]:
    """n texts (contexts with their question and answer) from every family and split, for
    training the tiny tokenizer. Lengths use a rough count: no tokenizer exists yet."""
    from ..config import TasksConfig

    specs = TasksConfig()
    counter = TokenCounter(count=approx_count)
    rng = random.Random(seed)
    combos = [(t, s) for t in FAMILIES for s in SPLITS]
    texts: list[str] = []
    for i in range(n):
        task, split = combos[i % len(combos)]
        spec = getattr(specs, task)
        sub = spec.subtasks[(i // len(combos)) % len(spec.subtasks)]
        e = FAMILIES[task].generate(spec, split, 1, length, rng.random(), seed, counter,
                                    subtask=sub, start=i)[0]
        texts.append(" ".join(e.context) + f"\n{e.question}\n{e.answer_prefix} {e.answer}".rstrip())
    return texts


def bench_synth(tokenizer, lengths=(4096, 32768), seed: int = 0) -> list[dict]:
    """Examples/s and tokens/s per family and length (banks built before timing)."""
    from ..config import TasksConfig

    counter = as_counter(tokenizer)
    specs = TasksConfig()
    rows = []
    for task, mod in FAMILIES.items():
        spec = getattr(specs, task)
        for split in ("test",):
            mod.generate(spec, split, 1, 512, 0.5, seed, counter)  # warm the filler bank
        for length in lengths:
            n = max(2, (8 * 4096) // length)
            t0 = time.perf_counter()
            examples = []
            for i, sub in enumerate(spec.subtasks * n):
                examples += mod.generate(spec, "test", 1, length, 0.5, seed, counter, subtask=sub, start=i)
                if len(examples) >= n:
                    break
            measure(examples, counter)
            dt = time.perf_counter() - t0
            toks = sum(e.context_tokens for e in examples)
            rows.append({"task": task, "length": length, "examples": len(examples), "seconds": round(dt, 4),
                         "examples_per_s": round(len(examples) / dt, 2), "tokens_per_s": round(toks / dt)})
    return rows
