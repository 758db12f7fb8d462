import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import context_tokens

from perk.config import ConfigError, SynthConfig, validate_params
from perk.data.io import DataError, read_rows
from perk.data.lexicon import pool
from perk.data.synth import bench_synth, sample_corpus, synthesize

SMALL = {
    "seed": 5,
    "tasks": {name: {"n_train": 8, "n_val": 4, "n_test": 1, "train_lengths": [256],
                     "eval_lengths": [256, 512, 2048], "depths": [0.0, 0.5, 1.0], "chunk_tokens": 64}
              for name in ("needle", "babilong", "records", "retrieval")},
}


def cfg(**changes) -> SynthConfig:
    tree = {**SMALL, **changes}
    return SynthConfig.model_validate(tree)


def digests(paths: dict) -> dict:
    return {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in paths.items()}


@pytest.fixture(scope="module")
def synth_run(tiny_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return synthesize(cfg(), tiny_tokenizer, out, progress=False)


def test_synthesize_writes_every_split_with_the_grid(synth_run, tiny_tokenizer):
    c = cfg()
    assert sorted(synth_run) == sorted(f"{t}/{s}" for t in SMALL["tasks"] for s in ("train", "val", "test"))
    for key, path in synth_run.items():
        task, split = key.split("/")
        spec = getattr(c.tasks, task)
        rows = read_rows(path, task=task)
        if split == "test":
            cells = len(spec.eval_lengths) * len(spec.subtasks) * spec.n_test
            assert len(rows) == cells * (1 if task == "retrieval" else len(spec.depths))
            assert {r["target_tokens"] for r in rows} == set(spec.eval_lengths)
        else:
            n = spec.n_train if split == "train" else spec.n_val
            extra = 0
            if task == "needle" and spec.ask_all_keys:  # multikey contexts asked once per key
                extra = sum(1 for r in rows if r["subtask"] == "multikey" and "/k" in r["id"])
                assert extra == (spec.num_keys - 1) * sum(1 for r in rows if r["subtask"] == "multikey"
                                                         and "/k" not in r["id"])
            siblings = sum(1 for r in rows if "/ask" in r["id"])  # other families: more questions per context
            assert len({tuple(r["context"]) for r in rows if "/ask" in r["id"]}
                       - {tuple(r["context"]) for r in rows if "/ask" not in r["id"]}) == 0
            assert len(rows) == n + extra + siblings
            assert {r["subtask"] for r in rows} == set(spec.subtasks[:n])  # spread evenly over subtasks
            assert all(r["target_depth"] is None or task == "retrieval" for r in rows)
        for r in rows:
            assert r["split"] == split
            n = context_tokens(tiny_tokenizer, r["context"])
            assert n == r["context_tokens"]
            assert abs(n - r["target_tokens"]) <= 0.05 * r["target_tokens"]


def test_seeds_and_ids_are_disjoint_across_splits(synth_run):
    seeds, ids = {}, set()
    for key, path in synth_run.items():
        rows = read_rows(path)
        split = key.split("/")[1]
        seeds.setdefault(split, set()).update(r["seed"] for r in rows)
        assert not ids & {r["id"] for r in rows}
        ids |= {r["id"] for r in rows}
    assert not seeds["train"] & seeds["val"] and not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]


def test_no_test_key_or_name_appears_in_train_or_val(synth_run):
    test_words, seen_words = set(), set()
    for key, path in synth_run.items():
        words = set()
        for r in read_rows(path):
            text = " ".join(r["context"] + [r["question"], r["answer"]])
            words |= set(re.findall(r"[A-Za-z]+", text))
        if key.endswith("/test"):
            test_words |= words
        else:
            seen_words |= words
    held_out = set().union(*(set(pool(k, "test")) for k in ("person", "surname", "key", "api")))
    used = held_out & test_words
    assert len(used) > 50  # test data does use its held-out names and keys
    assert not held_out & seen_words


def test_same_params_give_identical_files_in_another_process(synth_run, tiny_tokenizer_dir, tmp_path):
    out = tmp_path / "again"
    code = ("import json, sys; from perk.config import SynthConfig; from perk.tokenizer import load_tokenizer; "
            "from perk.data.synth import synthesize; "
            "cfg = SynthConfig.model_validate(json.loads(sys.argv[1])); "
            "synthesize(cfg, load_tokenizer(sys.argv[2]), sys.argv[3], progress=False)")
    import json
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, json.dumps(SMALL), str(tiny_tokenizer_dir), str(out)],
                   check=True, env=env)
    again = {k: out / k.split("/")[0] / f"{k.split('/')[1]}.parquet" for k in synth_run}
    assert digests(again) == digests(synth_run)


def test_another_seed_gives_other_files(synth_run, tiny_tokenizer_dir, tmp_path):
    small = {**SMALL, "tasks": {"needle": SMALL["tasks"]["needle"],
                                **{t: {"enabled": False} for t in ("babilong", "records", "retrieval")}}}
    # a saved tokenizer directory works in place of a tokenizer object
    other = synthesize(SynthConfig.model_validate({**small, "seed": 6}), tiny_tokenizer_dir, tmp_path,
                       progress=False)
    assert sorted(other) == ["needle/test", "needle/train", "needle/val"]
    a, b = digests(other), digests(synth_run)
    assert all(a[k] != b[k] for k in other)


# ------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("tree,key", [
    ({"synth": {"tasks": {"needle": {"depths": [0.0, 1.5]}}}}, "synth.tasks.needle.depths"),
    ({"synth": {"tasks": {"records": {"subtasks": ["recall", "sum"]}}}}, "synth.tasks.records"),
    ({"synth": {"tasks": {"babilong": {"num_facts": 1}}}}, "synth.tasks.babilong.num_facts"),
    ({"synth": {"tasks": {"needle": {"n_train": -1}}}}, "synth.tasks.needle.n_train"),
    ({"synth": {"tasks": {"retrieval": {"colour": 3}}}}, "synth.tasks.retrieval.colour"),
    ({"synth": {"seed": "x"}}, "synth.seed"),
])
def test_bad_params_name_the_key(tree, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate_params(tree)


def test_length_too_short_for_the_facts_names_the_key(tiny_tokenizer, tmp_path):
    tree = {"tasks": {"needle": {"subtasks": ["multikey"], "num_keys": 8, "chunk_tokens": 8,
                                 "train_lengths": [32], "eval_lengths": [256], "n_train": 2},
                      **{t: {"enabled": False} for t in ("babilong", "records", "retrieval")}}}
    with pytest.raises(ConfigError, match=r"synth\.tasks\.needle\.train_lengths.*cannot hold"):
        synthesize(SynthConfig.model_validate(tree), tiny_tokenizer, tmp_path, progress=False)


def test_bad_files_raise_data_error(synth_run, tmp_path):
    good = Path(synth_run["records/val"])
    table = pq.read_table(good)

    missing = tmp_path / "missing.parquet"
    pq.write_table(table.drop(["answer"]), missing)
    with pytest.raises(DataError, match=r"missing column.*answer"):
        read_rows(missing)

    wrong = tmp_path / "wrong.parquet"
    i = table.schema.get_field_index("context_tokens")
    pq.write_table(table.set_column(i, "context_tokens", pa.array([str(x) for x in table["context_tokens"].to_pylist()])), wrong)
    with pytest.raises(DataError, match=r"context_tokens.*expected int32"):
        read_rows(wrong)

    data = good.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_rows(truncated)

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"definitely not parquet" * 20)
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_rows(garbage)

    with pytest.raises(DataError, match=r"expected task 'needle', file holds \['records'\]"):
        read_rows(good, task="needle")

    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "nope.parquet")


def test_corrupted_data_pages_raise_data_error(synth_run, tmp_path):
    data = bytearray(Path(synth_run["needle/test"]).read_bytes())
    # Keep header and footer, scramble the compressed pages in between.
    for i in range(64, len(data) // 2):
        data[i] ^= 0x5A
    bad = tmp_path / "corrupted.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError):
        read_rows(bad)


def test_sample_corpus_and_bench(tiny_tokenizer):
    texts = sample_corpus(120, 3)
    assert texts == sample_corpus(120, 3) and texts != sample_corpus(120, 4)
    joined = "\n".join(texts)
    for marker in ("special magic word", "pass key", "Student record", "The API to", " to the "):
        assert marker in joined
    rows = bench_synth(tiny_tokenizer, lengths=(512,))
    assert {r["task"] for r in rows} == {"needle", "babilong", "records", "retrieval"}
    assert all(r["examples_per_s"] > 0 and r["tokens_per_s"] > 0 and r["length"] == 512 for r in rows)
