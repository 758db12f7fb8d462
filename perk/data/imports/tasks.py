"""Imported datasets as tasks: where their rows live and what the stages need to know about them.

An imported task is `family/subset` with a family that is not a synth family; its rows are
`{imports.out_dir}/{family}/{subset}/{split}.parquet`; perk.stages.common.rows sends such tasks
here, and the helpers below answer what stages otherwise read from a synth spec.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ...config import ImportDataset, Params, TasksConfig
from ..io import DataError, read_rows
from . import dataset_dir
from .common import read_records


def is_imported(task: str) -> bool:
    return task.partition("/")[0] not in TasksConfig.model_fields


def dataset(p: Params, task: str) -> ImportDataset:
    ds = p.imports.get(task)
    if ds is None:
        raise DataError(f"{task!r} is not an imported dataset; imports.datasets has "
                        f"{sorted(d.name for d in p.imports.datasets)}")
    return ds


def imported_path(p: Params, task: str, split: str) -> Path:
    return dataset_dir(p.imports.out_dir, dataset(p, task).name) / f"{split}.parquet"


def imported_rows(p: Params, task: str, split: str) -> list[dict]:
    ds = dataset(p, task)
    path = imported_path(p, task, split)
    extended = split.startswith("val_") and split[4:].isdigit()  # imports.val_lengths
    if extended and int(split[4:]) not in p.imports.val_lengths:
        raise DataError(f"{task}: split {split!r} needs {split[4:]} in imports.val_lengths "
                        f"(it is {p.imports.val_lengths})")
    if split not in ds.files and not extended:
        raise DataError(f"{task}: imports.datasets lists no {split!r} files (it has {sorted(ds.files)})")
    if not path.exists():
        raise DataError(f"{path}: file not found (run `perk import` / `dvc repro import` first)")
    family, subset = task.split("/", 1)
    return read_rows(path, task=family, subtask=subset)


def chunk_tokens(p: Params, task: str) -> int:
    if is_imported(task):
        return dataset(p, task).chunk_tokens
    return getattr(p.synth.tasks, task.split("/")[0]).chunk_tokens


def eval_lengths(p: Params, task: str) -> list[int]:
    """The test grid's lengths (imported: the nominal lengths of the test files, read from the Parquet)."""
    if not is_imported(task):
        return list(getattr(p.synth.tasks, task.split("/")[0]).eval_lengths)
    import pyarrow.parquet as pq
    path = imported_path(p, task, "test")
    if not path.exists():
        raise DataError(f"{path}: file not found (run `perk import` / `dvc repro import` first)")
    return sorted(set(pq.read_table(path, columns=["target_tokens"]).column(0).to_pylist()))


def train_length(p: Params, task: str) -> int | None:
    """The longest training length (plots mark it); None when the dataset has no train split."""
    if not is_imported(task):
        return max(getattr(p.synth.tasks, task.split("/")[0]).train_lengths)
    path = imported_path(p, task, "train")
    if not path.exists():
        return None
    import pyarrow.parquet as pq
    return max(pq.read_table(path, columns=["target_tokens"]).column(0).to_pylist())


def corpus_texts(p: Params, n: int, seed: int = 0) -> list[str]:
    """Up to n source texts (context, question, answer) of the enabled datasets' train files, read
    straight from the sources: the tokenizer stage runs before any import (import counts tokens)."""
    if n <= 0:
        return []
    texts: list[str] = []
    for ds in p.imports.datasets:
        if not ds.enabled:
            continue
        for f in ds.files.get("train", []) or ds.files.get("test", []):
            if f.path is None:
                continue
            for _, rec in read_records(f.path):
                texts.append(_text(ds.format, rec))
    rng = random.Random(seed)
    rng.shuffle(texts)
    return texts[:n]


def _text(fmt: str, rec: dict) -> str:
    if fmt == "ruler":
        return f"{rec.get('input', '')}{rec.get('answer_prefix', '')} {' '.join(rec.get('outputs') or [])}"
    if fmt == "babilong":
        return f"{rec.get('input', '')}\n{rec.get('question', '')}\n{rec.get('target', '')}"
    return json.dumps(rec, ensure_ascii=False)[:20000]
