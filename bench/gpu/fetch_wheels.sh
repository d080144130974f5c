#!/usr/bin/env bash
# Download exactly the wheels of bench/gpu/wheels.txt (groups given as arguments; default:
# bench) into .whl/ at the repository root (ignored by git, carried to the GPU machine with
# the working tree), for CPython 3.12 on manylinux x86_64. Needs PyPI: run it on the
# workstation, not on the GPU machine.
#   bash bench/gpu/fetch_wheels.sh              # the bench set (~19 MB)
#   bash bench/gpu/fetch_wheels.sh train        # only what train_default.sh needs (~4 MB)
# PYTHON chooses the interpreter whose pip downloads (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
GROUPS_WANTED="${*:-bench}"
mkdir -p "$ROOT/.whl"
reqs=()
while read -r req _module _policy groups; do
  for g in $GROUPS_WANTED; do
    if [[ ",$groups," == *",$g,"* ]]; then reqs+=("$req"); break; fi
  done
done < <(grep -v '^[[:space:]]*#' "$ROOT/bench/gpu/wheels.txt" | awk 'NF')
for req in "${reqs[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d "$ROOT/.whl" "$req" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
done
echo "${#reqs[@]} wheel(s) for group(s) $GROUPS_WANTED in $ROOT/.whl:"
du -sh "$ROOT/.whl"
