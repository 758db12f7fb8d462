"""README table of task-matrix cells evaluated at 1x and 8x (the reasoning profile, issue #14): per cell
PERK, FT-ICR and PERK's two controls from {DIR}/data/matrix/CELL/eval/accuracy.csv, the final validation
EM of both methods and the cell's MLflow run ids; writes {DIR}/matrix_table.json beside the table.
   python experiments/matrix_table.py /tmp/rsn babilong-qa2 babilong-qa3 records-relation records-aggregate
MLFLOW_DB=path: the tracking store when it is not {DIR}/mlruns/mlflow.db (a run whose perk was the
editable install of another checkout logs to that checkout's store)."""
import csv
import json
import os
import sqlite3
import sys
from pathlib import Path

root, cells = Path(sys.argv[1]), sys.argv[2:]
store = Path(os.environ.get("MLFLOW_DB") or root / "mlruns/mlflow.db")
if not store.is_file():
    sys.exit(f"matrix_table: no MLflow store at {store} (set MLFLOW_DB)")
db = sqlite3.connect(store)
ids = {n: u for u, n in db.execute("select run_uuid, name from runs where status='FINISHED' order by start_time")}
out = {}
print("| task (cell) | PERK 1x | PERK 8x | FT-ICR 1x | FT-ICR 8x | PERK no encode 1x / 8x | PERK other context 1x / 8x | val EM PERK / FT-ICR |")
print("|---|---|---|---|---|---|---|---|")
for cell in cells:
    d = root / "data/matrix" / cell
    acc, task = {}, None
    for r in csv.DictReader(open(d / "eval/accuracy.csv")):
        acc.setdefault(r["method"], {})[int(r["length"])] = [float(r["acc"]), float(r["lo"]), float(r["hi"])]
        task = r["task"]
    val = {m: json.load(open(d / m / "metrics.json"))["val_em"] for m in ("meta_train", "baseline")}
    out[cell] = {"task": task, "accuracy": acc, "val_em": val,
                 "mlflow": {k: v for k, v in ids.items() if k.endswith("@" + cell)}}
    one, eight = sorted(acc["perk"])

    def ci(m, L):
        a = acc[m][L]
        return f"{a[0] * 100:.0f}% [{a[1] * 100:.0f}, {a[2] * 100:.0f}]"
    print(f"| {task} ({cell}) | {ci('perk', one)} | {ci('perk', eight)} | {ci('baseline', one)} | {ci('baseline', eight)} | "
          f"{acc['perk_no_inner'][one][0] * 100:.0f} / {acc['perk_no_inner'][eight][0] * 100:.0f}% | "
          f"{acc['perk_wrong_context'][one][0] * 100:.0f} / {acc['perk_wrong_context'][eight][0] * 100:.0f}% | "
          f"{val['meta_train'] * 100:.1f} / {val['baseline'] * 100:.1f}% |")
(root / "matrix_table.json").write_text(json.dumps(out, indent=1) + "\n")
