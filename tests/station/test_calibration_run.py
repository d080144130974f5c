"""station.calibration.run: the calibration run on a synthetic booth with known truth (a
camera fed by a plain function of the lit channels and the target in view), prompts, skips,
quitting, and what is carried over from the calibration in force."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from config import StationConfig
from config.cameras import CameraConfig
from drivers.cameras import ReplayCamera
from drivers.cameras.base import Camera
from station import testing as t
from station.calibration.run import calibrate
from station.calibration.store import calibration_dir, list_calibrations, load_calibration
from station.terminal import Console

SHAPE = (120, 160)
SQUARE_PX = 14


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log events captured (off stdout)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def _cal_id(text: str) -> str:
    found = re.search(r"calibration (cal-\S+) written", text)
    assert found, text
    return found.group(1)


class Booth:
    """One camera looking at whatever target the technician put in view, lit by FakeLights."""

    def __init__(self, dead: tuple[int, ...] = (), pixel_format: str = "Mono12") -> None:
        self.lights = t.FakeLights({1: 200, 2: 150}, dead=dead)
        self.pixel_format = pixel_format
        self.target = "part"
        board = t.blur(t.render_chessboard(7, 5, SQUARE_PX, 10), 0.7)
        pad = np.full(SHAPE, 0.9, np.float32)
        pad[:board.shape[0], :board.shape[1]] = board
        self.images = {
            "part": t.texture(SHAPE) * 0.8,
            "flat": 0.7 * t.vignette(SHAPE, 0.25),
            "chessboard": pad,
        }

    def scene(self, index: int, features: Any) -> t.Image:
        """The target under the lit channels, plus a small dark offset."""
        level = sum(self.lights.output().values()) * 0.5
        return np.asarray(np.clip(0.01 + self.images[self.target] * level, 0, 1),
                          dtype=np.float32)

    def ask(self, prompt: str) -> str:
        """The technician: puts the right target in view for each step, then presses Enter."""
        if " flat]" in prompt:
            self.target = "flat"
        elif " scale]" in prompt:
            self.target = "chessboard"
        else:
            self.target = "part"
        return ""

    def open_camera(self, cfg: CameraConfig, base_dir: Path) -> Camera:
        """The booth camera for any camera config."""
        return ReplayCamera.from_function(cfg.name, self.scene, self.pixel_format)


def _booth_cfg(tmp_path: Path) -> StationConfig:
    return StationConfig.model_validate({
        "cameras": [{"name": "cam0", "backend": "genicam"}],
        "lights": {"backend": "none", "settle_ms": 0, "channels": [
            {"channel": 1, "name": "top", "intensity": 200},
            {"channel": 2, "name": "side", "intensity": 150}]},
        "calibration": {"chessboard_cols": 7, "chessboard_rows": 5,
                        "chessboard_square_mm": 2.0, "focus_max_s": 0.3, "dark_frames": 3,
                        "flat_frames": 3, "exposure_frames": 1, "scale_frames": 2},
    })


def _run(booth: Booth, cfg: StationConfig, data: Path, steps: list[str] | None = None
         ) -> tuple[int, str]:
    out = io.StringIO()
    code = calibrate(cfg, data, cfg.cameras, steps,  # type: ignore[arg-type]
                     Console(out, interactive=True, ask=booth.ask),
                     open_camera_fn=booth.open_camera, lights=booth.lights)
    return code, out.getvalue()


def test_synthetic_booth_calibrates_and_the_daemon_loads_it(tmp_path: Path) -> None:
    """Every step PASSes on a booth with known truth; the calibration carries the dark and
    flat maps (contract shapes) and mm_per_px = square_mm / square_px; a later run of only
    the scale step keeps the maps (carried over, stamped with the run that measured them);
    a failing run leaves the calibration in force alone."""
    booth, cfg = Booth(), _booth_cfg(tmp_path)
    code, out = _run(booth, cfg, tmp_path)
    assert code == 0, out
    for step in ("exposure", "focus", "dark", "flat", "scale", "lights"):
        assert re.search(rf"cam0\s+{step}\s+PASS", out), out
    first = _cal_id(out)
    loaded = load_calibration(cfg, tmp_path)
    cam0 = loaded.cameras["cam0"]
    assert loaded.calibration_id == first and loaded.usable
    assert cam0.dark is not None and cam0.dark.shape == SHAPE
    assert cam0.flat is not None and cam0.flat.dtype == np.float32
    assert cam0.mm_per_px == pytest.approx(2.0 / SQUARE_PX, rel=0.01)

    code, out = _run(booth, cfg, tmp_path, ["scale"])
    assert code == 0, out
    second = load_calibration(cfg, tmp_path)
    assert second.calibration_id == _cal_id(out) != first
    assert second.cameras["cam0"].flat is not None
    assert second.record is not None
    assert second.record.cameras["cam0"].steps["flat"].calibration_id == first
    assert second.record.cameras["cam0"].steps["scale"].calibration_id == second.calibration_id

    code, out = _run(Booth(dead=(2,)), cfg, tmp_path, ["lights"])
    assert code == 1 and "channel 2 (side)" in out and "NOT written" in out
    assert load_calibration(cfg, tmp_path).calibration_id == second.calibration_id
    assert len(list_calibrations(calibration_dir(cfg, tmp_path))) == 2


def test_maps_of_another_pixel_format_are_not_carried_over(tmp_path: Path) -> None:
    """After the camera changed from Mono12 to Mono8, a scale-only run does not carry the
    12-bit dark and flat maps into the new calibration (they are in other units)."""
    cfg = _booth_cfg(tmp_path)
    assert _run(Booth(), cfg, tmp_path, ["dark", "flat"])[0] == 0
    code, out = _run(Booth(pixel_format="Mono8"), cfg, tmp_path, ["scale"])
    assert code == 0, out
    loaded = load_calibration(cfg, tmp_path)
    assert loaded.record is not None and loaded.record.cameras["cam0"].pixel_format == "Mono8"
    assert loaded.cameras["cam0"].dark is None and loaded.cameras["cam0"].flat is None
    assert "flat" not in loaded.record.cameras["cam0"].steps


def test_prompt_skip_and_quit(tmp_path: Path) -> None:
    """At a prompt, 's' skips the step (SKIP, reason given); Ctrl-D (EOF) quits the run with
    the lights left off and nothing written."""
    booth, cfg = Booth(), _booth_cfg(tmp_path)
    out = io.StringIO()
    code = calibrate(cfg, tmp_path, cfg.cameras, ["dark", "lights"],
                     Console(out, interactive=True, ask=lambda prompt: "s"),
                     open_camera_fn=booth.open_camera, lights=booth.lights)
    text = out.getvalue()
    assert code == 0 and text.count("[SKIP]") == 2 and "skipped at the prompt" in text

    def eof(prompt: str) -> str:
        raise EOFError

    before = list_calibrations(calibration_dir(cfg, tmp_path))
    with pytest.raises(KeyboardInterrupt):
        calibrate(cfg, tmp_path, cfg.cameras, ["lights"], Console(io.StringIO(),
                  interactive=True, ask=eof), open_camera_fn=booth.open_camera,
                  lights=booth.lights)
    assert not booth.lights.lit
    assert list_calibrations(calibration_dir(cfg, tmp_path)) == before
