"""Train several models side by side on one GPU, evaluate each on the test split, pick one.

    python bench/gpu/study.py --data DIR --out runs/gpu --minutes 5 [--cells default,no-head]

Every cell is ``station train --config config/train.default.yaml`` with a few overrides (the
recipe's ablations and the seed paper's architectures), run as its own process, all at once,
each with the same wall-time budget and a share of the CPU cores for its data loaders. Then
every cell's ``best.pt`` is scored on the test split with ``station evaluate`` (through the
station's own pipeline). The model to ship is chosen on the *validation* figures only (the
operating point's defect recall at <= 2 % false rejects, then pixel F1): the test split
chooses nothing. Writes ``study.json`` and ``study.md`` into ``--out`` and copies the chosen
checkpoint to ``--out/chosen.pt``.

``--smoke`` shrinks everything (a few steps, a few images) to check the script end to end on
a CPU before a GPU is spent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: The project's fixed split of the magnetic-tile data (train / val / test lists).
SPLIT_DIR = ROOT / "models" / "splits" / "magnetic-tile"
#: name -> (what it tests, extra `station train` arguments)
CELLS: dict[str, tuple[str, list[str]]] = {
    "default": ("the recipe: lite0 ImageNet, image head, whole images, balanced, wbd", []),
    "no-head": ("ablation: no image head (regions alone decide)",
                ["--set", "model.image_head=false"]),
    "natural": ("ablation: natural sampling instead of class-balanced",
                ["--set", "patch.sampler=natural"]),
    "crops256": ("ablation: 256 px random crops instead of whole images",
                 ["--set", "patch.mode=random", "--patch-size", "256"]),
    "lite0-scratch": ("paper: lite0 UNet without ImageNet weights", ["--no-pretrained"]),
    "plain-unet": ("paper: plain UNet (no encoder, from scratch)",
                   ["--architecture", "plain-unet", "--encoder", "none",
                    "--set", "model.base_channels=32"]),
    "resnet50": ("paper: ResNet-50 UNet, from scratch (no offline weights)",
                 ["--encoder", "resnet50", "--set", "model.decoder_channels=null"]),
    "b0": ("paper: EfficientNet-B0 UNet, from scratch (no offline weights)",
           ["--encoder", "efficientnet-b0", "--set", "model.decoder_channels=null"]),
    "lite0-bce": ("loss: bce instead of wbd", ["--loss", "bce"]),
    "lite0-dice": ("loss: dice instead of wbd", ["--loss", "dice"]),
}
#: Largest checkpoint that may ship [bytes].
MAX_SHIP_BYTES = 25_000_000


def station(*args: str) -> list[str]:
    """The command line of a ``station`` subcommand with this interpreter."""
    return [sys.executable, "-m", "station.cli", *args]


def train_cells(names: list[str], data: str, out: Path, minutes: float, smoke: bool,
                device: str, split_dir: Path) -> dict[str, dict[str, Any]]:
    """Start every cell's training at once; wait; return per cell its exit code and time."""
    cores = os.cpu_count() or 2
    workers = 0 if smoke else max(1, (cores - len(names)) // len(names))
    procs: dict[str, tuple[subprocess.Popen[bytes], float, Any]] = {}
    for name in names:
        cell_out = out / name
        cell_out.mkdir(parents=True, exist_ok=True)
        cmd = station(
            "train", "--config", str(ROOT / "config" / "train.default.yaml"), "--data", data,
            "--out", str(cell_out), "--max-minutes", str(minutes), "--no-progress",
            "--device", device, "--set", f"workers={workers}",
            "--set", f"data.split_dir={split_dir}",
            # one input shape for validation: each new shape costs its first pass on a GPU
            # (38 shapes among the validation images); the operating point is still chosen
            # image by image at the end. VAL_LAYOUT=shape validates as the station runs.
            "--set", f"val_layout={os.environ.get('VAL_LAYOUT', 'canvas')}", *CELLS[name][1],
        )
        if smoke:
            cmd += ["--set", "val_max_images=6", "--set", "val_every_steps=2",
                    "--set", "patch.per_epoch=8", "--batch-size", "4", "--set", "threads=1"]
        fh = (cell_out / "train.log").open("wb")
        procs[name] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT),
                       time.monotonic(), fh)
        print(f"started {name}: {' '.join(cmd[3:])}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for name, (proc, t0, fh) in procs.items():
        code = proc.wait()
        fh.close()
        minutes = round((time.monotonic() - t0) / 60, 2)
        results[name] = {"train_exit": code, "train_minutes": minutes}
        print(f"{name}: training exit {code} after {results[name]['train_minutes']} min",
              flush=True)
    return results


def evaluate_cells(names: list[str], data: str, out: Path, device: str, smoke: bool,
                   split_dir: Path) -> dict[str, int]:
    """``station evaluate`` of each cell's best.pt on the test split, all at once."""
    test_list = split_dir / "test.txt"
    if smoke:  # a few test images only
        lines = test_list.read_text().splitlines()
        test_list = out / "smoke_test.txt"
        test_list.write_text("\n".join(lines[:3] + lines[-3:]) + "\n")
    procs = {}
    for name in names:
        best = out / name / "best.pt"
        if not best.is_file():
            continue
        cmd = station("evaluate", "--model", str(best), "--data", data, "--split-list",
                      str(test_list), "--out", str(out / name / "test"), "--device", device)
        fh = (out / name / "evaluate.log").open("wb")
        procs[name] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT), fh)
    codes = {}
    for name, (proc, fh) in procs.items():
        codes[name] = proc.wait()
        fh.close()
    return codes


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file, or {} when it is missing or damaged."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def table(names: list[str], out: Path, runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: what it is, validation and test figures."""
    rows = []
    for name in names:
        summary = read_json(out / name / "summary.json")
        report = read_json(out / name / "test" / "report.json")
        op = summary.get("operating_point", {}) or {}
        fig = op.get("figures", {}) or {}
        best = out / name / "best.pt"
        rows.append({
            "cell": name, "what": CELLS[name][0], **runs.get(name, {}),
            "steps": summary.get("steps"), "stopped": summary.get("stopped"),
            "images_per_s": round(float(summary.get("images_per_s_median", 0.0)), 1),
            "val_op_recall": fig.get("defect_recall"), "val_op_frr": fig.get("false_reject_rate"),
            "val_pixel_f1": summary.get("val", {}).get("pixel_f1_at_threshold"),
            "rule": op.get("rule"),
            "test_pixel_f1": report.get("pixel.f1"), "test_pixel_iou": report.get("pixel.iou"),
            "test_recall": report.get("image.defect_recall"),
            "test_frr": report.get("image.false_reject_rate"),
            "test_auroc": report.get("image.auroc"),
            "test_recall_at_2pct": report.get("sweep.image_recall_at_frr_0.02"),
            **{f"test_recall_{c}": report.get(f"image.defect_recall.{c}")
               for c in ("Blowhole", "Break", "Crack", "Fray", "Uneven")},
            "checkpoint_bytes": best.stat().st_size if best.is_file() else None,
        })
    return rows


def choose_cell(rows: list[dict[str, Any]]) -> str | None:
    """The cell to ship, by validation figures only (test figures choose nothing)."""
    ok = [r for r in rows if r.get("val_op_recall") is not None and r.get("val_op_frr") is not None
          and (r.get("checkpoint_bytes") or 0) <= MAX_SHIP_BYTES and r["val_op_frr"] <= 0.02]
    if not ok:
        return None
    return str(max(ok, key=lambda r: (r["val_op_recall"], r.get("val_pixel_f1") or 0.0))["cell"])


def markdown(rows: list[dict[str, Any]], chosen: str | None) -> str:
    """The study as a Markdown table."""
    cols = ["cell", "steps", "images_per_s", "rule", "val_op_recall", "val_op_frr",
            "test_pixel_f1", "test_pixel_iou", "test_recall", "test_frr", "test_recall_at_2pct",
            "test_recall_Blowhole", "test_recall_Crack", "train_minutes"]

    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", *(f"- {r['cell']}: {r['what']}" for r in rows), "",
              f"chosen on validation: {chosen or 'none (no cell met the false-reject target)'}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the study."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="magnetic-tile dataset root")
    p.add_argument("--out", default="runs/gpu", help="output folder")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per cell [min]")
    p.add_argument("--cells", default="default,no-head,natural,crops256,lite0-scratch,plain-unet",
                   help=f"comma-separated cells of: {', '.join(CELLS)}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--split-dir", default=str(SPLIT_DIR),
                   help="folder with train.txt, val.txt, test.txt (default: the project's "
                   "magnetic-tile split)")
    p.add_argument("--smoke", action="store_true", help="tiny everything (CPU dry run)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.cells.split(",") if n.strip()]
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        p.error(f"unknown cells {unknown}; valid: {', '.join(CELLS)}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    split_dir = Path(args.split_dir).resolve()
    runs = train_cells(names, args.data, out, args.minutes, args.smoke, args.device, split_dir)
    codes = evaluate_cells(names, args.data, out, args.device, args.smoke, split_dir)
    for name, code in codes.items():
        runs[name]["evaluate_exit"] = code
    rows = table(names, out, runs)
    chosen = choose_cell(rows)
    if chosen:
        shutil.copyfile(out / chosen / "best.pt", out / "chosen.pt")
    doc = {"cells": rows, "chosen": chosen, "minutes_per_cell": args.minutes,
           "wall_minutes": round((time.monotonic() - t0) / 60, 2), "smoke": args.smoke}
    (out / "study.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "study.md").write_text(markdown(rows, chosen))
    print(markdown(rows, chosen), flush=True)
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(main())
