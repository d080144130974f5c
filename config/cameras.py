"""Config of the cameras: replay (image files), GenICam (harvesters + a GenTL producer).

Defaults are given as ``default=`` keywords so type checkers see them (pydantic's
``dataclass_transform`` recognises the keyword, not the positional form).
"""

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
        description="Glob patterns (or folders) of image files, relative to the config file "
        "[path]",
    )
    loop: bool = Field(default=True, description="Start again after the last image [-]")
    pixel_format: PixelFormatName = Field(
        default="Mono8",
        description="Pixel format the frames are served in (Bayer formats are re-mosaiced "
        "from the image's colours) [PFNC]",
    )
    width: int | None = Field(
        default=None, ge=16, le=16384,
        description="Scale frames to this width (e.g. 5472); null keeps the file's; with "
        "height null too, the aspect ratio is kept [px]",
    )
    height: int | None = Field(
        default=None, ge=16, le=16384,
        description="Scale frames to this height (e.g. 3648); null keeps the file's [px]",
    )
    exposure_us: float = Field(
        default=10000.0, gt=0, le=10_000_000,
        description="Emulated ExposureTime at open; pixel values scale linearly with it against "
        "a reference of 10000 µs, saturating at the format's maximum [µs]",
    )
    gain_db: float = Field(
        default=0.0, ge=-20, le=48,
        description="Emulated Gain at open; scales pixel values by 10^(dB/20) [dB]",
    )
    readout_ms: float = Field(
        default=0.0, ge=0, le=10_000,
        description="Time a grab takes, emulating a real sensor's readout (0: immediate) [ms]",
    )
    cache_mb: int = Field(
        default=256, ge=0, le=16384,
        description="Decoded, converted frames kept in memory so a loop does not re-decode "
        "files (least recently used dropped first) [MiB]",
    )
    trigger: Literal["software", "external"] = Field(
        default="software",
        description="'software': a frame per trigger() (the daemon's cycle); 'external': "
        "frames come when the camera's line is pulsed (ReplayCamera.pulse(), or every "
        "line_period_ms), like a hardware-triggered camera, for cycle.trigger: hardware [-]",
    )
    line_period_ms: float = Field(
        default=0.0, ge=0, le=60000,
        description="trigger 'external': pulse the line every this long, at multiples of "
        "the period on the host clock (so cameras with the same period fire together); "
        "0: only ReplayCamera.pulse() fires it [ms]",
    )


class GenICamConfig(Section):
    """A camera opened through harvesters on a GenTL producer (one worker process each)."""

    cti: list[str] = Field(
        default_factory=lambda: ["viky"],
        description="GenTL producer files (.cti); 'viky' means the one the genicam wheel "
        "installs; GENICAM_GENTL64_PATH is searched too [path]",
    )
    serial_number: str | None = Field(
        default=None, max_length=64, description="Select the device by serial number [-]"
    )
    user_defined_name: str | None = Field(
        default=None, max_length=64, description="Select by user-defined name [-]"
    )
    device_id: str | None = Field(
        default=None, max_length=256, description="Select by GenTL device id [-]"
    )
    index: int | None = Field(
        default=None, ge=0, le=63,
        description="Select by position in the device list (tests only: the order may change) "
        "[-]",
    )
    features: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="GenICam features applied in order before acquisition, each read back "
        "(node -> value) [-]",
    )
    trigger: Literal["auto", "software", "hardware", "single"] = Field(
        default="auto",
        description="'auto' probes the node map: software trigger if present, else single-frame "
        "acquisition; 'hardware' waits on trigger_line [-]",
    )
    trigger_line: str = Field(
        default="Line0", max_length=32, description="Input line for hardware trigger [-]"
    )
    buffers: int = Field(
        default=4, ge=1, le=64, description="Number of acquisition buffers [count]"
    )
    open_timeout_s: float = Field(
        default=30.0, gt=0, le=300,
        description="Longest wait for the camera's worker process to start, open the device "
        "and apply the features [s]",
    )
    worker_python: str | None = Field(
        default=None, max_length=4096,
        description="Python interpreter that runs this camera's worker process; null: the "
        "station's own. For producers that fail on the station's Python (harvesters#503: "
        "Hikrobot MVS on >= 3.11); that interpreter needs numpy, harvesters, genicam, pydantic, "
        "PyYAML and structlog [path]",
    )
    worker_rss_limit_mb: int = Field(
        default=1024, ge=32, le=65536,
        description="A camera worker whose resident memory exceeds this is restarted before "
        "the next trigger (a planned restart, not a loss; harvesters#454/#502: producers "
        "and harvesters grow over long runs) [MiB]",
    )
    reply_margin_s: float = Field(
        default=2.0, gt=0, le=60,
        description="Grace beyond a request's own timeout before a silent worker process is "
        "declared hung, killed and the camera reported lost [s]",
    )


class CameraConfig(Section):
    """One camera of the booth."""

    name: str = Field(
        default="cam0", min_length=1, max_length=32, description="Camera name [-]"
    )
    backend: Literal["replay", "genicam", "pylon"] = Field(
        default="replay",
        description="Which driver opens this camera; 'pylon' (Basler pypylon, optional extra) "
        "selects the device and takes features from the genicam section [-]",
    )
    timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Longest wait for one frame [s]"
    )
    mm_per_px: float | None = Field(
        default=None, gt=0, le=10,
        description="Pixel size on the part when no calibration gives it; null: areas in px only "
        "[mm/px]",
    )
    replay: ReplayConfig = Field(
        default_factory=ReplayConfig, description="Replay backend [-]"
    )
    genicam: GenICamConfig = Field(
        default_factory=GenICamConfig, description="GenICam backend [-]"
    )
