"""Tests of station.hmi.export: disagreements become a dataset `station train` loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import pytest

from models.data import load_dataset
from station.hmi.export import ExportError, classes_of, export_disagreement
from station.hmi.records import Records
from tests.station.hmi.conftest import defect, header, record

CLASSES = ["Blowhole", "Crack"]


def _export(store: Any, h: dict[str, Any], root: Path, note: str = "n") -> Any:
    record(store, h)
    records = Records(store.data_dir)
    found = records.header(h["inspection_id"])
    assert found is not None
    return export_disagreement(records, found[0], found[1], root, note, CLASSES, "t")


def test_a_false_reject_gives_images_with_empty_masks(store: Any, tmp_path: Path) -> None:
    """A FAIL the operator calls good: both previews, all-background masks, loadable with
    --format folder."""
    h = header(1, "FAIL", defects=[defect()])
    done = _export(store, h, tmp_path / "out", "dust, not a crack")
    folder = tmp_path / "out" / "operator-says-good"
    assert done.folder == folder and len(done.files) == 4 and not done.missing
    mask = cv2.imread(str(folder / "masks" / f"{h['inspection_id']}_cam0.png"),
                      cv2.IMREAD_GRAYSCALE)
    assert mask is not None and mask.shape == (240, 320) and int(mask.max()) == 0
    ds = load_dataset(folder, "folder")
    assert ds.classes == CLASSES and len(ds.samples) == 2
    assert "dust, not a crack" in (folder / "notes.csv").read_text()


def test_a_miss_gives_the_station_map_as_a_mask_to_correct(store: Any, tmp_path: Path) -> None:
    """A PASS the operator calls defective: the mask is the station's defect map, scaled to
    the preview, in the operator-says-defective folder."""
    h = header(2, "PASS", defects=[defect(x=40, y=40, size=40, score=0.4)])
    _export(store, h, tmp_path / "out")
    folder = tmp_path / "out" / "operator-says-defective"
    mask = cv2.imread(str(folder / "masks" / f"{h['inspection_id']}_cam0.png"),
                      cv2.IMREAD_GRAYSCALE)
    assert mask is not None and mask.shape == (240, 320)
    assert int(mask[60, 60]) == 2 and int(mask[200, 300]) == 0
    assert len(load_dataset(folder, "folder").samples) == 2


def test_an_error_is_not_exported(store: Any, tmp_path: Path) -> None:
    """An ERROR judged nothing: ExportError says to acknowledge it."""
    with pytest.raises(ExportError, match="acknowledge it instead"):
        _export(store, header(3, "ERROR"), tmp_path / "out")


def test_without_previews_nothing_is_exported(store: Any, tmp_path: Path) -> None:
    """No preview kept: ExportError naming storage.preview_px."""
    h = header(4, "FAIL", defects=[defect()])
    record(store, h, previews=False)
    records = Records(store.data_dir)
    found = records.header(h["inspection_id"])
    assert found is not None
    with pytest.raises(ExportError, match=r"storage\.preview_px"):
        export_disagreement(records, found[0], found[1], tmp_path / "o", "", CLASSES, "t")


def test_a_folder_of_another_model_is_refused(store: Any, tmp_path: Path) -> None:
    """classes.txt listing other classes: ExportError, nothing mixed."""
    folder = tmp_path / "out" / "operator-says-good"
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("Scratch\n")
    with pytest.raises(ExportError, match="another model"):
        _export(store, header(5, "FAIL", defects=[defect()]), tmp_path / "out")


def test_an_unwritable_export_folder_is_a_clear_error(store: Any, tmp_path: Path) -> None:
    """The export root below a file: ExportError naming hmi.export_dir."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match=r"hmi\.export_dir"):
        _export(store, header(6, "FAIL", defects=[defect()]), blocker)


def test_classes_from_status_or_from_the_defects() -> None:
    """The status's class list wins; else the defects name what they can."""
    h = header(7, "FAIL", defects=[defect(name="Crack", index=3)])
    assert classes_of(h, ["a", "b"]) == ["a", "b"]
    assert classes_of(h, None) == ["class1", "class2", "Crack"]
