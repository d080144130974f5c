"""``station capture``: --calibrate end to end (default config and a synthetic booth),
frame capture to lossless files with sidecars, and --preview."""

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

from config import StationConfig, load_config
from config.cameras import CameraConfig
from drivers.cameras import ReplayCamera
from drivers.cameras.base import Camera
from station import testing as t
from station.calibration.steps import StepResult
from station.calibration.store import calibration_dir, list_calibrations, load_calibration
from station.cli import main
from station.commands.capture import Console, calibrate, summary_table

SHAPE = (120, 160)
SQUARE_PX = 14


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


# --------------------------------------------------------------------- synthetic booth


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


def test_summary_table_lines_up() -> None:
    """One row per camera and step, columns aligned, the key number last."""
    table = summary_table([
        StepResult("exposure", "cam0", "PASS", "", {"exposure_us": 1234.0, "mean": 0.45}),
        StepResult("scale", "camera-long", "FAIL", "scale: nothing"),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["camera", "step", "result", "measured"]
    assert lines[2].split()[:4] == ["cam0", "exposure", "PASS", "1234"]
    assert lines[3].index("FAIL") == lines[2].index("PASS")


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
