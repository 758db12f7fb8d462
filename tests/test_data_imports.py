"""Benchmark importers: RULER JSONL, BABILong records, reference-PERK JSON -> perk rows.

Hand-made records in each benchmark's exact format (../shared/benchmarks/README.md), checked
with independent token counts; every kind of bad input must end in a clear error or a counted skip.
"""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_helpers import context_tokens, fact_offset, n_tokens
from perk.config import ConfigError, ImportDataset, Params, load_params
from perk.data.imports import IMPORT_SCHEMA, ImportFailed, import_dataset, import_file
from perk.data.imports.common import nominal_length
from perk.data.io import DataError
from perk.data.schema import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference" / "perk-data-samples"

ESSAY = ("July 2010What hard liquor, cigarettes, heroin, and crack have in common is that they're all more "
         "concentrated forms of less addictive predecessors. Most if not all the things we describe as addictive "
         "are. And the scary thing is, the process that created them is accelerating. We wouldn't want to stop it. "
         "It's mostly the same process that cures diseases: technological progress. Technological progress means "
         "making things do more of what we want. When the thing we want is something we want to want, we consider "
         "technological progress good. If some new technique makes solar cells x% more efficient, that seems "
         "strictly better. When progress concentrates something we don't want to want, it seems bad.").split(". ")
INSTR = ("A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you "
         "about the number afterwards.")


def needle(key, value):
    return f"One of the special magic numbers for {key} is: {value}."


def ruler_record(needles, asked_key, value, at=(3,), length=None):
    """A RULER niah record: needles inserted at sentence boundaries, joined with single spaces."""
    sents = [s if s.endswith(".") else s + "." for s in ESSAY]
    for pos, n in sorted(zip(at, needles), reverse=True):
        sents.insert(pos, n)
    context = " ".join(sents)
    text = (f"{INSTR}\n{context}\nWhat is the special magic number for {asked_key} mentioned in the provided text?")
    prefix = f" The special magic number for {asked_key} mentioned in the provided text is"
    return {"index": text.find(value), "input": text, "outputs": [value],
            "length": length if length is not None else len((text + prefix).split()) + 128,
            "length_w_model_temp": 0, "answer_prefix": prefix, "token_position_answer": 0}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def ruler_ds(path, **kw):
    return ImportDataset(name="ruler/niah_single_2", format="ruler", chunk_tokens=kw.pop("chunk_tokens", 32),
                         files={"test": [{"path": str(path)}]}, **kw)


def test_ruler_record_splits_context_question_prefix_and_finds_the_needle(tmp_path, tiny_tokenizer):
    recs = [ruler_record([needle("royal-chestnut", "4817362")], "royal-chestnut", "4817362", at=(i,))
            for i in (0, 3, 6)]
    f = write_jsonl(tmp_path / "test_1024.jsonl", recs)
    rows, rep = import_file(ruler_ds(f), ruler_ds(f).files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.read == rep.imported == 3 and not rep.skipped
    for line, r in enumerate(rows, 1):
        assert r["id"].endswith(f"/{line}")  # the line is the id (RULER's `index` is a character offset)
        assert r["question"] == "What is the special magic number for royal-chestnut mentioned in the provided text?"
        assert r["answer_prefix"] == "The special magic number for royal-chestnut mentioned in the provided text is"
        assert r["answer"] == "4817362" and r["outputs"] == ["4817362"] and r["metric"] == "string_match_all"
        joined = " ".join(r["context"])
        assert INSTR not in joined and "What is the special" not in joined and "\n" not in joined
        assert joined == recs[line - 1]["input"].split("\n")[1]  # nothing lost, nothing reordered
        fact = needle("royal-chestnut", "4817362")
        assert r["supporting_facts"] == [fact]
        assert fact in r["context"][r["supporting_chunks"][0]]  # whole inside its chunk
        assert r["target_tokens"] == 1024 and r["target_depth"] is None
        assert r["context_tokens"] == context_tokens(tiny_tokenizer, r["context"])
        assert r["declared_length"] == recs[line - 1]["length"]
        # chunks stay under chunk_tokens except a single sentence longer than a chunk
        assert all(n_tokens(tiny_tokenizer, c) <= 32 + 2 or "." not in c[:-1] for c in r["context"])
        _, start = fact_offset(tiny_tokenizer, r["context"], fact)  # independent: by tokenizing
        assert abs(r["depths"][0] - start / r["context_tokens"]) < 0.02
    d = [r["depths"][0] for r in rows]
    assert d[0] == 0.0 and d[0] < d[1] < d[2] < 1.0


def test_ruler_multikey_support_is_the_asked_needle(tmp_path, tiny_tokenizer):
    ns = [needle("woozy-gratitude", "1111111"), needle("ad hoc-comprehension", "2222222"),
          needle("scary-dump truck", "3333333")]
    rec = ruler_record(ns, "ad hoc-comprehension", "2222222", at=(1, 4, 7))
    f = write_jsonl(tmp_path / "test_2048.jsonl", [rec])
    ds = ruler_ds(f)
    (r,), _ = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert r["supporting_facts"] == [ns[1]] and r["target_tokens"] == 2048
    # the spans the weighting net learns: the asked needle sentence, and the value inside it
    (fs,), (ans,) = r["fact_spans"], r["answer_spans"]
    assert r["context"][fs["chunk"]][fs["start"]:fs["end"]] == ns[1] and fs["chunk"] == r["supporting_chunks"][0]
    assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == "2222222"
    for n in ns:  # distractors are kept whole too
        assert any(n in c for c in r["context"])


def test_ruler_needle_not_found_is_a_counted_skip_or_an_error(tmp_path, tiny_tokenizer):
    good = [ruler_record([needle("a-b", str(1000000 + i))], "a-b", str(1000000 + i)) for i in range(30)]
    bad = dict(good[0], outputs=["9999999"])  # answer not in the context
    f = write_jsonl(tmp_path / "test_1024.jsonl", good[:10] + [bad] + good[10:])
    ds = ruler_ds(f)
    rows, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.read == 31 and rep.imported == 30 and rep.skipped == {"needle_not_found": [11]}
    assert "1 needle_not_found (record 11)" in rep.summary()
    with pytest.raises(ImportFailed, match=r"record 11: needle_not_found"):
        ds2 = ruler_ds(f, on_bad_record="error")
        import_file(ds2, ds2.files["test"][0], "test", _counter(tiny_tokenizer))
    few = write_jsonl(tmp_path / "few_1024.jsonl", good[:3] + [bad])
    with pytest.raises(ImportFailed, match="max_skip_fraction"):
        ds3 = ruler_ds(few)
        import_file(ds3, ds3.files["test"][0], "test", _counter(tiny_tokenizer))


def test_ruler_value_outside_any_needle_and_wrong_key_are_skips(tmp_path, tiny_tokenizer):
    recs = [ruler_record([needle("a-b", "1234567")], "a-b", "1234567") for _ in range(40)]
    recs[5] = ruler_record([needle("a-b", "1234567")], "c-d", "1234567")  # needle is for another key
    recs[7] = dict(recs[7], outputs=["liquor"])  # in the text, but in no needle
    f = write_jsonl(tmp_path / "t_1024.jsonl", recs)
    ds = ruler_ds(f)
    _, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.skipped == {"needle_key_mismatch": [6], "needle_not_found": [8]}


def test_ruler_length_disagreeing_with_the_measured_one_is_a_counted_skip(tmp_path, tiny_tokenizer):
    recs = [ruler_record([needle("a-b", "1234567")], "a-b", "1234567") for _ in range(30)]
    recs[4] = dict(recs[4], length=3 * recs[4]["length"])
    f = write_jsonl(tmp_path / "t_1024.jsonl", recs)
    ds = ruler_ds(f)
    rows, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.skipped == {"length_mismatch": [5]} and len(rows) == 29
    assert rep.length_ratio is not None and rep.length_ratio > 0


@pytest.mark.parametrize("content,match", [
    ("", "empty file"),
    ("   \n\n", "empty file"),
    ("[]", "empty JSON list"),
    ('\n{"input": \n', r"line 2: not valid JSON"),
    ('"just a string"\n', "expected a JSON object"),
    ('{"input": "a\\nb\\nc", "question": "Where is Mary? ", "target": "garden"}\n',
     r"record 1: missing field\(s\) \['answer_prefix', 'length', 'outputs'\].*RULER"),
    ('{"input": "a\\nb\\nc", "outputs": ["1"], "length": "long", "answer_prefix": ""}\n',
     r"field 'length' is str .*expected int"),
    ('{"input": "a\\nb\\nc", "outputs": [], "length": 5, "answer_prefix": ""}\n', "non-empty list"),
])
def test_ruler_bad_files_are_clear_errors(tmp_path, tiny_tokenizer, content, match):
    f = tmp_path / "x_1024.jsonl"
    f.write_text(content)
    ds = ruler_ds(f)
    with pytest.raises(DataError, match=match) as err:
        import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert str(f) in str(err.value)


def test_missing_and_binary_files_are_clear_errors(tmp_path, tiny_tokenizer):
    ds = ruler_ds(tmp_path / "nope_1024.jsonl")
    with pytest.raises(DataError, match="file not found"):
        import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    b = tmp_path / "bin_1024.jsonl"
    b.write_bytes(b"\xff\xfe\x00junk")
    ds = ruler_ds(b)
    with pytest.raises(DataError, match="not UTF-8"):
        import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))


# ---------------------------------------------------------------- BABILong

NOISE = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
         "in want of a wife. However little known the feelings or views of such a man may be on his first "
         "entering a neighbourhood, this truth is so well fixed in the minds\nof the surrounding families.")


def babilong_record(facts, question, target):
    parts = [NOISE] + [x for f in facts for x in (f, NOISE)]
    return {"input": " ".join(parts), "question": question, "target": target}


def bab_ds(path, **kw):
    return ImportDataset(name="babilong_bench/qa1", format="babilong", chunk_tokens=48,
                         files={"test": [{"path": str(path)}]}, **kw)


def test_babilong_qa1_support_is_the_persons_last_move(tmp_path, tiny_tokenizer):
    facts = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went back to the kitchen.",
             "Sandra journeyed to the garden."]
    recs = [babilong_record(facts, "Where is Mary? ", "kitchen")] * 3
    f = write_jsonl(tmp_path / "test_2k.jsonl", recs)
    ds = bab_ds(f)
    rows, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    r = rows[0]
    assert rep.imported == 3 and not rep.skipped and not rep.notes
    assert r["question"] == "Where is Mary?" and r["answer"] == "kitchen" and r["answer_prefix"] == ""
    assert r["supporting_facts"] == ["Mary went back to the kitchen."] and r["metric"] == "babilong_label"
    assert "Mary went back to the kitchen." in r["context"][r["supporting_chunks"][0]]
    assert r["target_tokens"] == 2000
    (fs,), (ans,) = r["fact_spans"], r["answer_spans"]
    assert r["context"][fs["chunk"]][fs["start"]:fs["end"]] == "Mary went back to the kitchen."
    assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == "kitchen"
    assert "\n" in " ".join(r["context"])  # the book's line breaks survive chunking
    for fact in facts:
        assert any(fact in c for c in r["context"])
    assert r["context_tokens"] == context_tokens(tiny_tokenizer, r["context"])


def test_babilong_qa1_ask_every_key_asks_each_moving_person_on_train_only(tmp_path, tiny_tokenizer):
    facts = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went back to the kitchen.",
             "Sandra journeyed to the garden.", "John travelled to the office."]
    f = write_jsonl(tmp_path / "train_1k.jsonl", [babilong_record(facts, "Where is Mary? ", "kitchen")] * 2)
    ds = ImportDataset(name="babilong_bench/qa1", format="babilong", chunk_tokens=48, ask_every_key=True,
                       files={"train": [{"path": str(f)}], "test": [{"path": str(f)}]})
    rows, rep = import_file(ds, ds.files["train"][0], "train", _counter(tiny_tokenizer))
    assert len(rows) == 6 and rep.notes == {"questions_added_for_other_persons": 2} and not rep.skipped
    first = rows[:3]
    # the record's own question first, then each other person, answered by their LAST move
    assert [(r["question"], r["answer"]) for r in first] == [
        ("Where is Mary?", "kitchen"), ("Where is John?", "office"), ("Where is Sandra?", "garden")]
    assert [r["supporting_facts"] for r in first] == [
        ["Mary went back to the kitchen."], ["John travelled to the office."], ["Sandra journeyed to the garden."]]
    assert len({r["id"] for r in rows}) == 6 and all(r["context"] == first[0]["context"] for r in first)
    for r in first:
        (ans,) = r["answer_spans"]
        assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == r["answer"]
    test, _ = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert [r["question"] for r in test] == ["Where is Mary?"] * 2  # test asks what the benchmark asks
    from perk.meta.trainer import make_episodes
    eps = make_episodes(first, tiny_tokenizer, "sentence")
    assert len(eps) == 1 and eps[0].questions["input_ids"].shape[0] == 3


def test_babilong_bad_records(tmp_path, tiny_tokenizer):
    ok = babilong_record(["John went to the office."], "Where is John? ", "office")
    recs = [ok] * 30 + [babilong_record(["John went to the office."], "Where is John? ", "garden")]
    f = write_jsonl(tmp_path / "t_1k.jsonl", recs)
    ds = bab_ds(f)
    _, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.skipped == {"answer_not_in_context": [31]}
    # the support rule disagreeing with the target is kept but counted
    two = babilong_record(["John went to the office.", "Mary went to the garden."], "Where is John? ", "office")
    noted = [two] * 3 + [babilong_record(["John went to the office.", "John went to the garden."],
                                         "Where is John? ", "office")]
    f2 = write_jsonl(tmp_path / "n_1k.jsonl", noted)
    ds2 = bab_ds(f2)
    rows, rep = import_file(ds2, ds2.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.notes == {"support_not_recovered": 1} and rows[-1]["supporting_facts"] == []
    # a RULER file given as BABILong: missing fields named
    r = write_jsonl(tmp_path / "r_1k.jsonl", [ruler_record([needle("a-b", "1")], "a-b", "1")])
    with pytest.raises(DataError, match=r"missing field\(s\) \['question', 'target'\].*BABILong"):
        ds3 = bab_ds(r)
        import_file(ds3, ds3.files["test"][0], "test", _counter(tiny_tokenizer))


def test_babilong_parquet_and_json_list_sources(tmp_path, tiny_tokenizer):
    import pyarrow as pa
    recs = [babilong_record(["John went to the office."], "Where is John? ", "office")] * 2
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "a_1k.parquet")
    (tmp_path / "b_1k.json").write_text(json.dumps(recs))
    for name in ("a_1k.parquet", "b_1k.json"):
        ds = bab_ds(tmp_path / name)
        rows, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
        assert rep.imported == 2 and rows[0]["supporting_facts"] == ["John went to the office."]


def test_hf_dataset_offline_fails_naming_where_it_looked(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    ds = ImportDataset(name="babilong_bench/qa1", format="babilong",
                       files={"test": [{"hf_dataset": "RMT-team/babilong", "hf_config": "1k", "hf_split": "qa1"}]})
    with pytest.raises(DataError, match=r"RMT-team/babilong.*HF datasets cache .*hf/datasets.*offline") as err:
        import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert "Traceback" not in str(err.value)


# ---------------------------------------------------------------- reference PERK samples

@pytest.mark.skipif(not REF.exists(), reason="reference samples not in this checkout's ../shared")
def test_every_reference_sample_imports(tmp_path, tiny_tokenizer):
    p = Params()
    refs = [d for d in p.imports.datasets if d.format == "perk_reference"]
    assert len(refs) == 7
    kinds = set()
    for d in refs:
        src = REF / Path(d.files["test"][0].path).relative_to("../shared/reference/perk-data-samples")
        d = ImportDataset.model_validate({**d.model_dump(), "files": {"test": [{"path": str(src)}]}})
        written, (rep,) = import_dataset(d, tiny_tokenizer, tmp_path)
        rows = pq.read_table(written[f"{d.name}/test"]).to_pylist()
        assert rows and rep.imported == len(rows) and not rep.skipped, rep.summary()
        for r in rows:
            kinds.add(r["task"])
            assert r["context_tokens"] == context_tokens(tiny_tokenizer, r["context"])
            for fact, c in zip(r["supporting_facts"], r["supporting_chunks"]):
                assert fact in r["context"][c]
        if "student_records" in d.name:
            assert rep.notes == {"elided_entry": 1}  # the samples' literal "..." entry, counted
            assert len(rows[0]["context"]) == 26  # one record per chunk
        if d.name == "perkref_student_records/recall":
            assert rows[0]["answer"] == "Alison Keith" and "Alison Keith" in rows[0]["supporting_facts"][0]
        if d.name == "perkref_babilong/qa3":
            assert rows[0]["metric"] == "babilong_label" and len(rows[0]["supporting_facts"]) == 3
        if "longgorilla" in d.name:
            assert len(rows[0]["context"]) == 14 and rows[0]["answer"] in rows[0]["supporting_facts"][0]
    assert len(kinds) == 3


def test_reference_bad_records(tmp_path, tiny_tokenizer):
    recs = [{"context": ["Mary went to the garden."], "question": "Where is Mary?", "answer": "garden",
             "support": ["Mary went to the garden."]}] * 20
    recs.append({"context": ["Nothing here."], "question": "Where is Mary?", "answer": "garden",
                 "support": ["Mary went to the garden."]})
    f = write_jsonl(tmp_path / "test.jsonl", recs)
    ds = ImportDataset(name="perkref_babilong/qa1", format="perk_reference", files={"test": [{"path": str(f)}]})
    rows, rep = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert rep.skipped == {"support_not_found": [21]} and len(rows) == 20
    g = write_jsonl(tmp_path / "g.jsonl", [{"database": [{"Student Id": "1"}], "questions": [{"question": "q"}]}])
    ds = ImportDataset(name="perkref_records/recall", format="perk_reference", files={"test": [{"path": str(g)}]})
    with pytest.raises(DataError, match=r"questions\[0\]: missing field\(s\) \['answer'\]"):
        import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))


# ---------------------------------------------------------------- stage, layout, config, CLI

def test_import_dataset_layout_schema_and_report(tmp_path, tiny_tokenizer):
    recs = [ruler_record([needle("a-b", str(1000000 + i))], "a-b", str(1000000 + i)) for i in range(4)]
    tr = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    te = write_jsonl(tmp_path / "test_4096.jsonl", recs[:2])
    ds = ImportDataset(name="ruler/niah_single_2", format="ruler",
                       files={"train": [{"path": str(tr)}], "test": [{"path": str(te), "limit": 1}]})
    out = tmp_path / "imports"
    written, reports = import_dataset(ds, tiny_tokenizer, out)
    assert set(written) == {"ruler/niah_single_2/train", "ruler/niah_single_2/test"}
    t = pq.read_table(out / "ruler" / "niah_single_2" / "train.parquet")
    assert t.schema.equals(IMPORT_SCHEMA) and all(t.schema.field(f.name).type.equals(f.type) for f in SCHEMA)
    assert pq.read_table(written["ruler/niah_single_2/test"]).num_rows == 1  # limit
    report = json.loads((out / "ruler" / "niah_single_2" / "report.json").read_text())
    assert [f["read"] for f in report["files"]] == [4, 1]
    assert not [p for p in out.rglob(".*")]  # atomic writes leave no temp files


def test_imported_tasks_are_valid_task_names_and_resolve(tmp_path, tiny_tokenizer):
    from perk.data.imports.tasks import chunk_tokens, eval_lengths, imported_rows, train_length
    from perk.stages.common import rows as task_rows
    p = Params()
    p2 = Params.model_validate({"meta_train": {"task": "ruler/niah_single_2"}, "baseline": {"task": "babilong_bench/qa1"},
                                "evaluate": {"tasks": ["ruler/niah_multikey_1", "needle/multikey"]}})
    assert p2.meta_train.task == "ruler/niah_single_2"
    with pytest.raises(Exception, match="neither a synth task"):
        Params.model_validate({"meta_train": {"task": "ruler/niah_nope"}})
    with pytest.raises(Exception, match="synth family"):
        ImportDataset(name="needle/x", format="ruler", files={"test": [{"path": "x"}]})
    with pytest.raises(Exception, match="exactly one of path or hf_dataset"):
        ImportDataset(name="ruler/x", format="ruler", files={"test": [{}]})
    q = p.model_copy(update={"imports": p.imports.model_copy(update={"out_dir": str(tmp_path / "imp")})})
    with pytest.raises(DataError, match="run `perk import`"):
        imported_rows(q, "ruler/niah_single_2", "train")
    recs = [ruler_record([needle("a-b", "1234567")], "a-b", "1234567")]
    f = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    ds = ImportDataset(name="ruler/niah_single_2", format="ruler", chunk_tokens=40, files={"train": [{"path": str(f)}]})
    import_dataset(ds, tiny_tokenizer, tmp_path / "imp")
    rows = task_rows(q, "ruler/niah_single_2", "train")
    assert len(rows) == 1 and rows[0]["subtask"] == "niah_single_2" and rows[0]["outputs"] == ["1234567"]
    assert chunk_tokens(q, "ruler/niah_single_2") == 64 and chunk_tokens(q, "needle/single") == 64
    assert train_length(q, "ruler/niah_single_2") == 1024 and train_length(q, "needle/single") == 512
    with pytest.raises(DataError, match="run `perk import`"):
        eval_lengths(q, "ruler/niah_single_2")  # no test split imported


def test_nominal_length_from_file_names():
    assert nominal_length("a/test_4096.jsonl") == 4096
    assert nominal_length("train_1k.jsonl") == 1000
    assert nominal_length("val_1024.jsonl") == 1024
    assert nominal_length("qa1.json") is None


def test_cli_import_bad_file_exits_2_without_traceback(tmp_path, tiny_tokenizer_dir, capsys):
    from perk.cli import main
    bad = tmp_path / "test_1024.jsonl"
    bad.write_text('{"input": "x"}\n')
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"tokenizer": {"out_dir": str(tiny_tokenizer_dir)}, "imports": {
        "out_dir": str(tmp_path / "imp"),
        "datasets": [{"name": "ruler/x", "format": "ruler", "files": {"test": [{"path": str(bad)}]}}]}}))
    assert main(["import", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "perk import: error:" in err and "record 1: missing field(s)" in err and "Traceback" not in err
    assert not (tmp_path / "imp" / "ruler" / "x" / "test.parquet").exists()


def _counter(tok):
    from perk.data.haystack import as_counter
    return as_counter(tok)


def test_cli_import_writes_every_enabled_dataset_and_corpus_reads_sources(tmp_path, tiny_tokenizer_dir, capsys):
    from perk.cli import main
    from perk.data.imports.tasks import corpus_texts
    recs = [ruler_record([needle("a-b", str(1000000 + i))], "a-b", str(1000000 + i)) for i in range(3)]
    tr = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    params = tmp_path / "params.yaml"
    tree = {"tokenizer": {"out_dir": str(tiny_tokenizer_dir)}, "imports": {
        "out_dir": str(tmp_path / "imp"), "datasets": [
            {"name": "ruler/x", "format": "ruler", "files": {"train": [{"path": str(tr)}]}},
            {"name": "ruler/off", "enabled": False, "format": "ruler", "files": {"train": [{"path": "missing"}]}}]}}
    params.write_text(json.dumps(tree))
    assert main(["import", "--params", str(params), "--no-progress"]) == 0
    assert (tmp_path / "imp" / "ruler" / "x" / "train.parquet").exists()
    assert json.loads((tmp_path / "imp" / "index.json").read_text())["ruler/x"]["rows"] == 3
    assert not (tmp_path / "imp" / "ruler" / "off").exists()
    texts = corpus_texts(load_params(params), 10)
    assert len(texts) == 3 and all("special magic number" in t for t in texts)
    assert sorted(t[-7:] for t in texts) == [str(1000000 + i) for i in range(3)]  # answer included
    assert corpus_texts(load_params(params), 0) == []


def test_import_is_a_registered_stage_run_through_the_stage_layer(tmp_path, tiny_tokenizer_dir, mlflow_store):
    # `perk import` = stages.call("import"): one MLflow run, DVC stage and deployment of the same name
    from perk import stages
    from perk.cli import main
    assert "import" in stages.names() and stages.get("import").name == "import"
    assert stages.names().index("tokenizer") < stages.names().index("import") < stages.names().index("pretrain")
    recs = [ruler_record([needle("a-b", str(1000000 + i))], "a-b", str(1000000 + i)) for i in range(2)]
    tr = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"tokenizer": {"out_dir": str(tiny_tokenizer_dir)}, "imports": {
        "out_dir": str(tmp_path / "imp"), "datasets": [
            {"name": "ruler/x", "format": "ruler", "files": {"train": [{"path": str(tr)}]}},
            {"name": "ruler/y", "format": "ruler", "files": {"train": [{"path": "missing.jsonl"}]}}]}}))
    assert main(["import", "--params", str(params), "--only", "ruler/x"]) == 0  # y (missing file) not touched
    assert (tmp_path / "imp" / "ruler" / "x" / "train.parquet").exists()
    assert main(["import", "--params", str(params), "--only", "ruler/nope"]) == 2
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])
    assert [r.data.tags.get("stage") for r in runs] == ["import"]


def test_a_dataset_with_no_file_present_is_skipped_loudly_unless_asked_for(tmp_path, tiny_tokenizer_dir, mlflow_store,
                                                                           capsys):
    # a fresh clone without ../shared: the default pipeline's import passes, saying what it skipped
    from perk.cli import main
    recs = [ruler_record([needle("a-b", str(1000000 + i))], "a-b", str(1000000 + i)) for i in range(2)]
    tr = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    stale = tmp_path / "imp" / "ruler" / "gone" / "train.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")  # a Parquet of an earlier run, when the files were there
    params = tmp_path / "params.yaml"
    cfg = {"tokenizer": {"out_dir": str(tiny_tokenizer_dir)}, "imports": {"out_dir": str(tmp_path / "imp"), "datasets": [
        {"name": "ruler/x", "format": "ruler", "files": {"train": [{"path": str(tr)}]}},
        {"name": "ruler/gone", "format": "ruler", "files": {"train": [{"path": str(tmp_path / "no/train_1024.jsonl")}],
                                                            "test": [{"path": str(tmp_path / "no/test_1024.jsonl")}]}}]}}
    params.write_text(json.dumps(cfg))
    assert main(["import", "--params", str(params), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "import: SKIPPED ruler/gone: none of its 2 files exists" in err and "no/train_1024.jsonl" in err
    index = json.loads((tmp_path / "imp" / "index.json").read_text())
    assert index["ruler/x"]["rows"] == 2 and index["ruler/gone"] == {"absent": [str(tmp_path / "no/train_1024.jsonl"),
                                                                                 str(tmp_path / "no/test_1024.jsonl")]}
    assert not stale.exists()
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])
    assert runs[0].data.tags["imports.absent"] == "ruler/gone"
    # named with --only, or imports.absent: error: an error naming the file
    assert main(["import", "--params", str(params), "--only", "ruler/gone"]) == 2
    assert "none of its files exists (first: " in capsys.readouterr().err
    assert main(["import", "--params", str(params), "-P", "imports.absent=error"]) == 2
    # some files present, some not: the missing file is an error, as for any listed file
    cfg["imports"]["datasets"][1]["files"]["train"] = [{"path": str(tr)}]
    params.write_text(json.dumps(cfg))
    assert main(["import", "--params", str(params)]) == 2
    assert "test_1024.jsonl" in capsys.readouterr().err


def test_haystack_swap_moves_the_needles_into_book_prose_on_the_train_split_only(tmp_path, tiny_tokenizer):
    """imports.haystack_swap: the train records' shared essay haystack is replaced by prose from
    the source file (bAbI facts removed); needles, spans and depths follow; val/test untouched."""
    book = [f"Chapter {i} the old sailor looked at the grey sea and said nothing for a while." for i in range(150)]
    src = write_jsonl(tmp_path / "book.jsonl", [{"input": " ".join(book[i:i + 30]) + " Mary moved to the garden.",
                                                 "question": "Where is Mary?", "target": "garden"}
                                                for i in range(0, 150, 30)])
    key, value = "royal-chestnut", "4817362"
    recs = [ruler_record([needle(key, value)], key, value, at=(i % 7,)) for i in range(40)]
    f = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    ds = ImportDataset(name="ruler/niah_single_2", format="ruler", chunk_tokens=32,
                       files={"train": [{"path": str(f)}], "test": [{"path": str(f)}]})
    import_dataset(ds, tiny_tokenizer, tmp_path / "out", haystack_swap_fraction=0.5, haystack_source=str(src))
    train = pq.read_table(tmp_path / "out/ruler/niah_single_2/train.parquet").to_pylist()
    test = pq.read_table(tmp_path / "out/ruler/niah_single_2/test.parquet").to_pylist()
    report = json.loads((tmp_path / "out/ruler/niah_single_2/report.json").read_text())
    swapped = [r for r in train if "sailor" in " ".join(r["context"])]
    n = report["files"][0]["notes"].get("haystack_swapped")
    assert n == len(swapped) and 10 <= n <= 30  # about half, counted in the report
    assert not any("sailor" in " ".join(r["context"]) for r in test)
    for r in swapped:
        joined = " ".join(r["context"])
        assert "hard liquor" not in joined and "Mary moved" not in joined  # essay gone, bAbI facts dropped
        (fs,), (ans,) = r["fact_spans"], r["answer_spans"]
        assert r["context"][fs["chunk"]][fs["start"]:fs["end"]] == needle(key, value)
        assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == value
        assert r["supporting_facts"] == [needle(key, value)]
        assert r["context_tokens"] == context_tokens(tiny_tokenizer, r["context"])
        src_tokens = context_tokens(tiny_tokenizer, [recs[int(r["id"].rsplit("/", 1)[1]) - 1]["input"].split("\n")[1]])
        longest = max(n_tokens(tiny_tokenizer, " " + b) for b in book)
        assert 0.95 * src_tokens <= r["context_tokens"] <= 1.05 * (src_tokens + longest)  # the source's length + one sentence
    # depth follows the source: needles placed first stay first
    first = [r for r in swapped if recs[int(r["id"].rsplit("/", 1)[1]) - 1]["input"].split("\n")[1].startswith("One of")]
    assert all(r["depths"][0] == 0.0 for r in first)
    with pytest.raises(DataError, match="usable sentences"):
        import_dataset(ds, tiny_tokenizer, tmp_path / "out2", haystack_swap_fraction=0.5,
                       haystack_source=str(write_jsonl(tmp_path / "tiny.jsonl", [{"input": "Too short."}])))


def test_ruler_ask_every_key_adds_one_question_per_other_needle_on_train_only(tmp_path, tiny_tokenizer):
    keys, values = ["woozy-gratitude", "ad hoc-comprehension", "scary-dump truck"], ["1111111", "2222222", "3333333"]
    recs = [ruler_record([needle(k, v) for k, v in zip(keys, values)], keys[1], values[1], at=(1, 3, 5))] * 2
    f = write_jsonl(tmp_path / "train_1024.jsonl", recs)
    ds = ImportDataset(name="ruler/niah_multikey_1", format="ruler", chunk_tokens=32, ask_every_key=True,
                       files={"train": [{"path": str(f)}], "test": [{"path": str(f)}]})
    rows, rep = import_file(ds, ds.files["train"][0], "train", _counter(tiny_tokenizer))
    assert len(rows) == 6 and rep.imported == 6 and rep.notes == {"questions_added_for_other_keys": 2}
    first = rows[:3]
    assert [r["answer"] for r in first] == ["2222222", "1111111", "3333333"]  # the record's own question first
    assert len({r["id"] for r in rows}) == 6 and all(r["context"] == first[0]["context"] for r in first)
    for r, k, v in zip(first, [keys[1], keys[0], keys[2]], ["2222222", "1111111", "3333333"]):
        assert r["question"] == f"What is the special magic number for {k} mentioned in the provided text?"
        assert r["answer_prefix"] == f"The special magic number for {k} mentioned in the provided text is"
        assert r["supporting_facts"] == [needle(k, v)] and r["outputs"] == [v]
        (ans,) = r["answer_spans"]
        assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == v
    test, _ = import_file(ds, ds.files["test"][0], "test", _counter(tiny_tokenizer))
    assert len(test) == 2 and all(r["answer"] == "2222222" for r in test)  # test asks what the benchmark asks
    # with the haystack swapped too, each sibling's answer span still points at its needle's value
    from perk.data.imports import haystack_swap
    book = [f"Chapter {i} the old sailor looked at the grey sea and said nothing." for i in range(120)]
    src = write_jsonl(tmp_path / "book.jsonl", [{"input": " ".join(book)}])
    pool = haystack_swap.prose_pool(str(src), _counter(tiny_tokenizer))
    swapped, _ = import_file(ds, ds.files["train"][0], "train", _counter(tiny_tokenizer), swap=(1.0, pool))
    for r in swapped:
        (ans,) = r["answer_spans"]
        assert "sailor" in " ".join(r["context"]) and r["context"][ans["chunk"]][ans["start"]:ans["end"]] == r["answer"]
    # meta-training groups the siblings: one episode, three questions, every needle a support span
    from perk.meta.trainer import make_episodes
    eps = make_episodes(first, tiny_tokenizer, "sentence")
    assert len(eps) == 1 and eps[0].questions["input_ids"].shape[0] == 3


def test_imports_ask_every_key_override_applies_to_every_dataset(tmp_path, tiny_tokenizer_dir, mlflow_store):
    from perk.cli import main
    facts = ["Mary moved to the bathroom.", "John went to the hallway."]
    tr = write_jsonl(tmp_path / "train_1k.jsonl", [babilong_record(facts, "Where is Mary? ", "bathroom")] * 2)
    params = tmp_path / "params.yaml"
    ds = {"name": "babilong_bench/qa1", "format": "babilong", "ask_every_key": True, "files": {"train": [{"path": str(tr)}]}}
    for override, n in (([], 4), (["-P", "imports.ask_every_key=false"], 2)):
        params.write_text(json.dumps({"tokenizer": {"out_dir": str(tiny_tokenizer_dir)},
                                      "imports": {"out_dir": str(tmp_path / "imp"), "datasets": [ds]}}))
        assert main(["import", "--params", str(params), "--no-progress", *override]) == 0
        assert json.loads((tmp_path / "imp" / "index.json").read_text())["babilong_bench/qa1"]["rows"] == n


def test_val_lengths_write_the_val_records_at_longer_lengths_in_prose(tmp_path, tiny_tokenizer):
    """imports.val_lengths: split val_<L> holds every val record again, its haystack replaced by about
    L tokens of the prose source, the needle whole at its depth; train/val/test as without it."""
    book = [f"Chapter {i} the old sailor looked at the grey sea and said nothing for a while." for i in range(400)]
    src = write_jsonl(tmp_path / "book.jsonl", [{"input": " ".join(book)}])
    key, value = "royal-chestnut", "4817362"
    recs = [ruler_record([needle(key, value)], key, value, at=(i % 7,)) for i in range(6)]
    f = write_jsonl(tmp_path / "val_1024.jsonl", recs)
    ds = ImportDataset(name="ruler/niah_single_2", format="ruler", chunk_tokens=32,
                       files={"train": [{"path": str(f)}], "val": [{"path": str(f)}]})
    plain, _ = import_dataset(ds, tiny_tokenizer, tmp_path / "a", haystack_source=str(src))
    written, _ = import_dataset(ds, tiny_tokenizer, tmp_path / "b", haystack_source=str(src), val_lengths=[600, 1200])
    assert sorted(written) == sorted(plain) + ["ruler/niah_single_2/val_1200", "ruler/niah_single_2/val_600"]
    for split in ("train", "val"):  # the configured splits are what they were
        assert (tmp_path / f"a/ruler/niah_single_2/{split}.parquet").read_bytes() == \
            (tmp_path / f"b/ruler/niah_single_2/{split}.parquet").read_bytes()
    val = pq.read_table(tmp_path / "b/ruler/niah_single_2/val.parquet").to_pylist()
    longest = max(n_tokens(tiny_tokenizer, " " + b) for b in book)
    for n in (600, 1200):
        rows = pq.read_table(tmp_path / f"b/ruler/niah_single_2/val_{n}.parquet").to_pylist()
        assert len(rows) == len(val) and all(r["split"] == f"val_{n}" and r["target_tokens"] == n for r in rows)
        for r, v in zip(rows, val):
            assert "sailor" in " ".join(r["context"]) and "hard liquor" not in " ".join(r["context"])
            assert n <= r["context_tokens"] <= 1.05 * (n + longest)  # the budget + one sentence (+ chunk seams)
            (fs,), (ans,) = r["fact_spans"], r["answer_spans"]
            assert r["context"][fs["chunk"]][fs["start"]:fs["end"]] == needle(key, value)
            assert r["context"][ans["chunk"]][ans["start"]:ans["end"]] == r["answer"] == v["answer"]
            assert abs(r["depths"][0] - v["depths"][0]) < 0.1  # the needle where the source had it
    # a task split the config does not produce is refused by name
    from perk.config import validate_params
    from perk.data.imports.tasks import imported_rows
    p = validate_params({"imports": {"out_dir": str(tmp_path / "b"), "val_lengths": [600],
                                     "datasets": [ds.model_dump()]}})
    assert len(imported_rows(p, "ruler/niah_single_2", "val_600")) == len(val)
    with pytest.raises(DataError, match=r"split 'val_1200' needs 1200 in imports.val_lengths \(it is \[600\]\)"):
        imported_rows(p, "ruler/niah_single_2", "val_1200")
    # val_haystack_source, when given, is what fills them (text no training stage reads)
    other = write_jsonl(tmp_path / "other.jsonl", [{"input": " ".join(b.replace("sailor", "baker") for b in book)}])
    import_dataset(ds, tiny_tokenizer, tmp_path / "c", haystack_source=str(src), val_lengths=[600],
                   val_haystack_source=str(other))
    rows = pq.read_table(tmp_path / "c/ruler/niah_single_2/val_600.parquet").to_pylist()
    assert all("baker" in " ".join(r["context"]) and "sailor" not in " ".join(r["context"]) for r in rows)
    # dropped from the config, the extra split does not linger
    import_dataset(ds, tiny_tokenizer, tmp_path / "b", haystack_source=str(src))
    assert not (tmp_path / "b/ruler/niah_single_2/val_600.parquet").exists()
