"""One guarded way to read every artifact the stages hand each other.

A missing, truncated or foreign file becomes an `ArtifactError` (a ValueError, so the CLI prints it
as one line and exits 2, and the Prefect flow does not retry it) that names the file, what was
expected and the stage that writes it, so the user knows what to rerun. Library errors
(SafetensorError, JSONDecodeError, ArrowInvalid, tokenizers' parse errors) never escape as a
traceback. Safetensors only: nothing here ever unpickles.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
from pathlib import Path
from typing import Any, Iterator


class ArtifactError(ValueError):
    """An artifact is missing or unreadable; the message names file, expectation and producing stage."""


# Which stage writes a file, by name: the loaders need not be told, and a new artifact only
# needs a row here. Checked in order; the first match wins.
_PRODUCERS = [
    ("perk.safetensors", "meta-train", "perk meta-train"),
    ("model.safetensors", "baseline", "perk baseline"),
    ("base.safetensors", "pretrain", "perk pretrain"),
    ("weight_net.safetensors", "pretrain", "perk pretrain"),
    ("*/meta_train/*", "meta-train", "perk meta-train"),
    ("*/baseline/*", "baseline", "perk baseline"),
    ("*/eval/*", "evaluate", "perk evaluate"),
    ("*.parquet", "synth", "perk synth"),
    ("*tokenizer*", "tokenizer", "perk tokenizer"),
]


def producer(path: str | Path) -> tuple[str, str] | None:
    """(stage, command) that writes `path`, or None when no stage does (e.g. params.yaml)."""
    text = Path(path).as_posix()
    for pattern, stage, command in _PRODUCERS:
        if fnmatch.fnmatch(Path(path).name, pattern) or fnmatch.fnmatch(text, pattern):
            return stage, command
    return None


def _hint(path: str | Path, stage: str | None, missing: bool) -> str:
    found = (stage, dict((s, c) for _, s, c in _PRODUCERS).get(stage, f"perk {stage}")) if stage else producer(path)
    if found is None:
        return ""
    st, cmd = found
    verb = "run it first" if missing else "rerun it to rewrite the file"
    return f" It is written by the {st} stage: {verb} (`{cmd}` or `dvc repro {st}`)."


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def fail(path: str | Path, expected: str, err: BaseException | None = None, stage: str | None = None) -> ArtifactError:
    """The error for a present but unreadable file (raise it `from None`: the cause is in the text)."""
    why = f" ({_first_line(err)})" if err is not None else ""
    return ArtifactError(f"{path}: not {expected}{why}; truncated or overwritten?{_hint(path, stage, missing=False)}")


def require(path: str | Path, what: str, stage: str | None = None, directory: bool = False) -> Path:
    """`path` as a Path if it exists as a file (or directory); else an ArtifactError saying who writes it."""
    path = Path(path)
    ok = path.is_dir() if directory else path.is_file()
    if not ok:
        if path.exists():
            kind = "a directory" if directory else "a file"
            raise ArtifactError(f"{path}: expected {what} ({kind}), found something else.{_hint(path, stage, True)}")
        raise ArtifactError(f"{path}: {what} not found.{_hint(path, stage, missing=True)}")
    return path


@contextlib.contextmanager
def open_safetensors(path: str | Path, stage: str | None = None) -> Iterator[Any]:
    """`safe_open(path)`, with a truncated or non-safetensors file (at open or while reading) named."""
    from safetensors import SafetensorError, safe_open

    path = require(path, "a safetensors file", stage)
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except (SafetensorError, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(path, "a readable safetensors file", err, stage) from None


def load_safetensors(path: str | Path, stage: str | None = None) -> dict:
    """All tensors of a safetensors file (a checkpoint's tensors) as a dict."""
    with open_safetensors(path, stage) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def read_json(path: str | Path, stage: str | None = None, expect: type = dict) -> Any:
    path = require(path, "a JSON file", stage)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(path, "valid JSON", err, stage) from None
    if not isinstance(value, expect):
        raise fail(path, f"a JSON {expect.__name__}", None, stage)
    return value


def read_text(path: str | Path, what: str, stage: str | None = None) -> str:
    """A text file (params.yaml): a directory, a binary file or no permission are named, not raised."""
    path = require(path, what, stage)
    try:
        return path.read_text()
    except UnicodeDecodeError as err:
        raise fail(path, f"{what} (UTF-8 text)", err, stage) from None
    except OSError as err:
        raise ArtifactError(f"{path}: cannot read {what} ({_first_line(err)})") from None
