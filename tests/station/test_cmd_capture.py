"""``station capture``: --calibrate end to end on the default config, argument errors, frame
capture to lossless files with sidecars, and --preview. The calibration run itself on a
synthetic booth: test_calibration_run.py."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import structlog

from config import load_config
from drivers.cameras import ReplayCamera
from station.calibration.store import list_calibrations, load_calibration
from station.cli import main


@pytest.fixture(autouse=True)
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """Log events captured (off stdout); the command's own logging setup left out."""
    monkeypatch.setattr("station.logs.setup_logging", lambda *a, **k: None)
    with structlog.testing.capture_logs() as captured:
        yield captured


def _cal_id(text: str) -> str:
    found = re.search(r"calibration (cal-\S+) written", text)
    assert found, text
    return found.group(1)


# ----------------------------------------------------------------- default configuration


def test_calibrate_yes_on_default_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    """`station capture --calibrate --yes` on config/default.yaml: exposure and focus PASS on
    the replay cameras, the live-only steps SKIP with the reason, a summary table, exit 0, and
    a calibration that load_calibration (what the daemon calls) reads back."""
    assert main(["capture", "--calibrate", "--yes", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== summary" in out and re.search(r"camera\s+step\s+result\s+measured", out)
    assert re.search(r"cam0\s+exposure\s+PASS", out) and re.search(r"cam1\s+focus\s+PASS", out)
    assert re.search(r"cam0\s+scale\s+SKIP\s+camera cam0 is a replay camera", out)
    cal_id = _cal_id(out)
    cfg = load_config("default")
    loaded = load_calibration(cfg, tmp_path)
    assert loaded.calibration_id == cal_id and loaded.usable and not loaded.warnings
    assert loaded.cameras["cam0"].calibration_id == cal_id
    assert loaded.cameras["cam0"].mm_per_px == 0.1  # no scale step: cameras[].mm_per_px
    assert loaded.cameras["cam0"].dark is None
    assert loaded.record is not None
    cam0 = loaded.record.cameras["cam0"]
    assert cam0.steps["exposure"].status == "PASS" and cam0.exposure_us is not None
    assert cam0.steps["scale"].status == "SKIP"
    assert loaded.record.settings["calibration"]["exposure_target"] == 0.45


def test_forced_live_step_on_replay_fails_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--steps dark on a replay camera serving photos: the dark frames are not dark, the step
    FAILs with its message, exit 1, and no calibration is written."""
    code = main(["capture", "--calibrate", "--yes", "--steps", "dark", "--camera", "cam0",
                 "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "dark_max_mean" in out or "frame size changed" in out
    assert "NOT written" in out
    assert list_calibrations(tmp_path / "calibration") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calibrate", "--yes", "--camera", "nope"], "no such camera in the config; it has"),
        (["--steps", "focus"], "--steps and --yes belong to --calibrate"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown camera, or calibration options without --calibrate: exit 2 naming the problem."""
    assert main(["capture", "--data-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_step_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--steps with an unknown name: argparse exits 2 listing the valid steps."""
    with pytest.raises(SystemExit) as exc:
        main(["capture", "--calibrate", "--steps", "exposure,colour"])
    assert exc.value.code == 2
    assert "valid steps: exposure,focus,dark,flat,scale,lights" in capsys.readouterr().err


def test_no_terminal_needs_yes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Interactive calibration without a terminal on stdin: exit 2 pointing at --yes."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["capture", "--calibrate", "--data-dir", str(tmp_path)]) == 2
    assert "pass --yes" in capsys.readouterr().err


# ----------------------------------------------------------------------- capture, preview


def test_capture_writes_lossless_frames_and_sidecars(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--count 2 from both cameras: PNG files identical to the frames, a JSON sidecar each;
    a 12-bit camera gives 16-bit PNGs."""
    out = tmp_path / "shots"
    code = main(["capture", "--count", "2", "--out", str(out), "--data-dir", str(tmp_path),
                 "--set", "cameras.1.replay.pixel_format=Mono12"])
    assert code == 0 and "captured 4 frame(s)" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 4 and len(list(out.glob("*.json"))) == 4
    cfg = load_config("default")
    replay = ReplayCamera.from_config(cfg.cameras[0], cfg.base_dir)
    replay.open()
    replay.trigger()
    truth = replay.grab(1.0)
    first = sorted(p for p in pngs if p.name.startswith("cam0_") and p.name.endswith("_00000.png"))
    written = cv2.imread(str(first[0]), cv2.IMREAD_UNCHANGED)
    assert written is not None and np.array_equal(written, truth.data)
    meta = json.loads(first[0].with_suffix(".json").read_text())
    assert meta["camera"] == "cam0" and meta["file"] == first[0].name
    assert meta["width"] == truth.width and meta["pixel_format"] == "Mono8"
    assert meta["lights"] == "on" and meta["light_intensities"] == {"top": 180, "side": 120}
    deep = cv2.imread(str(next(p for p in pngs if p.name.startswith("cam1_"))),
                      cv2.IMREAD_UNCHANGED)
    assert deep is not None and deep.dtype == np.uint16 and int(deep.max()) <= 4095


def test_preview_rewrites_a_jpeg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--preview for a bounded time: a JPEG of the requested width, both cameras side by side,
    replaced in place (no temporary file left)."""
    path = tmp_path / "live.jpg"
    code = main(["capture", "--preview", "--duration", "0.3", "--interval", "0.05",
                 "--width", "320", "--lights", "off", "--out", str(path)])
    assert code == 0 and "update(s)" in capsys.readouterr().out
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] == 320
    assert [p.name for p in tmp_path.iterdir()] == ["live.jpg"]
