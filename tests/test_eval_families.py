"""`perk evaluate` on a family other than needle, micro-sized: retrieval with a randomly placed
gold document (depth None) next to a fixed position, through the stage functions end to end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from perk import stages
from perk.config import load_params

MICRO = Path(__file__).parent / "micro_params.yaml"


def test_evaluate_retrieval_random_writes_metrics_and_plots(tmp_path, mlflow_store, tiny_tokenizer_dir):
    tasks = "[retrieval/random, retrieval/first]"
    shutil.copytree(tiny_tokenizer_dir, tmp_path / "tokenizer")
    over = [f"{s}.out_dir={tmp_path}/{s}" for s in ("tokenizer", "synth", "pretrain", "meta_train", "baseline",
                                                      "evaluate")]
    over += ["synth.tasks.needle.enabled=false", "synth.tasks.retrieval.enabled=true",
             "synth.tasks.retrieval.subtasks=[first, random]", "synth.tasks.retrieval.n_train=4",
             "synth.tasks.retrieval.n_val=2", "synth.tasks.retrieval.n_test=2",
             "synth.tasks.retrieval.train_lengths=[256]", "synth.tasks.retrieval.eval_lengths=[256, 2048]",
             "meta_train.task=retrieval/random", "baseline.task=retrieval/random", f"evaluate.tasks={tasks}"]
    p = load_params(MICRO, over)
    for name in ("synth", "pretrain", "meta-train", "baseline", "evaluate"):
        stages.call(name, p, progress=False)
    out = tmp_path / "evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("perk", "baseline"):
        for key in ("retrieval_random", "retrieval_first"):
            m = metrics[method][key]
            assert set(m) >= {"em_256", "em_2048", "em_256_ci"} and 0.0 <= m["em_256"] <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    # the random task's one depth cell is keyed "None" (no number to plot); first is at depth 0.0
    assert list(summary["perk"]["retrieval/random"]["by_length"]["256"]["by_depth"]) == ["None"]
    assert list(summary["perk"]["retrieval/first"]["by_length"]["256"]["by_depth"]) == ["0.0"]
    plots = {f.name for f in (out / "plots").iterdir()}
    assert {"retrieval_random_accuracy.png", "retrieval_first_accuracy.png", "retrieval_first_perk_heatmap.png"} <= plots
    assert "retrieval_random_perk_heatmap.png" not in plots  # no depth axis for a random position
