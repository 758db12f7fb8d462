"""Stage `import`: benchmark files (RULER, BABILong, reference-PERK) -> Parquet tasks.

Writes {imports.out_dir}/{family}/{subset}/{split}.parquet + report.json per dataset and
index.json. Token counts and chunking use the run's tokenizer, so the tokenizer stage runs first.
To register: ORDER["import"] = ("imports", ...) in perk/stages/__init__.py, a dvc.yaml stage
`import` (cmd `perk import`) and a deployment perk/import.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, Params
from . import Stage, common


def import_benchmarks(p: Params, progress: bool = True) -> dict[str, Path]:
    """Import every enabled imports.datasets entry; prints each file's report (skips always)."""
    import json
    import time

    from ..data.imports import import_dataset
    from ..data.io import atomic_write_bytes

    chosen = [d for d in p.imports.datasets if d.enabled]
    if not chosen:
        raise ConfigError("imports: no dataset enabled (imports.datasets[*].enabled)")
    tok = common.tokenizer(p)
    index_path = Path(p.imports.out_dir) / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index = {k: v for k, v in index.items() if p.imports.get(k) is not None}  # datasets no longer configured
    written: dict[str, Path] = {}
    for ds in chosen:
        t0 = time.perf_counter()
        out, reports = import_dataset(ds, tok, p.imports.out_dir)
        written.update(out)
        index[ds.name] = {"splits": {k.rsplit("/", 1)[1]: str(v) for k, v in out.items()},
                          "rows": sum(r.imported for r in reports), "skipped": sum(r.n_skipped for r in reports),
                          "seconds": round(time.perf_counter() - t0, 3)}
        for r in reports:
            if progress or r.n_skipped or r.notes:  # a skip is never silent
                print(f"import {ds.name}: {r.summary()}")
    atomic_write_bytes(index_path, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n"))
    return written


def select(p: Params, only: str | None) -> None:
    """`perk import --only a/b,c/d`: import just these datasets (others keep their files)."""
    if not only:
        return
    wanted, known = set(only.split(",")), {d.name for d in p.imports.datasets}
    if wanted - known:
        raise ConfigError(f"--only: unknown dataset(s) {sorted(wanted - known)}; imports.datasets has {sorted(known)}")
    for d in p.imports.datasets:
        d.enabled = d.name in wanted


STAGE = Stage("import", import_benchmarks, family=lambda p: "imports")
