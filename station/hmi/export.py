"""An operator's "this verdict is wrong", turned into training data.

Each mark writes the inspection's frame previews (the JPEGs the store kept) with a mask of
the same size into one of two folders, each a dataset for ``station train --format folder``::

    <export dir>/operator-says-good/        the station FAILed the part, the operator says good
        images/<inspection id>_<camera>.jpg
        masks/<inspection id>_<camera>.png  all background: the part has no defect
        classes.txt                         the model's classes, one a line
        notes.csv                           inspection, part, camera, verdict, note, time
    <export dir>/operator-says-defective/   the station PASSed it, the operator says defective
        images/..., masks/...               the mask is what the station saw (its defect map,
                                            sub-threshold defects included): a person must
                                            correct it before training (docs/hmi.md)

Masks are class-index PNGs (0 background, i = the i-th line of classes.txt), the layout
``models.data.load_folder`` reads.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config.errors import StationError
from station.hmi.records import Records

FOLDERS = {"FAIL": "operator-says-good", "PASS": "operator-says-defective"}
SAYS = {"FAIL": "good", "PASS": "defective"}


class ExportError(StationError):
    """A disagreement could not be exported (the message says why and what to do)."""


@dataclass(frozen=True)
class Exported:
    """What one export wrote."""

    folder: Path
    files: list[str]  # relative to ``folder``
    missing: list[str]  # cameras without a kept preview


def classes_of(header: dict[str, Any], known: list[str] | None) -> list[str]:
    """The model's classes: from the station's status when known, else from the defects
    (index i named by any defect of class i; gaps named ``class<i>``)."""
    if known:
        return list(known)
    named: dict[int, str] = {}
    for cam in header.get("cameras", []):
        for d in cam.get("defects", []):
            named[int(d["class_index"])] = str(d["class_name"])
    top = max(named, default=1)
    return [named.get(i, f"class{i}") for i in range(1, top + 1)]


def _write_classes(folder: Path, classes: list[str]) -> None:
    path = folder / "classes.txt"
    text = "".join(f"{c}\n" for c in classes)
    if path.is_file() and path.read_text() != text:
        raise ExportError(
            f"{path} lists other classes than this model ({', '.join(classes)}): the folder "
            "holds exports of another model; set hmi.export_dir to a new folder"
        )
    path.write_text(text)


def export_disagreement(
    records: Records,
    header: dict[str, Any],
    maps: dict[str, str],
    export_root: Path,
    note: str,
    classes: list[str],
    at: str,
) -> Exported:
    """Write the images and masks of one disagreed inspection; raise ExportError with the
    reason when it cannot be (an ERROR, no preview kept at all, an unwritable folder)."""
    verdict = header.get("verdict")
    if verdict not in FOLDERS:
        raise ExportError(
            f"inspection {header.get('inspection_id')} is {verdict}: an ERROR judged nothing, "
            "so there is nothing to disagree with; acknowledge it instead"
        )
    iid = str(header["inspection_id"])
    folder = export_root / FOLDERS[verdict]
    files: list[str] = []
    missing: list[str] = []
    try:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        _write_classes(folder, classes)
        for cam in header.get("cameras", []):
            name = str(cam["camera"])
            preview = records.preview_file(iid, str(header["started_at"]), name)
            if preview is None:
                missing.append(name)
                continue
            img = cv2.imdecode(np.frombuffer(preview.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                missing.append(name)
                continue
            h, w = img.shape[:2]
            mask = np.zeros((h, w), np.uint8)
            map_path = records.map_file(maps.get(name))
            if verdict == "PASS" and map_path is not None:
                dmap = cv2.imread(str(map_path), cv2.IMREAD_GRAYSCALE)
                if dmap is not None:
                    mask = cv2.resize(dmap, (w, h), interpolation=cv2.INTER_NEAREST)
            stem = f"{iid}_{name}"
            (folder / "images" / f"{stem}.jpg").write_bytes(preview.read_bytes())
            if not cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask):
                raise ExportError(f"cannot write {folder / 'masks' / stem}.png")
            files += [f"images/{stem}.jpg", f"masks/{stem}.png"]
        if not files:
            raise ExportError(
                f"inspection {iid}: no frame preview kept (storage.preview_px is 0, or "
                "storage.max_disk_mb pruned them): the mark is recorded, no images exported"
            )
        notes = folder / "notes.csv"
        new = not notes.exists()
        with notes.open("a", newline="") as fh:
            out = csv.writer(fh)
            if new:
                out.writerow(["inspection_id", "part_id", "cameras", "station_verdict",
                              "operator_says", "note", "marked_at"])
            out.writerow([iid, header.get("part_id") or "", " ".join(
                f.split("/")[1].removesuffix(".jpg") for f in files if f.startswith("images/")),
                verdict, SAYS[verdict], note, at])
    except OSError as exc:
        raise ExportError(
            f"cannot export to {folder}: {exc.strerror or exc}; set hmi.export_dir to a "
            "writable folder"
        ) from exc
    return Exported(folder, files, missing)
