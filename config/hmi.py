"""Config of the operator's web screen (``station hmi``, optional extra ``hmi``)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from config._base import Section

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ShiftConfig(Section):
    """One shift: it starts at ``start`` and runs until the next shift starts."""

    name: str = Field("day", min_length=1, max_length=32, description="Shift name [-]")
    start: str = Field("06:00", description="Start, local time HH:MM (24 h) [time]")

    @field_validator("start")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"shift start {v!r} is not a time HH:MM (00:00 to 23:59), e.g. 06:00")
        return v

    @property
    def minute(self) -> int:
        """Minutes after local midnight."""
        return int(self.start[:2]) * 60 + int(self.start[3:])


def _default_shifts() -> list[ShiftConfig]:
    return [
        ShiftConfig(name="early", start="06:00"),
        ShiftConfig(name="late", start="14:00"),
        ShiftConfig(name="night", start="22:00"),
    ]


class HmiConfig(Section):
    """The operator's screen: where it listens, who may act, shifts, exports."""

    host: str = Field(
        "127.0.0.1", min_length=1,
        description="Address the HMI listens on; 127.0.0.1 serves this machine only, 0.0.0.0 "
        "every interface [host]",
    )
    port: int = Field(8080, ge=1, le=65535, description="HTTP port of the HMI [port]")
    token_file: str | None = Field(
        None,
        description="File holding the token that unlocks actions (trigger a test part, "
        "acknowledge, operator disagrees); $STATION_HMI_TOKEN overrides it; neither: actions "
        "are off [path]",
    )
    public_views: bool = Field(
        False,
        description="Read-only views need no token from other machines either (from this "
        "machine they never need one) [-]",
    )
    shifts: list[ShiftConfig] = Field(
        default_factory=_default_shifts, min_length=1, max_length=12,
        description="The shifts of a day, each until the next one starts [-]",
    )
    timezone: str | None = Field(
        None,
        description="IANA time zone of shift times and of times shown, e.g. Europe/Berlin; "
        "null: the machine's [-]",
    )
    state_dir: str | None = Field(
        None,
        description="The HMI's own records (acknowledgements, disagreements); null: "
        "<data dir>/hmi [path]",
    )
    export_dir: str | None = Field(
        None,
        description="Where 'operator disagrees' puts images and masks laid out for "
        "`station train --format folder`; null: <state dir>/disagreements [path]",
    )
    page_size: int = Field(50, ge=5, le=1000, description="History rows per page [count]")
    csv_max_rows: int = Field(
        100_000, ge=1, le=10_000_000, description="Rows in one CSV export at most [count]"
    )
    events_kept: int = Field(
        100, ge=1, le=10_000, description="Station events the Health view keeps [count]"
    )
    stale_status_s: float = Field(
        15.0, gt=0, le=3600,
        description="Health says the station is not reporting after this long without a status "
        "message [s]",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time zone {v!r} is unknown; give an IANA name such as Europe/Berlin or UTC, "
                "or null for the machine's"
            ) from None
        return v

    @model_validator(mode="after")
    def _distinct_shifts(self) -> HmiConfig:
        names = [s.name for s in self.shifts]
        starts = [s.start for s in self.shifts]
        for what, values in (("names", names), ("starts", starts)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"hmi.shifts: {what} must differ; {', '.join(dupes)} repeats")
        return self
