"""Every exception the station raises on purpose, in one place.

It lives in ``config`` because ``config`` is the one room every other room may import
(station -> pipeline, models, drivers -> config). Vendor exceptions (harvesters, genicam,
pyserial, torch) are translated into these at the boundary: ``raise CameraTimeout(...) from exc``.

Each message names the argument, the rule and the value, and where it can, the fix.

The tree::

    StationError
    ├── ConfigError                      bad config file, key or override (exit code 2)
    ├── DriverError
    │   ├── CameraError
    │   │   ├── CameraNotFound           no device matches the configured selector
    │   │   ├── CameraFeatureError       missing / read-only / out-of-range GenICam node
    │   │   ├── CameraTimeout            no frame within the configured timeout
    │   │   ├── IncompleteFrame          buffer incomplete or corrupt
    │   │   ├── PixelFormatError         unsupported or unknown pixel format
    │   │   └── CameraLost               device stopped answering (link loss, reboot)
    │   └── LightError
    │       ├── LightTimeout             controller did not answer in time
    │       ├── LightProtocolError       garbled reply, bad checksum
    │       ├── LightRefused             controller answered NG with an error number
    │       └── LightPortError           serial port missing or vanished
    ├── ModelError
    │   ├── CheckpointError              corrupt, mismatched or unreadable checkpoint
    │   └── UnknownName                  registry lookup failed (lists valid names)
    ├── PipelineError                    bad tensor shapes, wrong input for the pipeline
    │   └── InferenceError               the device failed running the network (out of
    │                                    memory, CUDA error); translated at the pipeline's
    │                                    edge by ``pipeline.errors.torch_errors``
    ├── CalibrationError                 stale, missing or foreign calibration
    ├── DatasetError                     unreadable dataset or annotation
    ├── StoreError                       inspection store (SQLite) problem
    ├── PlantError                       the plant's side (docs/fleet.md)
    │   ├── BrokerError                  the MQTT broker refused us or cannot be reached
    │   └── DatabaseError                the plant's PostgreSQL refused us or cannot be reached
    └── NoAnswer                         the station did not answer a client in time
"""

from __future__ import annotations


class StationError(Exception):
    """Base of every error the station raises on purpose."""


class ConfigError(StationError):
    """A configuration file, key or override is invalid."""


class DriverError(StationError):
    """A hardware driver failed."""


class CameraError(DriverError):
    """A camera failed."""


class CameraNotFound(CameraError):
    """No device matches the configured selector."""


class CameraFeatureError(CameraError):
    """A GenICam feature could not be applied."""


class CameraTimeout(CameraError):
    """No frame arrived within the timeout."""


class IncompleteFrame(CameraError):
    """A buffer was incomplete or corrupt."""


class PixelFormatError(CameraError):
    """A pixel format is unknown or unsupported."""


class CameraLost(CameraError):
    """The device stopped answering."""


class LightError(DriverError):
    """A luminaire controller failed."""


class LightTimeout(LightError):
    """The controller did not answer in time."""


class LightProtocolError(LightError):
    """A reply could not be parsed (garbled, bad checksum)."""


class LightRefused(LightError):
    """The controller answered NG."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class LightPortError(LightError):
    """The serial port is missing or vanished."""


class ModelError(StationError):
    """A model could not be built or loaded."""


class CheckpointError(ModelError):
    """A checkpoint is corrupt, mismatched or unreadable."""


class UnknownName(ModelError):
    """A registry lookup failed."""


class PipelineError(StationError):
    """The pipeline got input it cannot process."""


class InferenceError(PipelineError):
    """The device failed while running the network (out of memory, a CUDA error)."""


class CalibrationError(StationError):
    """A calibration is missing, stale or made for other cameras."""


class DatasetError(StationError):
    """A dataset or annotation file cannot be read."""


class StoreError(StationError):
    """The inspection store failed."""


class PlantError(StationError):
    """The plant's side failed: the MQTT broker or the plant's database."""


class BrokerError(PlantError):
    """The MQTT broker refused the connection or a message, or cannot be reached."""


class DatabaseError(PlantError):
    """The plant's PostgreSQL refused a statement or cannot be reached."""


class NoAnswer(StationError):
    """The station did not answer a client's request within the timeout."""
