"""The whole station's configuration: one pydantic model composed of one section per room."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from config._base import Section
from config.calibration import CalibrationConfig
from config.cameras import CameraConfig, ReplayConfig
from config.hmi import HmiConfig
from config.lights import LightsConfig
from config.messaging import MessagingConfig
from config.mqtt import TOPIC_LEVEL_FORBIDDEN, CollectConfig, MqttConfig
from config.opcua import OpcUaConfig
from config.pipeline import ModelConfig, PipelineConfig
from config.rules import RulesConfig
from config.storage import StorageConfig

#: Bumped when a key is renamed or removed; written into every stored inspection.
SCHEMA_VERSION = 1


class CycleConfig(Section):
    """The inspection cycle."""

    queue_depth: int = Field(
        2, ge=1, le=64,
        description="Triggers waiting for the cycle; a trigger finding it full is answered BUSY "
        "[count]",
    )
    cycle_timeout_s: float = Field(
        30.0, gt=0, le=600, description="A cycle taking longer is aborted as ERROR [s]"
    )
    shutdown_timeout_s: float = Field(
        8.0, gt=0, le=60, description="Time the cycle in flight gets to finish at shutdown [s]"
    )
    pipeline_depth: int = Field(
        1, ge=1, le=8,
        description="Acquired parts that may wait for the inference stage: part N+1 is "
        "acquired while part N is inferred, and acquisition waits while this many are "
        "waiting [count]",
    )
    trigger: Literal["software", "hardware"] = Field(
        "software",
        description="'software': each inspect (or OPC UA Trigger) switches the lights and "
        "triggers every camera; 'hardware': the PLC triggers the cameras on a line, the "
        "daemon pairs their frames as they arrive and inspects each set, and refuses "
        "inspect (every camera must be line-triggered: genicam.trigger 'hardware' or "
        "replay.trigger 'external') [-]",
    )
    pair_window_ms: float = Field(
        50.0, gt=0, le=5000,
        description="Hardware trigger: the frames of one part from every camera arrive "
        "within this of each other; a wider spread is an ERROR naming the skew [ms]",
    )
    pair_timeout_ms: float = Field(
        500.0, gt=0, le=60000,
        description="Hardware trigger: how long after a part's first frame the daemon waits "
        "for the other cameras' frames before the part is an ERROR (missing partner); at "
        "least pair_window_ms [ms]",
    )

    @model_validator(mode="after")
    def _timeout_covers_the_window(self) -> CycleConfig:
        if self.pair_timeout_ms < self.pair_window_ms:
            raise ValueError(
                f"cycle.pair_timeout_ms = {self.pair_timeout_ms:g} is shorter than "
                f"cycle.pair_window_ms = {self.pair_window_ms:g}; the daemon must wait at least "
                "the window for a partner: raise pair_timeout_ms or lower pair_window_ms"
            )
        return self


class LoggingConfig(Section):
    """Structured logs."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written [-]"
    )
    format: Literal["auto", "console", "json"] = Field(
        "auto",
        description="'auto': JSON under systemd (JOURNAL_STREAM set) or without a terminal, "
        "readable on a terminal [-]",
    )


class StationConfig(Section):
    """Everything the station needs to run."""

    version: Literal[1] = Field(1, description="Config schema version [-]")
    name: str = Field("station", min_length=1, max_length=64, description="Station name [-]")
    cameras: list[CameraConfig] = Field(
        default_factory=lambda: [
            CameraConfig(name="cam0", replay=ReplayConfig()),
            CameraConfig(name="cam1", replay=ReplayConfig()),
        ],
        min_length=1, max_length=8,
        description="The cameras; every inspection grabs one frame from each [-]",
    )
    lights: LightsConfig = Field(default_factory=LightsConfig, description="Luminaires [-]")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Pipeline [-]")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model [-]")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Verdict rules [-]")
    messaging: MessagingConfig = Field(
        default_factory=MessagingConfig, description="ZeroMQ sockets [-]"
    )
    opcua: OpcUaConfig = Field(
        default_factory=OpcUaConfig, description="OPC UA server for PLCs [-]"
    )
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Store [-]")
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Calibration [-]"
    )
    cycle: CycleConfig = Field(default_factory=CycleConfig, description="Inspection cycle [-]")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logs [-]")
    hmi: HmiConfig = Field(
        default_factory=HmiConfig, description="Operator's web screen (`station hmi`) [-]"
    )
    mqtt: MqttConfig = Field(
        default_factory=MqttConfig, description="The plant's MQTT broker (docs/fleet.md) [-]"
    )
    collect: CollectConfig = Field(
        default_factory=CollectConfig,
        description="`station collect`: verdicts from the broker into PostgreSQL [-]",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _unique_camera_names(self) -> StationConfig:
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"camera names must be unique; {', '.join(dupes)} appears more than once"
            )
        return self

    @model_validator(mode="after")
    def _name_is_a_topic_level(self) -> StationConfig:
        bad = sorted({c for c in self.name if c in TOPIC_LEVEL_FORBIDDEN or ord(c) < 32})
        if self.mqtt.enabled and bad:
            raise ValueError(
                f"name {self.name!r} becomes a level of the MQTT topic tree (mqtt.topic_root) "
                f"and may not contain {' '.join(repr(c) for c in bad)}; rename the station"
            )
        return self

    @model_validator(mode="after")
    def _line_triggered_cameras(self) -> StationConfig:
        if self.cycle.trigger != "hardware":
            return self
        bad = [
            f"{c.name} ({c.backend}: " + (
                f"replay.trigger is {c.replay.trigger!r}" if c.backend == "replay"
                else f"genicam.trigger is {c.genicam.trigger!r}") + ")"
            for c in self.cameras
            if (c.backend == "replay" and c.replay.trigger != "external")
            or (c.backend != "replay" and c.genicam.trigger != "hardware")
        ]
        if bad:
            raise ValueError(
                "cycle.trigger is 'hardware' (the PLC triggers the cameras on a line) but "
                f"camera(s) {', '.join(bad)} are not line-triggered; set genicam.trigger: "
                "hardware (with genicam.trigger_line) or replay.trigger: external on every "
                "camera, or cycle.trigger: software"
            )
        return self

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in this config are resolved against."""
        return self._base_dir

    def resolve(self, path: str | Path) -> Path:
        """Resolve ``path`` against the config file's directory (``~`` expanded)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self._base_dir / p)

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name``; ``KeyError`` lists the names there are."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        valid = ", ".join(c.name for c in self.cameras)
        raise KeyError(f"no camera named {name!r}; the config has: {valid}")
