"""The 'none' backend: a station without luminaires."""

from __future__ import annotations

from drivers.lights.base import LightsHealth
from drivers.lights.protocol import ChannelStatus


class NullLuminaires:
    """Accepts every call and does nothing; ``health`` reports backend ``none``."""

    backend = "none"

    def __init__(self) -> None:
        self._lit: set[int] = set()
        self._intensity: dict[int, int] = {}

    def open(self) -> None:
        """Nothing to open."""

    def on(self) -> None:
        """Nothing to switch on."""

    def off(self) -> None:
        """Nothing to switch off."""
        self._lit.clear()

    def set_intensity(self, channel: int, value: int) -> None:
        """Remember the value, for ``read_status``."""
        self._intensity[channel] = value

    def set_channel(self, channel: int, lit: bool) -> None:
        """Remember the state, for ``read_status``."""
        if lit:
            self._lit.add(channel)
        else:
            self._lit.discard(channel)

    def set_pulse_width(self, channel: int, width_us: int) -> None:
        """Nothing to configure."""

    def read_status(self, channel: int) -> ChannelStatus:
        """What was last set on ``channel``."""
        return ChannelStatus(channel, self._intensity.get(channel, 0), channel in self._lit, 0)

    def health(self) -> LightsHealth:
        """Always connected, never lit."""
        return LightsHealth(backend="none", connected=True, lit=False, detail="no luminaires")

    def close(self) -> None:
        """Nothing to close."""
        self._lit.clear()
