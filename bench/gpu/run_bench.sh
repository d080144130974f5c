#!/usr/bin/env bash
# Every measurement of issue 10 in one go, on a CUDA machine without network access.
#
#   OUT=/some/dir bash bench/gpu/run_bench.sh          # on the GPU machine (see README.md)
#   BENCH_SMOKE=1 OUT=/tmp/out bash bench/gpu/run_bench.sh   # dry run on a CPU, tiny frames
#
# Writes exactly two files into $OUT: bench.json (every figure, merged) and bench.log
# (everything printed). Environment:
#   PYTHON         interpreter (default python3); it must have torch, torchvision, timm, opencv,
#                  numpy and pyyaml; the rest comes from the wheels in .whl/ (fetch_wheels.sh)
#   BENCH_SMOKE=1  CPU, tiny frames, few repeats and parts: checks every step in a few minutes
#   BENCH_BUDGET_S total seconds the steps may take (default 480; steps that no longer fit are
#                  skipped and say so)
#   BENCH_COMMIT   the commit measured (else .bench-commit at the root, else git, else unknown)
#   BENCH_COMPILE=1  also the default model tiled with torch.compile
#   BENCH_SITE     where missing wheels are installed (default /tmp/site)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/bench-out}"
SMOKE="${BENCH_SMOKE:-0}"
SITE="${BENCH_SITE:-/tmp/site}"
BUDGET="${BENCH_BUDGET_S:-480}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/bench-work.XXXXXX)"
LOG="$OUT/bench.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
STEPS="$WORK/steps.tsv"
: > "$STEPS"

say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }

# run_step NAME MAX_SECONDS MIN_SECONDS COMMAND...: run with a timeout that fits the budget.
run_step() {
  local name="$1" max="$2" min="$3"; shift 3
  local left=$((DEADLINE - $(date +%s)))
  if (( left < min )); then
    say "SKIP $name: ${left}s left of the ${BUDGET}s budget, it needs ${min}s"
    printf '%s\tskipped\t0\t%s\n' "$name" "budget" >> "$STEPS"
    return 0
  fi
  local limit=$(( left < max ? left : max ))
  say "RUN  $name (limit ${limit}s): $*"
  local t=$(date +%s)
  timeout --signal=TERM --kill-after=15 "$limit" "$@"
  local rc=$?
  local took=$(( $(date +%s) - t ))
  local status=ok
  (( rc == 0 )) || status="failed"
  (( rc == 124 )) && status="timeout"
  say "DONE $name: $status (exit $rc) in ${took}s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$took" "$rc" >> "$STEPS"
  return 0
}

say "issue 10 bench: root $ROOT, out $OUT, smoke=$SMOKE, budget ${BUDGET}s, python $PY"

# -- 1. dependencies: install from .whl/ only what the machine's Python lacks --------------
to_install=()
missing_wheels=()
while read -r req module policy _group; do
  name="${req%%==*}"; version="${req##*==}"
  norm="$(echo "$name" | tr 'A-Z-' 'a-z_')"
  if [[ "$policy" != "always" ]] && "$PY" -c "import $module" >/dev/null 2>&1; then
    continue
  fi
  wheel="$(ls .whl/"${norm}"-"${version}"-*.whl 2>/dev/null | head -n 1)"
  if [[ -z "$wheel" ]]; then
    missing_wheels+=("$req")
  else
    to_install+=("$wheel")
  fi
done < <(grep -v '^[[:space:]]*#' bench/gpu/wheels.txt | awk 'NF && ("," $4 ",") ~ /,bench,/')
if (( ${#missing_wheels[@]} )); then
  say "WARNING: needed but not in .whl/: ${missing_wheels[*]} (run bench/gpu/fetch_wheels.sh)"
fi
if (( ${#to_install[@]} )); then
  say "installing ${#to_install[@]} wheel(s) into $SITE: ${to_install[*]##*/}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" \
    "${to_install[@]}" || say "WARNING: pip install failed"
else
  say "every dependency is importable already; nothing installed"
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The machine's own copies may be too old for the station (e.g. huggingface_hub for smp):
# then every wheel of the group is installed, shadowing them, and the import is tried again.
if ! "$PY" -c "import segmentation_models_pytorch, zmq, pydantic, structlog, serial, station.bench, pipeline.inspector" >/dev/null 2>&1; then
  say "the station does not import with the machine's packages; installing every bench wheel"
  all=()
  while read -r req _module _policy _group; do
    name="${req%%==*}"; version="${req##*==}"
    norm="$(echo "$name" | tr 'A-Z-' 'a-z_')"
    w="$(ls .whl/"${norm}"-"${version}"-*.whl 2>/dev/null | head -n 1)"
    [[ -n "$w" ]] && all+=("$w")
  done < <(grep -v '^[[:space:]]*#' bench/gpu/wheels.txt | awk 'NF && ("," $4 ",") ~ /,bench,/')
  (( ${#all[@]} )) && "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target "$SITE" "${all[@]}" || say "WARNING: pip install failed"
fi
"$PY" - <<'PYEOF' || { say "FATAL: the preflight import failed"; }
import importlib, sys
mods = ["torch", "torchvision", "timm", "cv2", "numpy", "yaml", "segmentation_models_pytorch",
        "zmq", "pydantic", "structlog", "serial", "huggingface_hub", "safetensors", "tqdm",
        "PIL", "pytest"]
for m in mods:
    try:
        mod = importlib.import_module(m)
        print(f"  {m:<28} {getattr(mod, '__version__', '?')}  {getattr(mod, '__file__', '')}")
    except Exception as exc:
        print(f"  {m:<28} MISSING: {type(exc).__name__}: {exc}")
import torch
print("  cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import station.bench, pipeline.inspector  # the station itself imports
PYEOF
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>/dev/null \
  || say "nvidia-smi not available"

# -- 2. the measurements ---------------------------------------------------------------------
if [[ "$SMOKE" == "1" ]]; then
  DEV=cpu
  PIPE=(--device cpu --size 256x192 --tile-size 128 --repeats 1 --warmup 0)
  E2E=(--device cpu --size 192x128 --parts 4 --duration 60 --serial-parts 2 --warmup-parts 1
       --set pipeline.tile_size=128)
  E2E_WHOLE=(--device cpu --size 192x128 --parts 3 --duration 60 --serial-parts 1
             --warmup-parts 1)
  TESTS=(tests/pipeline/test_cuda.py tests/pipeline/test_tiling.py)
else
  DEV=cuda
  PIPE=(--device cuda --repeats 10 --warmup 2)
  E2E=(--device cuda --size 5472x3648 --parts 400 --duration 15 --serial-parts 15
       --warmup-parts 8)
  E2E_WHOLE=(--device cuda --size 5472x3648 --parts 200 --duration 8 --serial-parts 10
             --warmup-parts 8)
  TESTS=(tests/pipeline/test_cuda.py)
fi
BENCH=("$PY" -m station.cli bench)

run_step cuda-tests 120 30 "$PY" -m pytest -q -p no:cacheprovider -W default -m "cuda or not cuda" \
  -o addopts="" "${TESTS[@]}"
run_step lite0 150 40 "${BENCH[@]}" --encoder default --mode both "${PIPE[@]}" \
  --json "$WORK/lite0.json"
run_step e2e-tiled 150 60 "${BENCH[@]}" --e2e --mode tiled "${E2E[@]}" \
  --json "$WORK/e2e-tiled.json"
run_step b0 120 30 "${BENCH[@]}" --encoder efficientnet-b0 --mode both "${PIPE[@]}" \
  --json "$WORK/b0.json"
run_step b7 180 45 "${BENCH[@]}" --encoder efficientnet-b7 --mode both "${PIPE[@]}" \
  --json "$WORK/b7.json"
run_step noise-block8 60 20 "${BENCH[@]}" --encoder default --only-noise --region-block 8 \
  "${PIPE[@]}" --json "$WORK/noise-block8.json"
run_step e2e-whole 120 50 "${BENCH[@]}" --e2e --mode whole "${E2E_WHOLE[@]}" \
  --json "$WORK/e2e-whole.json"
# the shipped model's operating point runs three passes a frame (test-time flips); the same
# daemon with one pass, for the line-rate target (skipped when the budget is spent)
run_step e2e-whole-noflips 120 50 "${BENCH[@]}" --e2e --mode whole "${E2E_WHOLE[@]}" \
  --set pipeline.flips=off --json "$WORK/e2e-whole-noflips.json"
if [[ "${BENCH_COMPILE:-0}" == "1" ]]; then
  run_step lite0-compile 240 60 "${BENCH[@]}" --encoder default --mode tiled --compile \
    --no-naive "${PIPE[@]}" --json "$WORK/lite0-compile.json"
fi

# -- 3. one JSON -------------------------------------------------------------------------------
"$PY" - "$WORK" "$OUT/bench.json" "$SMOKE" "$T0" <<'PYEOF'
import json, sys, time
from pathlib import Path
work, out, smoke, t0 = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, took, rc = line.split("\t")
    steps.append({"step": name, "status": status, "seconds": int(took), "exit": rc})
merged = {"issue": 10, "smoke": smoke, "seconds": int(time.time()) - t0, "steps": steps,
          "environment": None, "pipeline": [], "e2e": {}}
for name in ("lite0", "b0", "b7", "noise-block8", "lite0-compile"):
    f = work / f"{name}.json"
    if f.is_file():
        data = json.loads(f.read_text())
        merged["environment"] = merged["environment"] or data["environment"]
        merged.setdefault("settings", {})[name] = data["settings"]
        for run in data["runs"]:
            merged["pipeline"].append({"step": name, **run})
for name in ("e2e-tiled", "e2e-whole", "e2e-whole-noflips"):
    f = work / f"{name}.json"
    if f.is_file():
        data = json.loads(f.read_text())
        merged["environment"] = merged["environment"] or data["environment"]
        merged["e2e"][name] = data["e2e"]
out.write_text(json.dumps(merged, indent=2) + "\n")
print(f"wrote {out}")
print("summary (median ms per frame; post-processing of the worst cases):")
for r in merged["pipeline"]:
    if r["step"] == "noise-block8":
        wc = r["worst_case"]
        print(f"  worst cases with region_block 8: noise {wc['noise']['postprocess_ms']:.2f} "
              f"ms, specks {wc['specks']['postprocess_ms']:.2f} ms")
        continue
    if r.get("error"):
        print(f"  {r['model'].get('name'):<16} {r['mode']:<6} FAILED: {r['error']}")
        continue
    st = r["stages_ms"]
    wc = r["worst_case"]
    print(f"  {r['model']['name']:<16} {r['mode']:<6} total {st.get('total', 0):9.1f}  "
          f"infer {st.get('infer', 0):8.1f}  post {st.get('postprocess', 0):7.2f}  "
          f"naive {r.get('naive_ms') or 0:9.1f}  x{r.get('speedup') or 0:7.1f}  "
          f"noise {wc['noise']['postprocess_ms']:7.2f}  specks {wc['specks']['postprocess_ms']:7.2f}"
          + (f"  whole vs tiled class diff {r['vs_tiled']['class_disagreement']:.2e}"
             if r.get("vs_tiled") else ""))
for name, e in merged["e2e"].items():
    b, s = e["throughput"], e["serial"]
    print(f"  {name}: {b['parts_per_s']:.2f} parts/s, lost {b['lost']}, reordered "
          f"{b['reordered']}; one by one p50 {s['latency_ms']['p50']} ms, "
          f"p99 {s['latency_ms']['p99']} ms")
for s in steps:
    if s["status"] != "ok":
        print(f"  step {s['step']}: {s['status']} (exit {s['exit']})")
PYEOF
rm -rf "$WORK"
say "finished in $(( $(date +%s) - T0 ))s; results in $OUT/bench.json and $OUT/bench.log"
