"""Stage `import`: benchmark files (RULER, BABILong, reference-PERK) -> Parquet tasks.

Writes {imports.out_dir}/{family}/{subset}/{split}.parquet + report.json per dataset and
index.json. Token counts and chunking use the run's tokenizer, so the tokenizer stage runs first.

The default datasets are the development sets under ../shared, which a fresh clone elsewhere
does not have. A dataset none of whose local files exists is *absent*: with `imports.absent: skip`
(the default) it is skipped loudly (a line on stderr, `absent` in index.json, the MLflow tag
`imports.absent`), so `dvc repro` of the default pipeline passes there; `imports.absent: error`,
`--only NAME` or a dataset with only some of its files present fail naming the missing file.
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
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index = {k: v for k, v in index.items() if p.imports.get(k) is not None}  # datasets no longer configured
    written: dict[str, Path] = {}
    absent = skip_absent(p, chosen, index)
    for ds in (d for d in chosen if d.name not in absent):
        t0 = time.perf_counter()
        if p.imports.ask_every_key is not None:
            ds = ds.model_copy(update={"ask_every_key": p.imports.ask_every_key})
        out, reports = import_dataset(ds, tok, p.imports.out_dir, p.imports.haystack_swap, p.imports.haystack_source,
                                      p.imports.val_lengths, p.imports.val_haystack_source)
        written.update(out)
        index[ds.name] = {"splits": {k.rsplit("/", 1)[1]: str(v) for k, v in out.items()},
                          "rows": sum(r.imported for r in reports), "skipped": sum(r.n_skipped for r in reports),
                          "seconds": round(time.perf_counter() - t0, 3)}
        for r in reports:
            if progress or r.n_skipped or r.notes:  # a skip is never silent
                print(f"import {ds.name}: {r.summary()}")
    atomic_write_bytes(index_path, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n"))
    return written


def skip_absent(p: Params, chosen: list, index: dict) -> dict[str, list[str]]:
    """The chosen datasets none of whose local files exists, each reported loudly (never a silent
    drop); imports.absent: error makes the first one an error."""
    import shutil
    import sys

    from .. import tracking
    from ..data.imports import dataset_dir

    sources = {d.name: [f.path for fs in d.files.values() for f in fs] for d in chosen}
    absent = {n: fs for n, fs in sources.items() if all(f is not None and not Path(f).exists() for f in fs)}
    for name, files in absent.items():
        if p.imports.absent == "error":
            raise FileNotFoundError(f"imports: dataset {name!r}: none of its files exists (first: {files[0]}); "
                                    "set imports.absent: skip to skip absent datasets")
        print(f"import: SKIPPED {name}: none of its {len(files)} files exists (first: {files[0]}); "
              "its Parquet is not written (imports.absent: error makes this an error)", file=sys.stderr)
        index[name] = {"absent": files}
        shutil.rmtree(dataset_dir(p.imports.out_dir, name), ignore_errors=True)  # no stale Parquet of it
    if absent:
        tracking.set_tags({"imports.absent": ",".join(sorted(absent))})
    return absent


def select(p: Params, only: str | None) -> None:
    """`perk import --only a/b,c/d`: import just these datasets (others keep their files)."""
    if not only:
        return
    wanted, known = set(only.split(",")), {d.name for d in p.imports.datasets}
    if wanted - known:
        raise ConfigError(f"--only: unknown dataset(s) {sorted(wanted - known)}; imports.datasets has {sorted(known)}")
    for d in p.imports.datasets:
        d.enabled = d.name in wanted
    p.imports.absent = "error"  # a dataset asked for by name must be there


STAGE = Stage("import", import_benchmarks, family=lambda p: "imports")
