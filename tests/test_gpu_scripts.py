"""The GPU training script, run on the CPU with a tiny budget before a GPU is spent on it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from models.checkpoint import load_checkpoint
from models.data import load_dataset, split_by_ratio, write_split_lists
from tests.models.test_data import make_tile_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_train_default_script_smoke_run_writes_a_checkpoint_with_an_operating_point(
    tmp_path: Path,
) -> None:
    """bench/gpu/train_default.sh with SMOKE=1 on the CPU: it trains the recipe for a few
    steps, evaluates on the test list, chooses on validation, and leaves chosen.pt (loadable,
    with an operating point and an image head) and results.tgz with the test report."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=4)
    split = tmp_path / "split"
    ds = load_dataset(data, "folder-classes")
    write_split_lists(ds, split_by_ratio(ds, 0.25, 0.25, 0), split)
    out = tmp_path / "out"
    env = {**os.environ, "NO_WHEELS": "1", "SMOKE": "1", "PYTHON": sys.executable,
           "OUT": str(out), "RUN": str(tmp_path / "run"), "DEVICE": "cpu", "MINUTES": "0.2",
           "CELLS": "default", "DATA": str(data), "SPLIT_DIR": str(split)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu" / "train_default.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(out / "chosen.pt")
    assert ckpt.meta.operating_point is not None and ckpt.meta.spec.image_head
    with tarfile.open(out / "results.tgz") as tar:
        names = tar.getnames()
    assert "./default/test/report.json" in names and "./study.json" in names
    assert "chosen on validation: default" in (out / "study.log").read_text()
