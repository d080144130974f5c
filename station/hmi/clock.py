"""Local time and shifts: the station stores UTC, the line lives in local time.

``hmi.timezone`` names the zone (IANA); null means the machine's own, whose rules (daylight
saving included) the C library applies per timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from config.hmi import ShiftConfig


def iso_utc(when: datetime) -> str:
    """A time as the store writes it: ISO 8601, UTC, milliseconds (so strings compare)."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time from the store or the wire (UTC assumed when it names no zone)."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Clock:
    """Conversions between UTC and the line's local time."""

    def __init__(self, timezone: str | None = None) -> None:
        self.zone = ZoneInfo(timezone) if timezone else None
        self.name = timezone or f"local time, {datetime.now().astimezone().tzname()}"

    def now(self) -> datetime:
        """Now, as an aware UTC time."""
        return datetime.now(UTC)

    def local(self, when: datetime) -> datetime:
        """An aware time in the local zone."""
        return when.astimezone(self.zone) if self.zone else when.astimezone()

    def from_local(self, naive: datetime) -> datetime:
        """A wall-clock time of the line (naive) as an aware UTC time."""
        aware = naive.replace(tzinfo=self.zone) if self.zone else naive.astimezone()
        return aware.astimezone(UTC)

    def show(self, text: str | None, seconds: bool = True) -> str:
        """A stored ISO time as the line reads it: ``2026-11-22 11:00:01``."""
        if not text:
            return "-"
        try:
            when = self.local(parse_iso(text))
        except ValueError:
            return text
        return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class ShiftWindow:
    """One shift on one day: ``[start, end)`` as aware UTC times."""

    name: str
    day: date  # the local day the shift starts on
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """``early 2026-11-22``."""
        return f"{self.name} {self.day.isoformat()}"

    @property
    def key(self) -> str:
        """``2026-11-22.early``: how URLs name a shift."""
        return f"{self.day.isoformat()}.{self.name}"


def _window(clock: Clock, ordered: list[ShiftConfig], day: date, i: int) -> ShiftWindow:
    shift = ordered[i]
    nxt_day, nxt = (day, ordered[i + 1]) if i + 1 < len(ordered) else (
        day + timedelta(days=1), ordered[0])

    def at(d: date, s: ShiftConfig) -> datetime:
        return clock.from_local(datetime(d.year, d.month, d.day, s.minute // 60, s.minute % 60))

    return ShiftWindow(shift.name, day, at(day, shift), at(nxt_day, nxt))


def shift_at(shifts: list[ShiftConfig], clock: Clock, when: datetime) -> ShiftWindow:
    """The shift running at ``when`` (aware)."""
    ordered = sorted(shifts, key=lambda s: s.minute)
    local = clock.local(when)
    minute = local.hour * 60 + local.minute
    started = [i for i, s in enumerate(ordered) if s.minute <= minute]
    if started:
        return _window(clock, ordered, local.date(), started[-1])
    return _window(clock, ordered, local.date() - timedelta(days=1), len(ordered) - 1)


def shift_by_key(shifts: list[ShiftConfig], clock: Clock, key: str) -> ShiftWindow:
    """The shift a URL names (``2026-11-22.early``); ``ValueError`` saying what is wrong."""
    day_text, _, name = key.partition(".")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise ValueError(f"shift {key!r}: {day_text!r} is not a date YYYY-MM-DD") from None
    ordered = sorted(shifts, key=lambda s: s.minute)
    for i, s in enumerate(ordered):
        if s.name == name:
            return _window(clock, ordered, day, i)
    names = ", ".join(s.name for s in ordered)
    raise ValueError(f"shift {key!r}: no shift named {name!r}; the shifts are {names}")


def previous_shifts(
    shifts: list[ShiftConfig], clock: Clock, window: ShiftWindow, n: int
) -> list[ShiftWindow]:
    """``window`` and the ``n - 1`` shifts before it, newest first."""
    out = [window]
    while len(out) < n:
        out.append(shift_at(shifts, clock, out[-1].start - timedelta(seconds=1)))
    return out
