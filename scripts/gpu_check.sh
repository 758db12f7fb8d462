#!/usr/bin/env bash
# The GPU check of issue #17 (docs/gpu_check.md): PERK vs prompt-based inference at 8K..128K tokens
# and one meta-training step, on a Qwen2.5-0.5B-shaped model with random weights (no download).
# Needs only python3 with torch, transformers, peft, safetensors, pyarrow, tqdm, matplotlib; what perk
# imports beyond that (pydantic) is installed from .whl/ (scripts/fetch_gpu_wheels.sh) into a temp dir.
# Finishes inside 8 minutes: the driver ends every point by --budget-s (450 s) and `timeout` backs it.
# Writes gpu_check.csv and gpu_check.md to $OUT (else data/gpu_check).
# usage: scripts/gpu_check.sh [--dry] [more perk.gpucheck options, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OUT=${OUT:-data/gpu_check}
missing=$("$PY" - <<'PYEOF'
import importlib
missing = []
for name in ("pydantic", "yaml", "tokenizers"):  # imported, not just found: a broken install counts as missing
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
print(*missing)
PYEOF
)
if [ -n "$missing" ]; then
  wheels=${PERK_WHEELS:-.whl}
  if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "gpu_check: python3 lacks: $missing, and $wheels/ holds no wheels; run scripts/fetch_gpu_wheels.sh" \
         "where pip reaches PyPI and bring $wheels/ along" >&2
    exit 2
  fi
  site=$(mktemp -d /tmp/perk-site.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu_check: installed $(ls "$wheels" | tr '\n' ' ')into $site (python3 lacked: $missing)"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout -k 10 470 "$PY" -m perk.gpucheck --out "$OUT" "$@"
