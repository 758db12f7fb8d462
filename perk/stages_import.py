"""The import stage: benchmark files -> {imports.out_dir}/{family}/{subset}/{split}.parquet.

Kept apart from perk/stages.py so it can be registered there (STAGES["import"]) without
touching the training stages. Token counts and chunking use the run's tokenizer, so the
tokenizer stage runs first.
"""
from __future__ import annotations

from pathlib import Path

from .config import ConfigError, Params


def import_benchmarks(p: Params, progress: bool = True, only: list[str] | None = None) -> dict[str, Path]:
    """Import every enabled `imports.datasets` entry (or just `only`); prints each file's report."""
    import json
    import time

    from .data.imports import import_dataset
    from .data.io import atomic_write_bytes
    from .tokenizer import load_tokenizer

    names = {d.name for d in p.imports.datasets}
    unknown = sorted(set(only or ()) - names)
    if unknown:
        raise ConfigError(f"imports: unknown dataset(s) {unknown}; imports.datasets has {sorted(names)}")
    chosen = [d for d in p.imports.datasets if (d.name in only if only else d.enabled)]
    if not chosen:
        raise ConfigError("imports: no dataset enabled (imports.datasets[*].enabled)")
    tok = load_tokenizer(p.tokenizer.out_dir)
    written: dict[str, Path] = {}
    index = {}
    for ds in chosen:
        t0 = time.perf_counter()
        out, reports = import_dataset(ds, tok, p.imports.out_dir)
        written.update(out)
        index[ds.name] = {"splits": {k.rsplit("/", 1)[1]: str(v) for k, v in out.items()},
                          "rows": sum(r.imported for r in reports), "skipped": sum(r.n_skipped for r in reports),
                          "seconds": round(time.perf_counter() - t0, 3)}
        if progress or any(r.n_skipped or r.notes for r in reports):  # skips are never silent
            for r in reports:
                print(f"import {ds.name}: {r.summary()}")
    if not only:  # a partial import leaves the other datasets' entries as they were
        atomic_write_bytes(Path(p.imports.out_dir) / "index.json",
                           lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n"))
    return written
