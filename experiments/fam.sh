#!/usr/bin/env bash
# experiments/fam.sh NAME TASK(family/subtask) key=value ...: run_family.sh with the common settings of
# experiments/FAMILIES.md (fam_args.sh); later key=value pairs override them.
set -euo pipefail
name=$1; task=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/experiments/fam_args.sh"; fam_args "$task"
exec "$here/experiments/run_family.sh" "$name" "${FAM_ARGS[@]}" "$@"
