"""The reasoning test table of README (issue #14) from the fam_test.sh runs' outputs: reads
/tmp/perk_runs/NAME/data/eval/accuracy.csv and the runs' MLflow ids, writes docs/reasoning.json and
docs/reasoning.png, prints the markdown table.
   python experiments/reasoning_table.py qa2=Q2_5 qa3=Q3_5 relation=REL_1r aggregate=AGG_4"""
import csv
import json
import sqlite3
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

runs = dict(a.split("=") for a in sys.argv[1:])
out = {}
for sub, name in runs.items():
    d = Path("/tmp/perk_runs") / name
    acc, tasks = {}, set()
    for r in csv.DictReader(open(d / "data/eval/accuracy.csv")):
        acc.setdefault(r["method"], {})[r["length"]] = [float(r["acc"]), float(r["lo"]), float(r["hi"])]
        tasks.add(r["task"])
    db = sqlite3.connect(d / "mlruns/mlflow.db")
    ids = {n: u for u, n in db.execute("select run_uuid, name from runs where status='FINISHED' order by start_time")}
    out[sub] = {"run": name, "task": tasks.pop(),
                "accuracy": acc, "mlflow": {k: v for k, v in ids.items() if k != "synth"}}
Path("docs").mkdir(exist_ok=True)
Path("docs/reasoning.json").write_text(json.dumps(out, indent=1) + "\n")


def cell(a):
    return f"{a[0] * 100:.0f}% [{a[1] * 100:.0f}, {a[2] * 100:.0f}]"


print("| task (run) | PERK 1x | PERK 8x | FT-ICR 1x | FT-ICR 8x | PERK no encode 1x / 8x | PERK other context 1x / 8x |")
print("|---|---|---|---|---|---|---|")
for sub, o in out.items():
    a = o["accuracy"]
    print(f"| {o['task']} ({o['run']}) | **{cell(a['perk']['512'])}** | **{cell(a['perk']['4096'])}** | "
          f"{cell(a['baseline']['512'])} | {cell(a['baseline']['4096'])} | "
          f"{a['perk_no_inner']['512'][0] * 100:.0f} / {a['perk_no_inner']['4096'][0] * 100:.0f}% | "
          f"{a['perk_wrong_context']['512'][0] * 100:.0f} / {a['perk_wrong_context']['4096'][0] * 100:.0f}% |")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, length, title in zip(axes, ("512", "4096"), ("1x (512 tokens)", "8x (4096 tokens)")):
    xs = range(len(out))
    for k, (m, color) in enumerate((("perk", "C0"), ("baseline", "C1"), ("perk_no_inner", "0.6"))):
        vals = [o["accuracy"][m][length] for o in out.values()]
        ax.bar([x + (k - 1) * 0.27 for x in xs], [v[0] * 100 for v in vals], 0.27, color=color,
               yerr=[[(v[0] - v[1]) * 100 for v in vals], [(v[2] - v[0]) * 100 for v in vals]], capsize=2,
               label={"perk": "PERK", "baseline": "FT-ICR", "perk_no_inner": "PERK, no encode"}[m])
    ax.set_xticks(list(xs), [o["task"].split("/")[1] for o in out.values()])
    ax.axhline(60, ls=":", color="k", lw=0.8)
    ax.set_title(title)
axes[0].set_ylabel("test EM (%), 95% Wilson")
axes[0].legend(fontsize=7)
fig.suptitle("Reasoning subtasks, tiny CPU model, 50 test questions per bar (dotted: the 60% target)", fontsize=9)
fig.tight_layout()
fig.savefig("docs/reasoning.png", dpi=110)
