"""The capacity curve: contexts that scale the facts, every key asked, held-out keys; the table,
the 90% read-off and the files the stage writes."""
import json
import re

from perk import capacity
from perk.config import Params
from perk.data.lexicon import pool

NEEDLE_RE = re.compile(r"One of the special magic words for (\w+) is (\w+)\.")


def _params(**cap):
    return Params.model_validate({"capacity": {"length": 1024, "facts": [4, 64], "questions": 8, "min_contexts": 2, **cap}})


def test_contexts_scale_the_facts_and_ask_every_key(tiny_tokenizer):
    rows = capacity.contexts(_params(), tiny_tokenizer)
    for f, n_contexts in ((4, 2), (64, 2)):  # ceil(8 / f), at least min_contexts
        point = [r for r in rows if r["facts"] == f]
        by_context = {}
        for r in point:
            by_context.setdefault(tuple(r["context"]), []).append(r)
        assert len(by_context) == n_contexts and len(point) == f * n_contexts
        for ctx, asked in by_context.items():
            facts = dict(NEEDLE_RE.findall(" ".join(ctx)))
            assert len(facts) == f  # 64 distinct keys: more than the test split's 62
            assert {r["answer"] for r in asked} == set(facts.values())
            assert all(k in pool("key", "heldout") and k not in pool("key", "train") for k in facts)
        assert all(abs(r["context_tokens"] - 1024) <= 0.05 * 1024 for r in point)
    assert len({r["id"] for r in rows}) == len(rows)


def test_table_wilson_and_where_recall_falls_below_90():
    preds = [{"method": "perk_r16", "facts": f, "id": f"capacity/f{f}/c{i // f}/k{i % f}", "status": "ok",
              "em": float(i < right)} for f, right in ((4, 8), (16, 12)) for i in range(16)]
    preds += [{"method": "baseline", "facts": 4, "id": "capacity/f4/c0", "status": "out_of_range", "em": 0.0}]
    points = capacity.table(preds)
    r4, r16 = [r for r in points if r["method"] == "perk_r16"]
    assert (r4["em"], r4["n"], r4["contexts"], r16["em"]) == (0.5, 16, 4, 0.75)
    assert r4["em_lo"] < 0.5 < r4["em_hi"]
    base = next(r for r in points if r["method"] == "baseline")
    assert (base["n"], base["not_ok"], base["em"]) == (0, 1, None)
    assert capacity.falls_below(points) == {"baseline": None, "perk_r16": 4}
    assert capacity.falls_below([{**r4, "em": 0.95}, r16]) == {"perk_r16": 16}


def test_write_gives_json_csv_parquet_and_plot(tmp_path):
    preds = [{"method": m, "facts": f, "id": f"capacity/f{f}/c0/k{i}", "status": "ok", "em": float(i % 2),
              "prediction": "x", "answer": "y"} for m in ("perk_r16", "perk_r64", "baseline") for f in (4, 8) for i in range(f)]
    report, files = capacity.write(tmp_path, preds, 2048)
    assert json.loads((tmp_path / "capacity.json").read_text()) == report
    assert report["length"] == 2048 and len(report["points"]) == 6
    assert (tmp_path / "capacity.csv").read_text().splitlines()[0].startswith("method,facts,n,contexts,correct,em")
    assert all(f.exists() for f in files) and (tmp_path / "plots" / "capacity.png").stat().st_size > 1000
