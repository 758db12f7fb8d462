"""Import public benchmarks (RULER, BABILong, reference-PERK JSON) into the perk Parquet schema.

`import_dataset(ds, tokenizer, out_dir)` converts one `imports.datasets` entry into
`{out_dir}/{family}/{subset}/{split}.parquet` (+ `report.json`, what was read/skipped and why).
Rows follow perk.data.schema.SCHEMA, so every stage reads them like synthesized rows, plus four
columns the benchmarks need: `outputs` (every gold string; RULER scores all of them), `metric`
(the benchmark's own metric), `source` (file:record) and `declared_length` (the record's own
length field, if it has one). The bad-input policy is in common.py.
"""
from __future__ import annotations

import random
import statistics
from pathlib import Path

import pyarrow as pa

from ..haystack import TokenCounter, as_counter, stable_seed
from ..io import DataError, atomic_write_bytes
from ..schema import SCHEMA
from . import babilong, haystack_swap, reference, ruler
from .common import FileReport, RecordSkip, chunk_text, nominal_length, read_records

IMPORT_SCHEMA = pa.schema(list(SCHEMA) + [
    pa.field("outputs", pa.list_(pa.string()), nullable=False),
    pa.field("metric", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("declared_length", pa.int32(), nullable=True),
])


class ImportFailed(DataError):
    """Too many bad records, or one with on_bad_record: error."""


def metric_for(ds, kind: str | None = None) -> str:
    if ds.metric != "auto":
        return ds.metric
    sub = ds.name.split("/", 1)[1]
    if ds.format == "ruler":
        return "string_match_part" if sub.startswith("qa") else "string_match_all"
    if ds.format == "babilong" or kind == "babilong":
        return "babilong_label"
    return "exact_match"


def _hf_records(f):
    """Records of an HF dataset split, read with `datasets`; offline, fail naming where it looked."""
    import os
    try:
        import datasets
    except ImportError:
        raise DataError(f"hf_dataset {f.hf_dataset!r}: the `datasets` package is not installed") from None
    cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "datasets")
    try:
        d = datasets.load_dataset(f.hf_dataset, f.hf_config, split=f.hf_split)
    except Exception as err:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError ...)
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        raise DataError(
            f"hf_dataset {f.hf_dataset!r} (config {f.hf_config!r}, split {f.hf_split!r}): cannot load it; looked in "
            f"the HF datasets cache {cache}" + (" (offline mode: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE=1)" if offline
                                                else " and on the hub") +
            f". Download it where the hub is reachable, or point `path` at local JSON/JSONL/Parquet files. "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})") from None
    return enumerate(d, 1)


def _source(f) -> tuple[str, object, int | None]:
    if f.path is not None:
        return f.path, read_records(f.path), f.length or nominal_length(f.path)
    label = f"hf:{f.hf_dataset}/{f.hf_config}/{f.hf_split}"
    return label, _hf_records(f), f.length or (nominal_length(f"x_{f.hf_config}") if f.hf_config else None)


def _prose_row(ds, parsed: dict, counter: TokenCounter, ch=None) -> dict:
    ch = ch or chunk_text(parsed["context"], parsed["keep"], ds.chunk_tokens, counter)
    sup = parsed["support"]
    return {"context": ch.chunks, "question": parsed["question"], "answer_prefix": parsed["answer_prefix"],
            "answer": ", ".join(parsed["outputs"]), "outputs": parsed["outputs"],
            "supporting_facts": [parsed["context"][slice(*parsed["keep"][i])] for i in sup],
            "supporting_chunks": [ch.keep_chunks[i] for i in sup],
            "depths": [ch.keep_starts[i] / max(1, ch.total_tokens) for i in sup],
            "declared_length": parsed["declared_length"], **_spans(parsed, ch)}


def _prose_rows(ds, asked: list[dict], counter: TokenCounter) -> list[dict]:
    """Rows of one context asked several questions (ruler.every_key, babilong.every_person): chunked once, so the rows'
    contexts are identical and meta-training groups them into one episode."""
    first = _prose_row(ds, asked[0], counter)
    rows = [first]
    ch = chunk_text(asked[0]["context"], asked[0]["keep"], ds.chunk_tokens, counter)
    for k, parsed in enumerate(asked[1:], 1):
        r = _prose_row(ds, parsed, counter, ch)
        r["qindex"] = k
        rows.append(r)
    return rows


def _spans(parsed: dict, ch) -> dict:
    """fact_spans / answer_spans (chunk-relative characters) from the parser's context offsets: the
    supporting needle/fact sentences and the answer inside each (what the weighting net learns)."""
    keep, sup = parsed["keep"], parsed["support"]
    facts = [{"chunk": ch.keep_chunks[i], "start": ch.keep_chars[i], "end": ch.keep_chars[i] + keep[i][1] - keep[i][0]}
             for i in sup]
    answers = []
    for s, e in parsed["answer_at"]:
        i = next(i for i in sup if keep[i][0] <= s and e <= keep[i][1])  # the parser reads answers from support
        answers.append({"chunk": ch.keep_chunks[i], "start": ch.keep_chars[i] + s - keep[i][0],
                        "end": ch.keep_chars[i] + e - keep[i][0]})
    return {"fact_spans": facts, "answer_spans": answers}


def import_file(ds, f, split: str, counter: TokenCounter, swap=None, extend=None) -> tuple[list[dict], FileReport]:
    """Rows of one source file (lengths measured, bad records counted) and its report.

    `swap` (train split of a RULER dataset only): (fraction, ProsePool): that fraction of the
    records get their haystack replaced (haystack_swap.py), counted in the report's notes.
    `extend` (RULER only): (L, ProsePool): every record's haystack replaced by about L context
    tokens of prose (imports.val_lengths); the rows' split is `split` and their length L."""
    label, records, nominal = _source(f)
    rep = FileReport(label, split)
    family, subset = ds.name.split("/", 1)
    stem = Path(label).stem if f.path else label.replace("/", "_")
    rows: list[dict] = []
    prompts: list[str] = []  # RULER: the text its `length` field counts
    swap_rng = random.Random(stable_seed(ds.name, stem, "haystack_swap", *(extend[:1] if extend else ())))

    def bad(reason: str, recno: int, detail: str) -> None:
        if ds.on_bad_record == "error":
            raise ImportFailed(f"{label}: record {recno}: {reason}: {detail} (imports on_bad_record: error)")
        rep.skip(reason, recno)

    for recno, rec in records:
        if f.limit and rep.read >= f.limit:
            break
        rep.read += 1
        where = f"{label}: record {recno}"
        try:
            if ds.format == "ruler":
                parsed = ruler.parse(rec, where, ds.instruction)
                source_prompt = parsed["prompt_text"]  # the length check reads it: swapped records are checked too
                if swap is not None and swap_rng.random() < swap[0]:
                    parsed = haystack_swap.swap(parsed, swap[1], swap_rng, counter)
                    rep.note("haystack_swapped")
                if extend is not None:
                    parsed = haystack_swap.swap(parsed, extend[1], swap_rng, counter, context_tokens=extend[0])
                    rep.note(f"haystack_extended_to_{extend[0]}")
                asked = ruler.every_key(parsed) if ds.ask_every_key and split == "train" else [parsed]
                items = _prose_rows(ds, asked, counter)
                prompts += [source_prompt] * len(items)  # one per row
                if len(items) > 1:
                    rep.note("questions_added_for_other_keys")
            elif ds.format == "babilong":
                parsed = babilong.parse(rec, where, subset)
                if parsed["note"]:
                    rep.note(parsed["note"])
                asked = babilong.every_person(parsed) if ds.ask_every_key and split == "train" else [parsed]
                items = _prose_rows(ds, asked, counter)
                if len(items) > 1:
                    rep.note("questions_added_for_other_persons")
            else:
                items = []
                for item in reference.parse(rec, where):
                    if item == reference.ELIDED:
                        rep.note(item)
                        continue
                    if isinstance(item, RecordSkip):
                        bad(item.reason, recno, item.detail)
                        continue
                    items.append(_reference_row(item))
        except RecordSkip as skip:
            bad(skip.reason, recno, skip.detail)
            continue
        for k, it in enumerate(items):
            qi = it.pop("qindex", 0)
            kind = it.pop("kind", None)
            rid = f"{ds.name}/{split}/{stem}/{recno}" + (f"/q{qi}" if ds.format == "perk_reference" or qi else "")
            it.update(id=rid, task=family, subtask=subset, split=split, target_depth=None,
                      seed=stable_seed(ds.name, stem, recno, qi), metric=metric_for(ds, kind),
                      source=f"{label}:{recno}", _recno=recno)
            rows.append(it)
    # measure every chunk with the run's tokenizer (one batch; the memo makes shared haystack free)
    counts = counter.many([c for r in rows for c in r["context"]])
    i = 0
    for r in rows:
        r["context_tokens"] = sum(counts[i:i + len(r["context"])])
        i += len(r["context"])
    rows = _check_lengths(ds, rows, prompts, rep, counter, bad)
    for r in rows:
        r["target_tokens"] = extend[0] if extend else nominal or r["context_tokens"]
        r.pop("_recno")
    rep.imported = len(rows)
    # counted in rows (a reference record holds several questions), so the fraction is of what was tried
    if rep.n_skipped > ds.max_skip_fraction * (rep.imported + rep.n_skipped):
        raise ImportFailed(f"{rep.summary()}: more than max_skip_fraction={ds.max_skip_fraction} of the records "
                           f"were unusable; is this a {ds.format} file of {ds.name}?")
    if not rows:
        raise ImportFailed(f"{rep.summary()}: nothing to import")
    return rows, rep


def _reference_row(item: dict) -> dict:
    chunks = item["chunks"]
    return {"context": chunks, "question": item["question"], "answer_prefix": item["answer_prefix"],
            "answer": ", ".join(item["outputs"]), "outputs": item["outputs"],
            "supporting_facts": item["support_facts"], "supporting_chunks": item["support_chunks"],
            "depths": [c / len(chunks) for c in item["support_chunks"]],  # chunk position: records are units
            "declared_length": None, "kind": item["kind"], "qindex": item["qindex"]}


def _check_lengths(ds, rows, prompts, rep, counter, bad) -> list[dict]:
    """Skip records whose length disagrees with the rest of the file.

    RULER's `length` is GPT-2 tokens of input + answer_prefix + tokens_to_generate; the run's
    tokenizer counts differently, so each record's measured/declared ratio is compared with the
    file's median ratio (a tokenizer changes every record alike; a wrong field stands out).
    BABILong has no length field: every record of a file has the same nominal context size, so a
    context far from the file's median measured length is the disagreement."""
    if ds.format == "perk_reference" or not rows:
        return rows
    if ds.format == "ruler":
        measured = counter.many(prompts)
        ratios = []
        for r, m in zip(rows, measured):
            declared = r["declared_length"] - ds.tokens_to_generate
            ratios.append(m / declared if declared > 0 else float("inf"))
    else:
        ratios = [float(r["context_tokens"]) for r in rows]
    med = statistics.median(ratios)
    if ds.format == "ruler":
        rep.length_ratio = round(med, 4)
    kept, reported = [], set()
    for r, q in zip(rows, ratios):
        if abs(q / med - 1) > ds.length_tolerance:
            if r["_recno"] in reported:  # a sibling question of a record already skipped
                continue
            reported.add(r["_recno"])
            what = (f"declared length {r['declared_length']} disagrees with the measured one (ratio {q:.3f}, file "
                    f"median {med:.3f})" if ds.format == "ruler" else
                    f"context has {r['context_tokens']} tokens, the file's median is {med:.0f}")
            bad("length_mismatch", r["_recno"], what)
            continue
        kept.append(r)
    return kept


def write_rows(rows: list[dict], path: str | Path) -> Path:
    import pyarrow.parquet as pq
    table = pa.Table.from_pylist(rows, schema=IMPORT_SCHEMA)
    atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", use_dictionary=True,
                                                        write_statistics=False, store_schema=True))
    return Path(path)


def dataset_dir(out_dir: str | Path, name: str) -> Path:
    family, subset = name.split("/", 1)
    return Path(out_dir) / family / subset


def import_dataset(ds, tokenizer, out_dir: str | Path, haystack_swap_fraction: float = 0.0,
                   haystack_source: str | None = None, val_lengths: list[int] = (),
                   val_haystack_source: str | None = None) -> tuple[dict[str, Path], list[FileReport]]:
    """Convert every split of one dataset; returns ({"name/split": path}, file reports).
    haystack_swap_fraction > 0: a RULER train split's records get prose from haystack_source.
    val_lengths (RULER with a val split): also split val_<L>, the val records at L tokens of the
    prose of val_haystack_source (default: haystack_source)."""
    import json

    counter = as_counter(tokenizer)
    swap, pool = None, None
    if haystack_swap_fraction > 0 and ds.format == "ruler" and "train" in ds.files:
        if not haystack_source:
            raise DataError("imports.haystack_swap > 0 needs imports.haystack_source (a BABILong-format file)")
        swap = (haystack_swap_fraction, haystack_swap.prose_pool(haystack_source, counter))
    lengths = list(val_lengths) if ds.format == "ruler" and "val" in ds.files else []
    if lengths:
        if not (val_haystack_source or haystack_source):
            raise DataError("imports.val_lengths needs imports.val_haystack_source (a BABILong-format file)")
        src = val_haystack_source or haystack_source
        pool = swap[1] if swap and src == haystack_source else haystack_swap.prose_pool(src, counter)
    base = dataset_dir(out_dir, ds.name)
    written, reports = {}, []
    jobs = [(split, split, files, None) for split, files in ds.files.items()]
    jobs += [(f"val_{n}", "val", ds.files["val"], (n, pool)) for n in lengths]
    for split, source_split, files, extend in jobs:
        rows: list[dict] = []
        for f in files:
            r, rep = import_file(ds, f, split, counter, swap if source_split == "train" else None, extend)
            rows += r
            reports.append(rep)
        if rows:
            written[f"{ds.name}/{split}"] = write_rows(rows, base / f"{split}.parquet")
    for stale in base.glob("*.parquet") if base.exists() else ():
        if stale.stem not in {j[0] for j in jobs}:  # a split no longer configured must not linger as a task split
            stale.unlink()
    report = {"dataset": ds.name, "format": ds.format, "files": [r.as_dict() for r in reports]}
    atomic_write_bytes(base / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    return written, reports
