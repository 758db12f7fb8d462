"""Markdown table of imported-benchmark runs (README "Imported benchmarks"): per run directory
(a finished experiments/run_imports.sh snapshot, or any checkout whose data/ holds an evaluate of
imported tasks), per method / task / length: the benchmark's own metric with its 95% Wilson
interval, EM, n, and the MLflow run ids of the meta-train / baseline / evaluate calls.
   python experiments/imports_table.py /tmp/r15/RUN [...]"""
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perk.scoring import wilson_interval


def run_id(d: Path, stage: str) -> str:
    """The last FINISHED MLflow run of `stage` in the run directory's own store."""
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{d}/mlruns/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else "-"


print("| run | method | task | length | metric | score [95% CI] | EM [95% CI] | n | MLflow (train / evaluate) |")
print("|---|---|---|---|---|---|---|---|---|")
for arg in sys.argv[1:]:
    d = Path(arg)
    bench = json.loads((d / "data/eval/benchmark.json").read_text())
    preds = pq.read_table(d / "data/eval/predictions.parquet").to_pylist()
    for method, tasks in bench.items():
        train = run_id(d, "meta-train" if method == "perk" else "baseline")
        for task, cells in tasks.items():
            for length, c in sorted(cells.items(), key=lambda kv: int(kv[0])):
                ems = [p["em"] for p in preds if p["method"] == method and p["task"] == task and p["length"] == int(length)]
                lo, hi = wilson_interval(sum(ems), len(ems))
                print(f"| {d.name} | {method} | {task} | {length} | {c['metric']} | **{c['score']:.1f}** "
                      f"[{c['ci'][0]:.1f}, {c['ci'][1]:.1f}] | {100 * sum(ems) / len(ems):.1f} [{100 * lo:.1f}, {100 * hi:.1f}] "
                      f"| {c['n']} | {train} / {run_id(d, 'evaluate')} |")
