"""Config of the cameras: replay (image files), GenICam (harvesters + a GenTL producer)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config._base import Section

PixelFormatName = Literal[
    "Mono8", "Mono10", "Mono12", "Mono16", "RGB8", "BGR8", "RGBa8",
    "BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8",
    "BayerRG12", "BayerGB12", "BayerGR12", "BayerBG12",
]


class ReplayConfig(Section):
    """Serve image files as frames, for demos, tests and re-inspection."""

    images: list[str] = Field(
        default_factory=lambda: ["samples/*.jpg"],
        description="Glob patterns of image files, relative to the config file [path]",
    )
    loop: bool = Field(True, description="Start again after the last image [-]")
    pixel_format: PixelFormatName = Field(
        "Mono8", description="Pixel format the frames are served in (Bayer re-mosaics) [PFNC]"
    )
    width: int | None = Field(
        None, ge=16, le=16384, description="Scale frames to this width; null keeps the file's [px]"
    )
    height: int | None = Field(
        None, ge=16, le=16384, description="Scale frames to this height; null keeps the file's [px]"
    )


class GenICamConfig(Section):
    """A camera opened through harvesters on a GenTL producer."""

    cti: list[str] = Field(
        default_factory=lambda: ["viky"],
        description="GenTL producer files (.cti); 'viky' means the one the genicam wheel "
        "installs; GENICAM_GENTL64_PATH is searched too [path]",
    )
    serial_number: str | None = Field(None, description="Select the device by serial [-]")
    user_defined_name: str | None = Field(None, description="Select by user-defined name [-]")
    device_id: str | None = Field(None, description="Select by GenTL device id [-]")
    index: int | None = Field(
        None, ge=0, le=63, description="Select by position in the device list (tests only) [-]"
    )
    features: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="GenICam features applied in order before acquisition (node -> value) [-]",
    )
    trigger: Literal["auto", "software", "hardware", "single"] = Field(
        "auto",
        description="'auto' probes the node map: software trigger if present, else single-frame [-]",
    )
    trigger_line: str = Field("Line0", description="Input line for hardware trigger [-]")
    buffers: int = Field(4, ge=1, le=64, description="Number of acquisition buffers [count]")


class CameraConfig(Section):
    """One camera of the booth."""

    name: str = Field("cam0", min_length=1, max_length=32, description="Camera name [-]")
    backend: Literal["replay", "genicam", "pylon"] = Field(
        "replay", description="Which driver opens this camera [-]"
    )
    timeout_s: float = Field(
        2.0, gt=0, le=60, description="Longest wait for one frame [s]"
    )
    mm_per_px: float | None = Field(
        None, gt=0, le=10,
        description="Pixel size on the part when no calibration gives it; null: areas in px only "
        "[mm/px]",
    )
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="Replay backend [-]")
    genicam: GenICamConfig = Field(
        default_factory=GenICamConfig, description="GenICam backend [-]"
    )
