"""The wire protocol: every message the station sends or accepts, as pydantic models.

Transport (ZeroMQ):
- command socket (ROUTER, ``messaging.command``): a client (REQ or DEALER) sends one JSON
  request frame, gets one JSON reply frame. Every request gets a reply, malformed ones too.
- the plant's MQTT broker (``mqtt``, docs/fleet.md): ``PlantVerdict``, ``StatusMessage``
  (retained) and ``PlantState`` (birth and last will) as JSON, one message each.
- publish socket (PUB, ``messaging.publish``): multipart messages whose first frame is the
  topic (``verdict``, ``status``, ``event``), the second a JSON header, and, for ``verdict``,
  one PNG defect map per camera listed in ``header.maps`` (8-bit, class index per pixel,
  0 = background, downscaled by ``header.map_downscale``).

Every message carries ``schema`` (``WIRE_SCHEMA_VERSION``). Requests may omit it (the current
version is assumed); a request naming another version is refused with ``UNSUPPORTED_SCHEMA``.
``station schema`` prints the JSON Schema of every model here for HMI/PLC authors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

WIRE_SCHEMA_VERSION = 1

ErrorCode = Literal[
    "BAD_JSON",  # the request is not a JSON object
    "BAD_REQUEST",  # a field is missing, has the wrong type or an unknown name
    "UNKNOWN_COMMAND",  # `command` is not one of the commands listed in the message
    "UNSUPPORTED_SCHEMA",  # `schema` names a version this station does not speak
    "TOO_LARGE",  # the request is over messaging.max_request_bytes
    "BUSY",  # the inspection queue is full; try again after the next verdict
    "SHUTTING_DOWN",  # the daemon is stopping and takes no new triggers
    "STORE_ERROR",  # the trigger could not be recorded in the store, so it was not accepted
    "NOT_FOUND",  # result: no inspection with that id was ever accepted
    "FORBIDDEN",  # CURVE: the client's key has no role that may send this command
    "RELOAD_FAILED",  # reload: a file is bad; the running set stays in force (message: why)
    "BACKLOG_FULL",  # mqtt.max_backlog verdicts wait for the plant's broker (docs/fleet.md)
    "HARDWARE_TRIGGER",  # inspect: the line triggers the cameras (cycle.trigger: hardware)
    "INTERNAL",  # a bug: the reply carries the exception's text; the daemon keeps serving
]


#: ``part_id`` and ``request_id``: at most this many characters [-]
MAX_ID_CHARS = 128
#: ``part_id`` and ``request_id``: no control characters (they end up in logs and terminals).
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------


class _Request(_Message):
    """Requests are validated strictly: no value is coerced to another type."""

    schema_: int = Field(
        WIRE_SCHEMA_VERSION, alias="schema", description="Wire schema version (the integer 1)"
    )
    request_id: str | None = Field(
        None, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
        description="Echoed in the reply, for the client's bookkeeping; no control characters",
    )
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class InspectRequest(_Request):
    """Inspect one part. With ``wait`` the reply comes after the verdict and carries it."""

    command: Literal["inspect"]
    part_id: str | None = Field(
        None, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
        description="The part's id (serial, DMC); no control characters",
    )
    wait: bool = Field(
        False, description="Reply with the verdict instead of at once (JSON true or false only)"
    )


class StatusRequest(_Request):
    """Ask for the station's status."""

    command: Literal["status"]


class PingRequest(_Request):
    """Liveness check; answered at once."""

    command: Literal["ping"]


#: ``history``: at most this many inspections per reply [count]
MAX_HISTORY = 1000


class ResultRequest(_Request):
    """The verdict of one inspection, by id (for PLCs that poll after ``wait: false``)."""

    command: Literal["result"]
    inspection_id: str = Field(
        min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
        description="The id ``inspect`` answered with",
    )


class HistoryRequest(_Request):
    """The newest inspections in the store, newest first."""

    command: Literal["history"]
    limit: int = Field(20, ge=1, le=MAX_HISTORY, description="How many, at most [count]")
    part_id: str | None = Field(
        None, max_length=MAX_ID_CHARS, pattern=ID_PATTERN, description="Only this part's"
    )
    verdict: Literal["PASS", "FAIL", "ERROR"] | None = Field(None, description="Only these")


class ReloadRequest(_Request):
    """Read the config file and calibration again: model (warmed up), rules, regions,
    pipeline, calibration; all or nothing. The reply comes when the new set is in force."""

    command: Literal["reload"]


Request = Annotated[
    InspectRequest | StatusRequest | PingRequest | ResultRequest | HistoryRequest
    | ReloadRequest,
    Field(discriminator="command"),
]
COMMANDS = ("inspect", "status", "ping", "result", "history", "reload")


# --- replies --------------------------------------------------------------------------------


class ErrorInfo(_Message):
    """Why a request was refused."""

    code: ErrorCode
    message: str


class Reply(_Message):
    """The one reply to every request."""

    schema_: int = Field(WIRE_SCHEMA_VERSION, alias="schema")
    ok: bool
    command: str | None = None
    request_id: str | None = None
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- publications ---------------------------------------------------------------------------


class DefectOut(_Message):
    """One defect, in full-frame pixels of its camera."""

    camera: str
    class_name: str
    class_index: int
    area_px: int
    area_mm2: float | None
    box: tuple[int, int, int, int] = Field(description="x, y, width, height [px]")
    centroid: tuple[float, float] = Field(description="x, y [px]")
    mean_score: float
    max_score: float
    outline: list[tuple[int, int]] = Field(default_factory=list)


class CameraOut(_Message):
    """One camera's part of an inspection."""

    camera: str
    frame_id: int | None = None
    width: int | None = None
    height: int | None = None
    source: str | None = Field(None, description="Replay: the image file served")
    defects: list[DefectOut] = Field(default_factory=list)
    part_score: float | None = Field(
        None, description="The image head's part score: its largest class logit over the "
        "frame (None without an image head, or on ERROR) [logit]")
    part_class: str | None = Field(
        None, description="The class of that largest image logit (the most likely defect)")
    part_box: tuple[int, int, int, int] | None = Field(
        None, description="x, y, width, height [px]: where the image head found a defect, "
        "when its rule failed this camera (32 px granular; pipeline.head_location)")


class ModelOut(_Message):
    """The model that judged the part."""

    model_id: str
    trained: bool
    operating_point: str | None = Field(
        None, description="What decided: the model's operating point id (op-…) or config-rules"
    )


class VerdictHeader(_Message):
    """Topic ``verdict``: the JSON header; PNG parts follow for each camera in ``maps``."""

    schema_: int = Field(WIRE_SCHEMA_VERSION, alias="schema")
    topic: Literal["verdict"] = "verdict"
    station: str
    inspection_id: str
    part_id: str | None
    verdict: Literal["PASS", "FAIL", "ERROR"]
    reasons: list[str]
    started_at: str = Field(description="ISO 8601, UTC")
    finished_at: str = Field(description="ISO 8601, UTC")
    duration_ms: float
    timings_ms: dict[str, float]
    model: ModelOut | None
    calibration_id: str | None
    cameras: list[CameraOut]
    maps: list[str] = Field(description="Camera names of the PNG parts, in order")
    map_downscale: int
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EventMessage(_Message):
    """Topic ``event``: something happened (camera_lost, camera_recovered, lights_fault...)."""

    schema_: int = Field(WIRE_SCHEMA_VERSION, alias="schema")
    topic: Literal["event"] = "event"
    station: str
    kind: str
    time: str
    data: dict[str, Any] = Field(default_factory=dict)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StatusMessage(_Message):
    """Topic ``status`` (and the result of the ``status`` command)."""

    schema_: int = Field(WIRE_SCHEMA_VERSION, alias="schema")
    topic: Literal["status"] = "status"
    station: str
    state: Literal["starting", "ready", "degraded", "stopping"]
    problems: list[str]
    uptime_s: float
    pid: int
    counts: dict[str, int]
    queue: dict[str, int]
    model: dict[str, Any]
    cameras: list[dict[str, Any]]
    lights: dict[str, Any]
    calibration: dict[str, Any]
    data_dir: str | None = Field(
        None, description="Where the store, defect maps and calibration are kept"
    )
    outbox: dict[str, Any] | None = Field(
        None,
        description="The plant's MQTT broker (with mqtt.enabled): connected, backlog (verdicts "
        "not yet acknowledged), oldest_age_s, last_error ... (docs/fleet.md)",
    )
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- the plant's MQTT broker (docs/fleet.md) ------------------------------------------------


class PlantVerdict(VerdictHeader):
    """MQTT ``<topic_root>/verdict`` (QoS 1): the verdict header, plus the outbox's sequence
    number and the defects counted per class; the defect maps only with mqtt.include_maps."""

    seq: int = Field(
        description="The station's outbox sequence number: 1, 2, 3 ... in the order the "
        "station publishes; a consumer drops duplicates by inspection_id"
    )
    defect_counts: dict[str, int] = Field(description="Defects per class, all cameras")
    maps_png: dict[str, str] | None = Field(
        None, description="Camera -> defect map PNG, base64 (mqtt.include_maps)"
    )


class PlantState(_Message):
    """MQTT ``<topic_root>/state`` (retained): ``online`` when the station connects (birth),
    ``offline`` when it stops, or from the broker as its last will when the connection dies."""

    schema_: int = Field(WIRE_SCHEMA_VERSION, alias="schema")
    topic: Literal["state"] = "state"
    station: str
    state: Literal["online", "offline"]
    reason: str = Field(description="connected, stopped, or connection lost (the last will)")
    time: str = Field(description="ISO 8601, UTC; when the station sent it")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of every message, by name."""
    from pydantic import TypeAdapter

    return {
        "request": TypeAdapter(Request).json_schema(by_alias=True),
        "reply": Reply.model_json_schema(by_alias=True),
        "verdict": VerdictHeader.model_json_schema(by_alias=True),
        "status": StatusMessage.model_json_schema(by_alias=True),
        "event": EventMessage.model_json_schema(by_alias=True),
        "mqtt-verdict": PlantVerdict.model_json_schema(by_alias=True),
        "mqtt-state": PlantState.model_json_schema(by_alias=True),
        "wire_schema_version": WIRE_SCHEMA_VERSION,
    }
