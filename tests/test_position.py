"""The position-bias protocol (issue #14): four matrix cells, one per gold-document train position,
each evaluated at every position -> the train x test matrix per method, its spreads and heatmaps."""
import json

import pytest

from perk.config import ConfigError, load_params
from perk.position import POSITIONS, markdown, matrix

CELLS = {pos: f"retrieval-{pos}" for pos in POSITIONS}


def summary(em_by_test: dict[str, float], n: int = 20, length: int = 512) -> dict:
    """An evaluate summary.json as perk.evaluate.summarize writes it (only the keys the matrix reads)."""
    def cell(em):
        return {"by_length": {str(length): {"em": em, "em_lo": max(0.0, em - 0.2), "em_hi": min(1.0, em + 0.2), "n": n}}}
    return {m: {f"retrieval/{t}": cell(em) for t, em in em_by_test.items()} for m in ("perk", "baseline")}


def test_matrix_rows_are_train_positions_and_spread_is_max_minus_min():
    sums = {train: summary({test: (0.9 if test == train else 0.5) for test in POSITIONS}) for train in POSITIONS}
    sums["random"] = summary({t: 0.8 for t in POSITIONS})
    m = matrix(sums, "retrieval", 512, {p: f"{p}.json" for p in POSITIONS})
    g = m["methods"]["perk"]
    assert m["rows"] == m["cols"] == list(POSITIONS)
    assert g["em"][0] == [0.9, 0.5, 0.5, 0.5] and g["em"][1] == [0.5, 0.9, 0.5, 0.5]
    assert g["spread"] == {"first": 0.4, "middle": 0.4, "last": 0.4, "random": 0.0} and g["max_spread"] == 0.4
    assert g["n"][2] == [20] * 4
    md = markdown(m)
    assert "| first | 90 [70, 100] | 50 [30, 70] | 50 [30, 70] | 50 [30, 70] | 40 |" in md and "FT-ICR baseline" in md


def test_matrix_names_the_cell_file_whose_test_position_is_missing():
    sums = {p: summary({t: 0.5 for t in POSITIONS}) for p in POSITIONS}
    del sums["last"]["perk"]["retrieval/middle"]
    with pytest.raises(ValueError, match=r"last\.json: no perk EM for retrieval/middle at 512 tokens.*evaluate\.tasks"):
        matrix(sums, "retrieval", 512, {p: f"{p}.json" for p in POSITIONS})
    with pytest.raises(ValueError, match=r"first\.json: no perk EM for retrieval/first at 1024"):
        matrix({p: summary({t: 0.5 for t in POSITIONS}) for p in POSITIONS}, "retrieval", 1024,
               {p: f"{p}.json" for p in POSITIONS})


def _params(tmp_path, position=None, matrix_cells=None) -> str:
    tree = {"matrix_dir": str(tmp_path / "matrix"), "position_dir": str(tmp_path / "position"),
            "matrix": matrix_cells if matrix_cells is not None else
            {c: {"task": f"retrieval/{p}"} for p, c in CELLS.items()},
            "position": position if position is not None else {"retrieval": CELLS}}
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(tree))
    return str(path)


def test_protocol_config_names_bad_cells(tmp_path):
    with pytest.raises(ConfigError, match=r"position.retrieval.middle: 'retrieval-mid' is not a cell of `matrix:`"):
        load_params(_params(tmp_path, {"retrieval": dict(CELLS, middle="retrieval-mid")}))
    with pytest.raises(ConfigError, match=r"position.retrieval.last: cell 'retrieval-first' trains on "
                                          r"'retrieval/first', expected <family>/last"):
        load_params(_params(tmp_path, {"retrieval": dict(CELLS, last="retrieval-first")}))
    with pytest.raises(ConfigError, match="position.retrieval.random: Field required"):
        load_params(_params(tmp_path, {"retrieval": {k: v for k, v in CELLS.items() if k != "random"}}))


def test_stage_writes_matrix_heatmaps_and_mlflow_run(tmp_path, mlflow_store, capsys):
    from perk.cli import main
    params = _params(tmp_path)
    # before the cells are evaluated: the missing file and the command that makes it
    assert main(["position", "--params", params, "--protocol", "retrieval"]) == 2
    assert "matrix-evaluate@retrieval-first" in capsys.readouterr().err
    for train, cell in CELLS.items():
        d = tmp_path / "matrix" / cell / "eval"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(summary({t: 1.0 if t == train else 0.25 for t in POSITIONS})))
    assert main(["position", "--params", params, "--protocol", "retrieval"]) == 0
    out = tmp_path / "position" / "retrieval"
    m = json.loads((out / "matrix.json").read_text())
    assert m["methods"]["baseline"]["spread"]["middle"] == 0.75 and m["cells"] == CELLS
    assert (out / "perk.png").stat().st_size > 1000 and (out / "baseline.png").exists()
    assert "| last | 25 [5, 45] | 25 [5, 45] | 100 [80, 100] | 25 [5, 45] | 75 |" in (out / "matrix.md").read_text()
    assert "position retrieval: spread across test positions" in capsys.readouterr().out
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # the call before the cells existed failed
    (run,) = [r for r in runs if r.info.status == "FINISHED"]
    assert run.data.tags["stage"] == "position" and run.data.metrics["retrieval/perk/max_spread"] == 0.75
    arts = {a.path for a in mlflow_store.list_artifacts(run.info.run_id, "position/retrieval")}
    assert "position/retrieval/perk.png" in arts
    # an unknown protocol names the valid ones; none configured is a no-op that says so
    assert main(["position", "--params", params, "--protocol", "nope"]) == 2
    assert "no such position protocol; protocols: retrieval" in capsys.readouterr().err
    assert main(["position", "--params", _params(tmp_path, {}, {})]) == 0
    assert "no protocol in params.yaml `position:`" in capsys.readouterr().out


def test_the_shipped_retrieval_protocol_profile_trains_on_the_gold_question_only():
    """profiles/tiny/position-retrieval.yaml: four cells, one per train position, each tested at all
    four positions at the train length, trained (PERK and baseline) on the questions of the gold
    document and its 3 nearest neighbours only, with every document's name labelled for the
    weighting net (experiments/POSITION.md P0-P2)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "profiles" / "tiny" / "position-retrieval.yaml"
    p = load_params(path)
    proto = p.position["retrieval"]
    assert {pos: getattr(proto, pos) for pos in POSITIONS} == CELLS
    assert p.synth.tasks.retrieval.ask_docs > 1  # siblings exist, so spans_of context has labels to add
    for pos, cell in CELLS.items():
        c = load_params(path, cell=cell)
        assert c.meta_train.task == c.baseline.task == f"retrieval/{pos}"
        assert sorted(c.evaluate.tasks) == sorted(f"retrieval/{t}" for t in POSITIONS)
        assert c.evaluate.only_lengths == c.synth.tasks.retrieval.train_lengths
        assert (c.meta_train.max_questions, c.meta_train.spans_of, c.baseline.max_questions) == (4, "context", 4)
        assert c.meta_train.question_order == c.baseline.question_order == "nearest"
