"""Evaluation over the grid task x context length x depth, for PERK and the prompt baseline.

Each grid cell's predictions are written to their own Parquet file as soon as the cell is done,
so a killed run resumes without recomputing finished cells, and any summary figure can be traced
back to its examples. Contexts the baseline model cannot take (more tokens than its positions)
are recorded as `out_of_range`, never silently truncated.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import progress as progress_
from .data.io import atomic_write_bytes
from .prompts import ContextPrefix, context_prompt, greedy_answer, question_prompt
from .scoring import exact_match, substring_match, token_f1, wilson_interval

PRED_SCHEMA = pa.schema([
    ("id", pa.string()), ("method", pa.string()), ("task", pa.string()), ("length", pa.int32()),
    ("depth", pa.float64()), ("context_tokens", pa.int32()), ("prediction", pa.string()),
    ("answer", pa.string()), ("em", pa.float64()), ("f1", pa.float64()), ("substring", pa.float64()),
    ("status", pa.string()), ("seconds", pa.float64()), ("distractor", pa.float64()),
])

Answerer = Callable[[dict], tuple[str | None, str]]  # row -> (prediction, status)


@contextmanager
def adapted(model: torch.nn.Module, fast: dict[str, torch.Tensor]):
    """Temporarily load fast LoRA weights into the model (test time: plain generate() works)."""
    params = dict(model.named_parameters())
    missing = [n for n in fast if n not in params]
    if missing:
        raise KeyError(f"fast weights for unknown parameters {missing[:3]}")
    saved = {n: params[n].detach().clone() for n in fast}
    with torch.no_grad():
        for n, t in fast.items():
            params[n].copy_(t)
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, t in saved.items():
                params[n].copy_(t)


def prompt_answerer(model, tokenizer, max_positions: int, max_new_tokens: int, device="cpu") -> Answerer:
    """The baseline: context in the prompt. Sibling questions of one context share its prefill."""
    prefix = ContextPrefix(model, device)

    def answer(row: dict):
        ids = tokenizer(context_prompt(row), add_special_tokens=False)["input_ids"]
        if len(ids) + max_new_tokens > max_positions:
            return None, "out_of_range"
        ctx = tokenizer("\n".join(row["context"]), add_special_tokens=False)["input_ids"]
        return greedy_answer(model, tokenizer, ids, max_new_tokens, device, prefix(row["context"], ctx, ids)), "ok"
    return answer


class Encodes:
    """Fast weights per context, shared by the answerers of one bundle: sibling questions of one
    context (every key asked, as the capacity curve does) and the wrong-context control (whose
    donor context PERK already encoded for the donor's own question) cost no further encode. The
    test-time encode is deterministic, so a cached encode is the one a fresh encode would give.
    The most recent contexts are kept while their weights fit in `max_bytes` (the last one always:
    the default keeps just it); a dropped one is encoded again if asked."""

    def __init__(self, bundle, tokenizer, device="cpu", micro_batch: int = 0, max_bytes: int = 0,
                 steps: int | None = None):
        self.bundle, self.tokenizer, self.device, self.micro_batch = bundle, tokenizer, device, micro_batch
        self.steps = steps  # inner steps of the encode (None: the bundle's own, as meta-trained)
        self.max_bytes = max_bytes
        self._fast: dict[tuple, dict[str, torch.Tensor]] = {}
        self.encoded = 0  # encodes run (the rest were reused): tests read it

    def __call__(self, context: list[str], example_id=None) -> dict[str, torch.Tensor]:
        from .meta import chunk_batch

        key = tuple(context)
        if key in self._fast:
            self._fast[key] = self._fast.pop(key)  # most recently used last
            return self._fast[key]
        chunks = {k: v.to(self.device) for k, v in chunk_batch(self.tokenizer, list(context)).items()}
        extra = {"steps": self.steps} if self.steps else {}
        enc = self.bundle.encode(chunks, train=False, example_id=example_id, micro_batch=self.micro_batch, **extra)
        self.encoded += 1
        self._fast[key] = {n: t.detach() for n, t in enc.as_dict().items()}
        each = sum(t.numel() * t.element_size() for t in self._fast[key].values())
        while len(self._fast) > max(1, self.max_bytes // max(each, 1)):
            self._fast.pop(next(iter(self._fast)))
        return self._fast[key]


def perk_answerer(bundle, tokenizer, max_new_tokens: int, device="cpu", micro_batch: int = 0,
                  context_of: Callable[[dict], dict | None] | None = None,
                  encodes: Encodes | None = None) -> Answerer:
    """PERK: encode the context into the adapter (first-order, micro-batched), answer without it.
    `context_of(row)` picks the row whose context is encoded instead (the wrong-context control;
    None: no donor, the row is skipped as `no_donor`). `encodes`: a cache shared with other
    answerers of this bundle (default: one of its own that keeps the last context)."""
    encodes = encodes or Encodes(bundle, tokenizer, device, micro_batch)

    def answer(row: dict):
        source = context_of(row) if context_of else row
        if source is None:
            return None, "no_donor"
        with adapted(bundle.lm, encodes(source["context"], example_id=row["id"])):
            return greedy_answer(bundle.lm, tokenizer, question_prompt(row), max_new_tokens, device), "ok"
    return answer


def init_answerer(bundle, tokenizer, max_new_tokens: int, device="cpu") -> Answerer:
    """The no-inner control: the meta-learned LoRA init answers, nothing encoded."""
    def answer(row: dict):
        return greedy_answer(bundle.lm, tokenizer, question_prompt(row), max_new_tokens, device), "ok"
    return answer


def cell_key(task: str, length: int, depth: float | None) -> str:
    d = "rand" if depth is None else f"{depth:.2f}"
    return f"{task.replace('/', '_')}_L{length}_d{d}"


def group_cells(rows: Iterable[dict], per_cell: int) -> dict[tuple[int, float | None], list[dict]]:
    cells: dict[tuple[int, float | None], list[dict]] = defaultdict(list)
    for r in rows:
        cells[(r["target_tokens"], r["target_depth"])].append(r)
    return {k: v[:per_cell] for k, v in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1))}


def score_row(row: dict, method: str, task: str, prediction: str | None, status: str, seconds: float) -> dict:
    from .controls import is_distractor
    ok = prediction is not None
    return {"id": row["id"], "method": method, "task": task, "length": row["target_tokens"],
            "depth": row["target_depth"], "context_tokens": row["context_tokens"],
            "prediction": prediction or "", "answer": row["answer"],
            "em": exact_match(prediction, row["answer"]) if ok else 0.0,
            "f1": token_f1(prediction, row["answer"]) if ok else 0.0,
            "substring": substring_match(prediction, row["answer"]) if ok else 0.0,
            "status": status, "seconds": seconds, "distractor": is_distractor(row, prediction) if ok else 0.0}


def run_cells(answerers: dict[str, Answerer], task: str, rows: list[dict], per_cell: int, out_dir: str | Path,
              progress: bool = True, on_cell: Callable[[str, list[dict]], None] = lambda k, r: None) -> list[dict]:
    """Evaluate every (method, length, depth) cell not already on disk; returns all predictions."""
    out_dir = Path(out_dir)
    results = []
    cells = group_cells(rows, per_cell)
    bar = progress_.bar(total=len(answerers) * len(cells), desc=f"evaluate {task} (cells)", enabled=progress)
    for method, answer in answerers.items():
        for (length, depth), cell_rows in cells.items():
            path = out_dir / method / f"{cell_key(task, length, depth)}.parquet"
            if path.exists():  # finished before a kill/rerun: reuse
                try:
                    results += pq.read_table(path).to_pylist()
                    bar.update()
                    continue
                except (pa.ArrowException, OSError) as err:
                    progress_.write(f"evaluate: cached cell {path} is unreadable ({type(err).__name__}); recomputing it")
            scored = []
            for r in cell_rows:
                t0 = time.perf_counter()
                pred, status = answer(r)
                scored.append(score_row(r, method, task, pred, status, time.perf_counter() - t0))
            table = pa.Table.from_pylist(scored, schema=PRED_SCHEMA)
            atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))
            on_cell(f"{method}/{cell_key(task, length, depth)}", scored)
            results += scored
            bar.set_postfix({"last": f"{method} L={length} d={depth} EM {sum(x['em'] for x in scored) / len(scored):.2f}"})
            bar.update()
    bar.close()
    return results


def summarize(preds: list[dict]) -> dict:
    """Per method/task: EM with 95% CI per length and per (length, depth), depth spread, out-of-range counts."""
    out: dict = {}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in preds:
        groups[(p["method"], p["task"], p["length"])].append(p)
        groups[(p["method"], p["task"], p["length"], p["depth"])].append(p)
    for key, ps in sorted(groups.items(), key=lambda kv: str(kv[0])):
        method, task, length = key[:3]
        scored = [p for p in ps if p["status"] == "ok"]
        n = len(scored)
        em = sum(p["em"] for p in scored) / n if n else None
        lo, hi = wilson_interval(sum(p["em"] for p in scored), n)
        cell = {"em": em, "em_lo": lo, "em_hi": hi, "f1": (sum(p["f1"] for p in scored) / n) if n else None,
                "distractor": (sum(p.get("distractor") or 0.0 for p in scored) / n) if n else None,
                "n": n, "out_of_range": sum(p["status"] == "out_of_range" for p in ps),
                "skipped": sum(p["status"] not in ("ok", "out_of_range") for p in ps)}
        node = out.setdefault(method, {}).setdefault(task, {}).setdefault("by_length", {})
        if len(key) == 3:
            node.setdefault(str(length), {}).update(cell)
        else:
            node.setdefault(str(length), {}).setdefault("by_depth", {})[f"{key[3]}"] = cell
    for method, tasks in out.items():
        for task, t in tasks.items():
            spreads = []
            for L, cell in t["by_length"].items():
                depth_ems = [c["em"] for c in cell.get("by_depth", {}).values() if c["em"] is not None]
                if len(depth_ems) > 1:
                    cell["depth_spread"] = max(depth_ems) - min(depth_ems)
                    spreads.append(cell["depth_spread"])
            t["max_depth_spread"] = max(spreads) if spreads else None
    return out
