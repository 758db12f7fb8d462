"""Grid evaluation: cells persist as they finish, a rerun skips them, summaries carry CIs."""
import pytest
import torch

from perk.evaluate import adapted, run_cells, summarize


def _rows():
    rows = []
    for L in (64, 128):
        for d in (0.0, 1.0):
            for i in range(3):
                rows.append({"id": f"{L}-{d}-{i}", "target_tokens": L, "target_depth": d, "context_tokens": L,
                             "answer": "violet", "context": ["x"], "question": "q", "answer_prefix": "p"})
    return rows


def test_cells_resume_and_summary(tmp_path):
    calls = []

    def perfect(row):
        calls.append(row["id"])
        return "Violet.", "ok"

    def long_fails(row):
        if row["target_tokens"] > 64:
            return None, "out_of_range"
        return ("violet" if row["target_depth"] == 0.0 else "red"), "ok"

    class Killed(Exception):
        pass

    def dies_late(row):
        if row["target_tokens"] == 128:
            raise Killed()
        return perfect(row)

    with pytest.raises(Killed):
        run_cells({"perk": dies_late}, "needle/multikey", _rows(), 10, tmp_path, progress=False)
    assert len(calls) == 6  # the two 64-token cells finished and were saved
    calls.clear()
    preds = run_cells({"perk": perfect, "baseline": long_fails}, "needle/multikey", _rows(), 10, tmp_path,
                      progress=False)
    assert len(calls) == 6, "finished cells must not be recomputed"
    assert len(preds) == 24
    s = summarize(preds)
    perk = s["perk"]["needle/multikey"]["by_length"]
    assert perk["128"]["em"] == 1.0 and perk["128"]["n"] == 6 and perk["128"]["em_lo"] < 1.0
    base = s["baseline"]["needle/multikey"]
    assert base["by_length"]["64"]["em"] == 0.5 and base["by_length"]["64"]["depth_spread"] == 1.0
    assert base["by_length"]["128"]["em"] is None and base["by_length"]["128"]["out_of_range"] == 6
    assert s["perk"]["needle/multikey"]["max_depth_spread"] == 0.0


def test_adapted_swaps_and_restores():
    lin = torch.nn.Linear(2, 2)
    before = lin.weight.detach().clone()
    with adapted(lin, {"weight": torch.zeros(2, 2)}):
        assert torch.equal(lin.weight, torch.zeros(2, 2))
    assert torch.equal(lin.weight, before)
    with pytest.raises(KeyError, match="unknown parameters"):
        with adapted(lin, {"nope": torch.zeros(1)}):
            pass
