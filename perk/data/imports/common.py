"""What every benchmark importer shares: reading source files, the import report, chunking.

Bad-input policy (the same for every format):
- a problem with the *file* (missing, empty, not JSON/JSONL/Parquet, a line that does not parse,
  a record without a required field or with a field of the wrong type) raises `DataError`
  naming the file, the line (= record number, 1-based) and the field: the file is not what the
  importer was told it is, so nothing from it is trusted;
- a problem with one *record's content* (RULER needle not found, answer not in the context,
  declared length disagreeing with the measured one, a non-object entry in a reference
  `questions` list) is a counted skip: the record is left out, and its line and reason go into the
  `ImportReport` that the stage prints and writes next to the Parquet. `on_bad_record: error`
  turns these into errors too, and more than `max_skip_fraction` of a file skipped is an error
  (a wholesale mismatch means a wrong file or a wrong setting, not a few bad records).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..haystack import TokenCounter
from ..io import DataError


class RecordSkip(Exception):
    """One record's content is unusable; the importer counts it under `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class FileReport:
    path: str
    split: str
    read: int = 0
    imported: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)  # reason -> record numbers (1-based)
    notes: dict[str, int] = field(default_factory=dict)           # counted non-fatal observations
    length_ratio: float | None = None  # RULER: median of (run-tokenizer tokens / declared GPT-2 tokens)

    def skip(self, reason: str, line: int) -> None:
        self.skipped.setdefault(reason, []).append(line)

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        s = f"{self.path} ({self.split}): {self.imported} rows from {self.read} records"
        if self.skipped:
            parts = [f"{len(v)} {r} (record {', '.join(map(str, v[:5]))}{', ...' if len(v) > 5 else ''})"
                     for r, v in sorted(self.skipped.items())]
            s += "; skipped " + "; ".join(parts)
        if self.notes:
            s += "; " + ", ".join(f"{n} {w}" for w, n in sorted(self.notes.items()))
        if self.length_ratio is not None:
            s += f"; measured/declared length {self.length_ratio:.3f}"
        return s

    def as_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "read": self.read, "imported": self.imported,
                "skipped": {r: v for r, v in sorted(self.skipped.items())}, "notes": dict(sorted(self.notes.items())),
                "length_ratio": self.length_ratio}


# ---------------------------------------------------------------- reading

def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(record number, record) from a JSONL file, a JSON file holding one object or a list of
    objects (the reference samples are pretty-printed single objects), or a Parquet table.

    Record numbers are 1-based lines for JSONL (the benchmarks use the line as the sample id)
    and 1-based positions otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .jsonl, .json or .parquet file")
    if path.suffix == ".parquet":
        yield from _read_parquet(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected JSON Lines, "
                        f"JSON or Parquet") from None
    if not text.strip():
        raise DataError(f"{path}: empty file, expected at least one record")
    stripped = text.lstrip()
    if stripped[0] in "[{":
        # one JSON document (object or list) if the whole text parses, else JSON Lines
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            yield 1, doc
            return
        if isinstance(doc, list):
            if not doc:
                raise DataError(f"{path}: empty JSON list, expected at least one record")
            for i, rec in enumerate(doc, 1):
                if not isinstance(rec, dict):
                    raise DataError(f"{path}: record {i}: expected a JSON object, got {type(rec).__name__}")
                yield i, rec
            return
    n = 0
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {i}: not valid JSON ({err.msg} at column {err.colno}); expected one "
                            f"JSON object per line (JSON Lines)") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {i}: expected a JSON object, got {type(rec).__name__}")
        n += 1
        yield i, rec
    if n == 0:
        raise DataError(f"{path}: no records")


def _read_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    if not rows:
        raise DataError(f"{path}: empty Parquet table, expected at least one record")
    yield from enumerate(rows, 1)


def require(rec: dict, fields: dict[str, type | tuple], where: str, fmt: str) -> None:
    """Raise DataError naming every missing field / wrong type of `rec` (`fields`: name -> type)."""
    missing = sorted(f for f in fields if f not in rec)
    if missing:
        have = sorted(rec)[:12]
        raise DataError(f"{where}: missing field(s) {missing}; a {fmt} record has {sorted(fields)} "
                        f"(this record has {have}); is this really a {fmt} file?")
    for f, t in fields.items():
        if not isinstance(rec[f], t) or (t is int and isinstance(rec[f], bool)):
            want = " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))
            raise DataError(f"{where}: field {f!r} is {type(rec[f]).__name__} ({str(rec[f])[:40]!r}), expected {want}")


def nominal_length(path: str | Path) -> int | None:
    """The length a benchmark file name states: test_4096.jsonl -> 4096, test_2k.jsonl -> 2000."""
    m = re.search(r"(?:^|[_\-.])(\d+)(k?)(?=\.|$|[_\-])", Path(path).stem)
    if not m:
        return None
    return int(m.group(1)) * (1000 if m.group(2) else 1)


# ---------------------------------------------------------------- chunking

_SENT_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")


def units(text: str, keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split `text` into sentence spans (start, end) at whitespace after . ! ?, with every span in
    `keep` (needles, facts) a unit of its own so it is never cut across chunks."""
    keep = sorted(keep)
    out: list[tuple[int, int]] = []

    def sentences(a: int, b: int) -> None:
        start = a
        for m in _SENT_END.finditer(text, a, b):
            end = m.start() + len(m.group(0).rstrip())  # closing quotes stay with their sentence
            if text[start:end].strip():
                out.append(_trim(text, start, end))
            start = m.end()
        if text[start:b].strip():
            out.append(_trim(text, start, b))

    pos = 0
    for s, e in keep:
        if s < pos:  # importers pass distinct sentence matches; overlap would lose a fact's chunk
            raise ValueError(f"kept spans overlap at character {s}")
        sentences(pos, s)
        out.append((s, e))
        pos = e
    sentences(pos, len(text))
    return out


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def split_long(text: str, span: tuple[int, int], counter: TokenCounter, limit: int) -> list[tuple[int, int]]:
    """Cut a sentence longer than `limit` tokens at whitespace into pieces of about `limit`
    tokens (book text has sentences of hundreds of tokens; essays run-on lines)."""
    a, b = span
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[a:b])]
    # each word with the whitespace really before it: "\nlearn" is two tokens where " learn" is one
    counts = counter.many([text[a + (words[i - 1][1] if i else s):a + e] for i, (s, e) in enumerate(words)])
    pieces, cur, n = [], None, 0
    for (s, e), c in zip(words, counts):
        if cur is not None and n + c > limit:
            pieces.append((a + cur, a + prev_e))
            cur, n = None, 0
        if cur is None:
            cur = s
        n += c
        prev_e = e
    if cur is not None:
        pieces.append((a + cur, a + prev_e))
    return pieces


@dataclass
class Chunked:
    chunks: list[str]
    keep_chunks: list[int]   # per keep span: chunk index holding it
    keep_starts: list[int]   # per keep span: token offset of its start in the whole context
    keep_chars: list[int]    # per keep span: character offset of its start in its chunk
    total_tokens: int        # sum of per-unit counts (what packing saw; re-measured later)


def chunk_text(text: str, keep: list[tuple[int, int]], chunk_tokens: int, counter: TokenCounter) -> Chunked:
    """Pack sentences of `text` greedily into chunks of at most `chunk_tokens` tokens, keeping
    each `keep` span whole and inside one chunk. A chunk's text is the source text from its first
    to its last sentence, so the source's own spacing and line breaks survive."""
    spans = units(text, keep)
    keep_set = set(keep)
    # a unit longer than a chunk is cut at words, unless it is a kept span (then it gets a chunk alone)
    counts = counter.many([" " + text[a:b] for a, b in spans])
    flat: list[tuple[int, int]] = []
    for sp, c in zip(spans, counts):
        flat += split_long(text, sp, counter, chunk_tokens) if c > chunk_tokens and sp not in keep_set else [sp]
    # Count each unit with the whitespace that really precedes it (a book's "\n" tokenizes unlike " ")
    # and bare (at a chunk start): with byte-level BPE the chunk's count is then the sum of its units'.
    prev_end = [0] + [b for _, b in flat[:-1]]
    both = counter.many([text[pe:a] + text[a:b] for pe, (a, b) in zip(prev_end, flat)] +
                        [text[a:b] for a, b in flat])
    spaced, bare = both[:len(flat)], both[len(flat):]
    chunks: list[str] = []
    keep_chunks = [0] * len(keep)
    keep_starts = [0] * len(keep)
    keep_chars = [0] * len(keep)
    order = {k: i for i, k in enumerate(keep)}
    cur_a = cur_b = None
    cur_n = offset = 0
    for (a, b), cs, cb in zip(flat, spaced, bare):
        if cur_a is not None and cur_n + cs > chunk_tokens:
            chunks.append(text[cur_a:cur_b])
            offset += cur_n
            cur_a, cur_n = None, 0
        if (a, b) in order:
            keep_chunks[order[(a, b)]] = len(chunks)
            keep_starts[order[(a, b)]] = offset + cur_n
            keep_chars[order[(a, b)]] = a - (cur_a if cur_a is not None else a)
        cur_n += cs if cur_a is not None else cb
        if cur_a is None:
            cur_a = a
        cur_b = b
    if cur_a is not None:
        chunks.append(text[cur_a:cur_b])
        offset += cur_n
    return Chunked(chunks, keep_chunks, keep_starts, keep_chars, offset)
