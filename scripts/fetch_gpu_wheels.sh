#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on a GPU machine that cannot reach PyPI.
# perk imports pydantic (perk/config.py) and pyyaml at import time; a GPU image with only torch,
# transformers, peft, safetensors, pyarrow, tqdm and matplotlib has no pydantic (pyyaml and tokenizers
# come with transformers; PyYAML is fetched anyway, it is small). Versions are those of requirements.lock
# where it pins them. Run where pip reaches PyPI; the wheels (~3 MiB) land in .whl/ (git-ignored).
# usage: scripts/fetch_gpu_wheels.sh [python-version, default 3.12]   (the GPU image's python3)
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${1:-3.12}
pin() {  # NAME -> NAME==VERSION from requirements.lock, or NAME when it is not pinned there
  local v
  v=$(grep -i -E "^${1//[-_]/[-_]}==" requirements.lock | head -1 | cut -d= -f3 || true)
  if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi
}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $(pin pydantic) $(pin pydantic-core) $(pin annotated-types) $(pin typing-inspection) \
  $(pin typing-extensions) $(pin PyYAML)
du -sh .whl
ls .whl
