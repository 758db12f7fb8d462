#!/usr/bin/env bash
# experiments/position_continue.sh SRC DST STEPS CELL...: continue position cells from their models
# (experiments/POSITION.md runs P3, P4). DST = a clone of HEAD holding SRC's data (tokenizer, synth,
# every cell's pretrain, baseline, meta_train and eval); each named CELL meta-trains STEPS more
# outer steps from SRC's perk.safetensors (meta_train.init_from, a warm restart of the schedule)
# and is evaluated again, side by side at one thread each; then `perk position` over all four.
#   experiments/position_continue.sh /tmp/pos /tmp/pos3 900 retrieval-first retrieval-middle retrieval-last retrieval-random
#   experiments/position_continue.sh /tmp/pos3 /tmp/pos4 900 retrieval-last retrieval-random
# SET="key=value ..." adds overrides to each continued cell (P8: a fresh Adam at the full learning
# rate blew a trained model up within 60 steps, so the continuation runs at a lower one).
set -euo pipefail
src=$1; dst=$2; steps=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PERK_PYTHON:-$here/.venv/bin/python}
logs=$here/experiments/logs; tag=$(basename "$dst")
rm -rf "$dst"; git clone -q "$here" "$dst"; cd "$dst"
mkdir -p data/matrix data/init
cp -r "$src/data/tokenizer" "$src/data/synth" data/
for d in "$src"/data/matrix/*/; do
  cell=$(basename "$d"); mkdir -p "data/matrix/$cell"
  for part in pretrain baseline meta_train eval; do [ -d "$d$part" ] && cp -r "$d$part" "data/matrix/$cell/"; done
done
for cell in "$@"; do cp "$src/data/matrix/$cell/meta_train/perk.safetensors" "data/init/$cell.safetensors"; done
SET=${SET:-} "$py" - "$src/params.yaml" "$steps" "$@" <<'PY'
import os, sys, yaml
src, steps, cells = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
extra = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in os.environ["SET"].split())}
tree = yaml.safe_load(open(src))
for cell in cells:
    # a copy: YAML aliases (set: *cell_set) load as one dict shared by every cell
    tree["matrix"][cell]["set"] = {**tree["matrix"][cell].get("set", {}), "meta_train.steps": steps,
                                   "meta_train.init_from": f"data/init/{cell}.safetensors", **extra}
open("params.yaml", "w").write(yaml.safe_dump(tree, sort_keys=False))
PY
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$dst" PERK_ROOT="$dst" MLFLOW_DISABLE_TELEMETRY=true
echo "RUN position_continue $src -> $dst +$steps steps: $* ${SET:-} (commit $(git rev-parse --short HEAD))"
for cell in "$@"; do
  ( for st in meta-train evaluate; do
      t0=$(date +%s); "$py" -m perk.cli "$st" --no-progress --cell "$cell" > "$logs/${tag}_${st}_$cell.log" 2>&1
      echo "STAGE $st@$cell rc=$? $(( $(date +%s) - t0 )) s"
    done ) &
done
wait
"$py" -m perk.cli position --no-progress
cat data/position/retrieval/matrix.md
