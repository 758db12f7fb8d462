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


def test_extra_rank_keeps_the_default_ranks_first_update_and_schedule():
    from perk.stages.capacity import rank_params

    p = Params()
    assert rank_params(p, p.lora.rank) is p
    q = rank_params(p, 64)  # alpha 16 x sqrt(64 / 16): scale alpha / r x sqrt(r) equal to rank 16's
    assert (q.lora.rank, q.lora.alpha, q.meta_train.steps) == (64, 32.0, p.meta_train.steps)
    assert q.lora.alpha / 64 * 64 ** 0.5 == p.lora.alpha / 16 * 16 ** 0.5
    assert q.meta_train.out_dir.endswith("ranks/perk_r64") and q.meta_train.out_dir != p.meta_train.out_dir
    same = p.model_copy(update={"capacity": p.capacity.model_copy(update={"rank_alpha": "same", "rank_steps": 300})})
    assert (rank_params(same, 64).lora.alpha, rank_params(same, 64).meta_train.steps) == (16.0, 300)
    rs = p.model_copy(update={"lora": p.lora.model_copy(update={"rslora": True})})
    assert rank_params(rs, 64).lora.alpha == 16.0  # alpha / sqrt(r) already keeps the update size


def test_report_table_shows_every_point_and_where_recall_falls():
    from perk.report_md import capacity_table

    preds = [{"method": "perk_r16", "facts": f, "id": f"capacity/f{f}/x/k{i}", "status": "ok", "em": float(i < k)}
             for f, k in ((4, 4), (8, 5)) for i in range(f)]
    pts = capacity.table(preds)
    lines = capacity_table({"points": pts, "falls_below": capacity.falls_below(pts)})
    assert lines[0] == "| method | 4 facts | 8 facts |"
    assert lines[2].startswith("| perk_r16 | 100% [51, 100] (n=4) | 62% [31, 86] (n=8) |")
    assert lines[-1].endswith("perk_r16 8.")
