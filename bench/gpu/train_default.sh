#!/usr/bin/env bash
# Train the default model (and, with CELLS, the study's other cells side by side) on a CUDA
# machine that reaches no network, evaluate each on the test split through the station's own
# pipeline, choose the model to ship on the validation figures, and leave everything in $OUT:
#   chosen.pt       the checkpoint chosen on validation (its operating point inside)
#   default.pt      the recipe's checkpoint (when another cell was chosen)
#   results.tgz     per cell: report.json/.md and charts on the test split, summary.json,
#                   history.csv, loss_curve.png, train.log; study.json / study.md
#   study.log       what the script printed
# Needs: python3 with torch, timm, OpenCV, numpy, pyyaml (the rest comes from .whl/, see
# bench/gpu/README.md), the data in .gpu/magnetic-tile, the lite0 weights in .gpu/lite0-fp16.pt.
# Dry run on a CPU (a few steps, a few images):
#   NO_WHEELS=1 SMOKE=1 PYTHON=.venv/bin/python OUT=/tmp/gpu-out DEVICE=cpu \
#       DATA=../shared/datasets/magnetic-tile bash bench/gpu/train_default.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/runs/gpu-out}
RUN=${RUN:-$ROOT/runs/gpu}
DATA=${DATA:-$ROOT/.gpu/magnetic-tile}
MINUTES=${MINUTES:-5}
CELLS=${CELLS:-default}
DEVICE=${DEVICE:-auto}
mkdir -p "$OUT" "$RUN"
export PYTHONUNBUFFERED=1
if [ "${NO_WHEELS:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 3; }
    export PYTHONPATH=/tmp/site:$ROOT
else
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -f .gpu/lite0-fp16.pt ]; then export STATION_LITE0_WEIGHTS=$ROOT/.gpu/lite0-fp16.pt; fi
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT/environment.txt"
import os, platform, subprocess, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda",
      torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "cpus", os.cpu_count())
try:
    print("commit", subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                   text=True).stdout.strip() or "-")
except OSError:
    print("commit -")
PYEOF
args=(--data "$DATA" --out "$RUN" --minutes "$MINUTES" --cells "$CELLS" --device "$DEVICE")
if [ -n "${SPLIT_DIR:-}" ]; then args+=(--split-dir "$SPLIT_DIR"); fi
if [ "${SMOKE:-0}" = 1 ]; then args+=(--smoke); fi
"$PY" bench/gpu/study.py "${args[@]}" 2>&1 | tee "$OUT/study.log"
code=${PIPESTATUS[0]}
if [ -f "$RUN/chosen.pt" ]; then  # files come back up to 16 MiB each: split larger ones
    if [ "$(stat -c %s "$RUN/chosen.pt")" -gt 16000000 ]; then
        split -b 15000000 "$RUN/chosen.pt" "$OUT/chosen.pt.part-"
    else
        cp "$RUN/chosen.pt" "$OUT/chosen.pt"
    fi
fi
if [ -f "$RUN/default/best.pt" ] && ! cmp -s "$RUN/default/best.pt" "$RUN/chosen.pt"; then
    cp "$RUN/default/best.pt" "$OUT/default.pt"
fi
tar czf "$OUT/results.tgz" -C "$RUN" --exclude='*.pt' . 2>/dev/null
ls -la "$OUT"
exit "$code"
