"""Parquet IO with schema validation and atomic writes."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import SCHEMA, SPAN_COLUMNS, Example


class DataError(ValueError):
    """A data file is missing, corrupted or does not match the expected schema."""


def to_table(examples: Iterable[Example]) -> pa.Table:
    rows = [e.row() for e in examples]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call `write(tmp_path)` then rename over `path`, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj) -> Path:
    """`obj` as indented, key-sorted JSON, written atomically (metrics, summaries, run records)."""
    import json
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))
    return Path(path)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp directory beside `path` (named `.<name>.*`); on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_examples(examples: Iterable[Example], path: str | Path) -> Path:
    table = to_table(examples)
    # Fixed writer options and no wall-clock metadata: same rows -> byte-identical file.
    atomic_write_bytes(path, lambda tmp: pq.write_table(
        table, tmp, compression="zstd", use_dictionary=True, write_statistics=False,
        store_schema=True))
    return Path(path)


def validate_schema(schema: pa.Schema, source: str) -> None:
    have = {f.name: f for f in schema}
    missing = [f.name for f in SCHEMA if f.name not in have]
    if missing and set(missing) <= set(SPAN_COLUMNS):
        # Training reads these spans instead of searching the text; an older file cannot be
        # repaired by searching either (that was the bug), so it has to be written again.
        raise DataError(f"{source}: no {' / '.join(missing)} column: written by a perk version that did not "
                        f"record answer spans; regenerate it with `perk synth` (or `dvc repro synth`)")
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; expected the perk example schema "
                        f"({', '.join(SCHEMA.names)})")
    for f in SCHEMA:
        if not have[f.name].type.equals(f.type):
            raise DataError(f"{source}: column {f.name!r} has type {have[f.name].type}, expected {f.type} "
                            f"(written by another version? rerun `perk synth`)")


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (run `perk synth` / `dvc repro synth` first)")
    rerun = "rerun `perk synth` / `dvc repro synth` to rewrite it"
    if path.is_dir():
        raise DataError(f"{path}: expected a Parquet file, found a directory; {rerun}")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0][:200]}); {rerun}") from None
    validate_schema(pf.schema_arrow, str(path))
    try:
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: corrupted Parquet data ({str(err).splitlines()[0][:200]}); {rerun}") from None


def read_rows(path: str | Path, task: str | None = None, subtask: str | None = None) -> list[dict]:
    """Rows as dicts; `task`/`subtask` check that the file holds what the caller expects."""
    rows = read_table(path).to_pylist()
    for name, want in (("task", task), ("subtask", subtask)):
        if want is not None:
            found = sorted({r[name] for r in rows})
            if found != [want]:
                raise DataError(f"{path}: expected {name} {want!r}, file holds {found}")
    return rows
