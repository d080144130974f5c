"""``station inspect IMAGE... [--model CKPT] [--out DIR]``: the station's pipeline on image files.

The same code path as the daemon (:class:`pipeline.Inspector` built from the config), one
image at a time as the frame of one camera (``--camera``, default the config's first), whose
``mm_per_px`` and region of interest apply. Writes ``<stem>.overlay.png`` (defects outlined and
labelled) and ``<stem>.json`` per image into ``--out``, and prints a table.

The arguments (files, and folders whose image files are taken) are checked before the model
loads; a file that cannot be read or inspected becomes an ERROR row, the others still run.
Exit code as ``station trigger``: 0 all PASS, 1 at least one FAIL, 2 at least one ERROR (or a
usage error).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config.errors import ConfigError, PipelineError, StationError
from pipeline.types import InputImage
from station.commands._common import add_config_options, config_from_args

#: File name extensions taken from a folder argument.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
EXIT_BY_VERDICT = {"PASS": 0, "FAIL": 1, "ERROR": 2}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station inspect``."""
    p = sub.add_parser(
        "inspect", help="inspect image files with the station's pipeline and rules",
        description="Run the pipeline and the verdict rules on image files; write an overlay "
        "PNG and a JSON result per image and print a table. A file that cannot be read is an "
        "ERROR row; the others still run.",
        epilog="Exit code: 0 every image PASS, 1 at least one FAIL, 2 at least one ERROR (a file "
        "that cannot be read or inspected) or a usage error (a path that does not exist).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, TIFF, BMP), or folders: their image files")
    p.add_argument("--model", metavar="CKPT",
                   help="checkpoint to run instead of the config's model.checkpoint")
    p.add_argument("--out", metavar="DIR", default="inspect-out",
                   help="where overlays and JSON go (default: ./inspect-out)")
    p.add_argument("--camera", metavar="NAME",
                   help="camera whose scale and region apply (default: the config's first)")
    p.add_argument("--mm-per-px", type=float, metavar="MM",
                   help="scale on the part [mm/px] (default: the camera's mm_per_px)")
    add_config_options(p)
    p.set_defaults(func=run)


def read_image(path: Path, camera: str) -> InputImage:
    """An image file as an :class:`InputImage` (grey -> Mono8/16, colour -> BGR8)."""
    if not path.is_file():
        raise PipelineError(f"{path}: no such file; give image files (PNG, JPEG, TIFF, BMP)")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise PipelineError(
            f"{path}: not a readable image file (OpenCV cannot decode it); give PNG, JPEG, "
            "TIFF or BMP files"
        )
    arr: Any = np.ascontiguousarray(data)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = np.ascontiguousarray(arr[..., :3])
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.ascontiguousarray(arr[..., 0])
    if arr.dtype == np.uint16:
        if arr.ndim == 3:
            arr = np.ascontiguousarray((arr >> 8).astype(np.uint8))
        else:
            return InputImage(camera=camera, pixels=arr, pixel_format="Mono16", bits=16)
    if arr.dtype != np.uint8:
        raise PipelineError(f"{path}: {arr.dtype} pixels are not supported (8 or 16 bit only)")
    fmt = "Mono8" if arr.ndim == 2 else "BGR8"
    return InputImage(camera=camera, pixels=arr, pixel_format=fmt, bits=8)


def image_files(args: list[str]) -> list[Path]:
    """The files the arguments name (a folder: its image files, sorted); ``ConfigError``
    naming every argument that does not exist or is a folder without images."""
    files: list[Path] = []
    problems: list[str] = []
    for name in args:
        path = Path(name)
        if path.is_dir():
            found = sorted(f for f in path.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"{path}: a folder without image files "
                                f"({' '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    if problems:
        raise ConfigError("nothing was inspected:\n  - " + "\n  - ".join(problems)
                          + "\ngive image files (PNG, JPEG, TIFF, BMP) or folders of them")
    return files


def run(args: argparse.Namespace) -> int:
    """Inspect every image; exit by the worst verdict (0 PASS, 1 FAIL, 2 ERROR)."""
    from pipeline import Inspector
    from pipeline.overlay import draw_overlay
    from station.logs import setup_logging
    from station.preflight import require_paths

    if args.model:
        args.overrides = [*args.overrides, f"model.checkpoint={Path(args.model).resolve()}"]
    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    camera = cfg.camera(args.camera) if args.camera else cfg.cameras[0]
    scale = args.mm_per_px if args.mm_per_px is not None else camera.mm_per_px
    # Everything cheap is checked before the model loads (seconds).
    files = image_files(args.images)
    require_paths(cfg, cameras=False)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create it ({exc.strerror})") from exc
    inspector = Inspector.from_config(cfg)
    info = inspector.model_info
    if not info["trained"]:
        print(f"note: model {info['model_id']} is UNTRAINED; its defects are noise",
              file=sys.stderr)
    rows = []
    worst = 0
    for path in files:
        try:
            image = read_image(path, camera.name)
            result = inspector.inspect([image],
                                       mm_per_px={camera.name: scale} if scale else None)
        except StationError as exc:
            print(f"station inspect: {exc}", file=sys.stderr)
            (out / f"{path.stem}.json").write_text(json.dumps({
                "image": str(path), "camera": camera.name, "verdict": "ERROR",
                "reasons": [str(exc)], "model": info,
            }, indent=2) + "\n")
            rows.append((path.name, "ERROR", "-", "-", "-"))
            worst = max(worst, EXIT_BY_VERDICT["ERROR"])
            continue
        cam = result.cameras[0]
        overlay = out / f"{path.stem}.overlay.png"
        cv2.imwrite(str(overlay), draw_overlay(image, cam, result.verdict))
        record = {
            "image": str(path),
            "camera": camera.name,
            "mm_per_px": scale,
            "verdict": result.verdict.value,
            "reasons": result.reasons,
            "timings_ms": result.timings_ms,
            "model": info,
            "width": cam.width,
            "height": cam.height,
            "defects": [dataclasses.asdict(d) for d in cam.defects],
            "part_score": cam.part_score,
            "part_class": cam.part_class,
            "part_box": list(cam.part_box) if cam.part_box else None,
            "overlay": str(overlay),
        }
        (out / f"{path.stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        worst = max(worst, EXIT_BY_VERDICT[result.verdict.value])
        largest = cam.defects[0] if cam.defects else None
        rows.append((
            path.name, result.verdict.value, str(len(cam.defects)),
            (f"{largest.class_name} {largest.area_px} px" if largest else "-"),
            f"{result.timings_ms.get('total', 0.0):.0f}",
        ))
    header = ("IMAGE", "VERDICT", "DEFECTS", "LARGEST", "MS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"model {info['model_id']} on {info['device']}; overlays and JSON in {out}")
    return worst
