"""The benchmarks' own metrics on hand-made cases (definitions: ../shared/benchmarks/README.md)."""
import pytest

from perk.benchmark_metrics import (babilong_label, benchmark_score, labels_for, ruler_postprocess,
                                    score_prediction, string_match_all, string_match_part)

QA1 = labels_for("qa1")


def test_ruler_postprocess_replaces_control_characters():
    assert ruler_postprocess("  12\x0034\t5 \n") == "12\n34\n5"


def test_string_match_all_is_fraction_of_outputs_found():
    assert string_match_all(" 1234567.", ["1234567"]) == 1.0
    assert string_match_all("The number is 7654321", ["1234567"]) == 0.0
    assert string_match_all("1234567 and 2222222", ["1234567", "2222222", "3333333", "4444444"]) == 0.5
    assert string_match_all("ROYAL-chestnut", ["royal-Chestnut"]) == 1.0  # case-insensitive
    assert string_match_all("12345678", ["1234567"]) == 1.0  # a substring counts, as in RULER
    # a control character inside the value breaks it (RULER replaces it by a newline)
    assert string_match_all("123\x01" + "4567", ["1234567"]) == 0.0


def test_string_match_part_is_any_output_found():
    assert string_match_part("it is 2222222", ["1111111", "2222222"]) == 1.0
    assert string_match_part("it is 3333333", ["1111111", "2222222"]) == 0.0


def test_benchmark_score_is_percent_rounded_to_two():
    assert benchmark_score([1, 0, 0]) == 33.33
    assert benchmark_score([string_match_all("1", ["1", "2", "3"])]) == 33.33
    with pytest.raises(ValueError):
        benchmark_score([])


@pytest.mark.parametrize("output,ok", [
    ("kitchen", True),
    ("The most recent location of Mary is kitchen.", True),
    ("Kitchen. Earlier she was in the garden.", True),        # only the first sentence counts
    ("kitchen or garden", False),                             # two labels: not the only one
    ("garden", False),
    ("", False),
    ("<example> kitchen", False),                             # cut before <example>
    ("the kitchen, not the bathroom", False),
])
def test_babilong_label_first_sentence_only_label(output, ok):
    assert babilong_label("kitchen", output, "Where is Mary? ", QA1) == float(ok)


def test_babilong_label_ignores_labels_named_in_the_question():
    q = "Where was the milk before the bedroom?"
    assert babilong_label("office", "bedroom, then office", q, QA1) == 1.0
    assert babilong_label("bedroom", "bedroom", q, QA1) == 0.0  # a question label is never the answer


def test_babilong_label_qa8_needs_all_items_and_nothing_else():
    labels = labels_for("qa8")
    assert babilong_label("apple,milk", "apple, milk", "What is Mary carrying?", labels) == 1.0
    assert babilong_label("apple,milk", "apple", "What is Mary carrying?", labels) == 0.0
    assert babilong_label("apple,milk", "apple, milk, football", "What is Mary carrying?", labels) == 0.0


def test_score_prediction_dispatches_on_the_row_metric():
    ruler = {"id": "r", "metric": "string_match_all", "outputs": ["1234567"], "answer": "1234567",
             "question": "?", "subtask": "niah_single_2"}
    assert score_prediction(ruler, "is 1234567") == 1.0
    bab = {"id": "b", "metric": "babilong_label", "outputs": ["garden"], "answer": "garden",
           "question": "Where is John?", "subtask": "qa1"}
    assert score_prediction(bab, "garden. kitchen") == 1.0
    assert score_prediction(bab, None) is None
    assert score_prediction({"id": "s", "answer": "x", "question": "?"}, "x") is None  # synth row
    with pytest.raises(ValueError, match="unknown metric"):
        score_prediction({**ruler, "metric": "bleu"}, "x")
    with pytest.raises(ValueError, match="label set"):
        labels_for("qa99")


def test_summarize_benchmark_per_method_task_length():
    from perk.evaluate_bench import benchmark_scores, summarize_benchmark
    rows = {f"r{i}": {"id": f"r{i}", "metric": "string_match_all", "outputs": [str(1000000 + i)],
                      "answer": str(1000000 + i), "question": "?", "subtask": "niah_single_2"} for i in range(3)}
    preds = [{"id": "r0", "method": "perk", "task": "ruler/niah_single_2", "length": 1024, "prediction": "1000000",
              "status": "ok"},
             {"id": "r1", "method": "perk", "task": "ruler/niah_single_2", "length": 1024, "prediction": "nope",
              "status": "ok"},
             {"id": "r2", "method": "perk", "task": "ruler/niah_single_2", "length": 1024, "prediction": "",
              "status": "out_of_range"},
             {"id": "s0", "method": "perk", "task": "needle/single", "length": 512, "prediction": "x", "status": "ok"}]
    s = summarize_benchmark(benchmark_scores(preds, rows))
    cell = s["perk"]["ruler/niah_single_2"]["1024"]
    assert cell["score"] == 50.0 and cell["n"] == 2 and cell["unscored"] == 1 and cell["metric"] == "string_match_all"
    assert "needle/single" not in s["perk"]  # synthesized rows have no benchmark metric


def test_synthesized_needle_rows_are_scored_as_ruler_scores_niah(tmp_path):
    """needle is RULER's NIAH: its rows get string_match_all over the answer's values (order-free),
    other synthesized families get no benchmark metric, imported rows keep their own."""
    import json

    from perk.evaluate_bench import report, with_benchmark_metric
    mv = {"id": "n0", "task": "needle", "subtask": "multivalue", "answer": "epoch, fearless, icy, plucky", "question": "?"}
    pk = {"id": "n1", "task": "needle", "subtask": "passkey", "answer": "71921", "question": "?"}
    bab = {"id": "b0", "task": "babilong", "subtask": "qa1", "answer": "garden", "question": "Where is John?"}
    imp = {"id": "r0", "task": "ruler", "subtask": "niah_single_2", "metric": "string_match_part", "outputs": ["1", "2"],
           "answer": "1", "question": "?"}
    assert with_benchmark_metric(mv)["outputs"] == ["epoch", "fearless", "icy", "plucky"]
    assert with_benchmark_metric(mv)["metric"] == "string_match_all"
    assert with_benchmark_metric(bab) == bab and with_benchmark_metric(imp) == imp
    preds = [{"id": "n0", "method": "perk", "task": "needle/multivalue", "length": 512, "status": "ok",
              "prediction": "icy, epoch, icy, plucky"},  # 3 of 4 values, out of order: 0.75, EM 0
             {"id": "n1", "method": "perk", "task": "needle/passkey", "length": 512, "status": "ok", "prediction": "71921"},
             {"id": "b0", "method": "perk", "task": "babilong/qa1", "length": 512, "status": "ok", "prediction": "garden"}]
    path = report(tmp_path, preds, {"needle/multivalue": [mv], "needle/passkey": [pk], "babilong/qa1": [bab]})
    got = json.loads(path.read_text())["perk"]
    assert got["needle/multivalue"]["512"]["score"] == 75.0 and got["needle/passkey"]["512"]["score"] == 100.0
    assert "babilong/qa1" not in got
    none = report(tmp_path / "none", preds[2:], {"babilong/qa1": [bab]})
    assert json.loads(none.read_text()) == {}


def test_report_prints_the_benchmark_table():
    from perk.report_md import benchmark_table
    bench = {"perk": {"needle/multivalue": {"512": {"metric": "string_match_all", "score": 86.5, "n": 50, "unscored": 0,
                                                    "ci": [74.4, 93.39]},
                                            "4096": {"metric": "string_match_all", "score": None, "n": 0, "unscored": 50,
                                                     "ci": None}}}}
    lines = benchmark_table(bench, "needle/multivalue")
    assert lines[0] == "| method (string_match_all) | 512 | 4096 |"
    assert lines[2] == "| PERK | 86.5% [74, 93] | - |"
    assert benchmark_table(bench, "babilong/qa1") == []


def test_report_of_an_imported_task(tmp_path):
    """`perk report` on an imported task: its EM table (no train split here: lengths shown bare) and
    its benchmark table; a synthesized family lookup would fail for `ruler/...`."""
    import json

    from perk.config import load_params
    from perk.report_md import _chain
    p = load_params("params.yaml", [f"evaluate.out_dir={tmp_path}/eval", f"imports.out_dir={tmp_path}/imports",
                                    "evaluate.tasks=[ruler/niah_single_2]", f"meta_train.out_dir={tmp_path}/m",
                                    f"baseline.out_dir={tmp_path}/b"])
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval/metrics.json").write_text(json.dumps(
        {"perk": {"ruler_niah_single_2": {"em_1024": 0.5, "em_1024_ci": [0.3, 0.7]}}}))
    (tmp_path / "eval/benchmark.json").write_text(json.dumps(
        {"perk": {"ruler/niah_single_2": {"1024": {"metric": "string_match_all", "score": 55.0, "n": 50,
                                                   "unscored": 0, "ci": [41.0, 68.0]}}}}))
    text = "\n".join(_chain(p))
    assert "| method | 1024 |" in text and "| PERK | 50% [30, 70] |" in text
    assert "| PERK | 55.0% [41, 68] |" in text


def test_from_predictions_rescores_a_finished_needle_run(tmp_path, tiny_tokenizer):
    """A finished run's predictions.parquet is rescored with the test rows the evaluate stage read:
    right answers 100, an answer holding none of the values 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from perk.config import load_params
    from perk.data.synth import synthesize
    from perk.evaluate_bench import from_predictions
    from perk.stages.common import rows as task_rows
    from test_pretrain import MICRO

    p = load_params(MICRO, [f"synth.out_dir={tmp_path}/synth"])
    synthesize(p.synth, tiny_tokenizer, p.synth.out_dir, progress=False)
    task = p.meta_train.task
    test = task_rows(p, task, "test")
    preds = [{"id": r["id"], "method": m, "task": task, "length": r["target_tokens"], "status": "ok",
              "prediction": r["answer"] if m == "perk" else "nothing"} for r in test for m in ("perk", "baseline")]
    pq.write_table(pa.Table.from_pylist(preds), tmp_path / "predictions.parquet")
    got = from_predictions(p, tmp_path / "predictions.parquet")
    lengths = {str(r["target_tokens"]) for r in test}
    assert task.startswith("needle/") and set(got["perk"][task]) == lengths
    assert all(c["score"] == 100.0 and c["metric"] == "string_match_all" for c in got["perk"][task].values())
    assert all(c["score"] == 0.0 for c in got["baseline"][task].values())
