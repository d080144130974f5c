"""The luminaire interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class LightsHealth:
    """What ``status`` reports about the luminaires."""

    backend: str
    connected: bool
    lit: bool
    detail: str = ""
    channels: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    reopens: int = 0


class Luminaires(Protocol):
    """The booth's LED luminaires behind one controller.

    ``on`` switches every configured channel on at its recipe intensity, ``off`` switches
    all of them off. Errors are ``config.errors.LightError`` subclasses. ``off`` is safe to
    call at any time and never raises for a port that is already gone (it logs instead).
    """

    def open(self) -> None:
        """Open the port and check the controller answers."""

    def on(self) -> None:
        """All configured channels on at their intensities."""

    def off(self) -> None:
        """All channels off."""

    def set_intensity(self, channel: int, value: int) -> None:
        """Set one channel's intensity (0..255)."""

    def set_channel(self, channel: int, lit: bool) -> None:
        """Switch one channel on or off."""

    def health(self) -> LightsHealth:
        """Connection state and counters."""
        ...

    def close(self) -> None:
        """Lights off, port closed; safe to call twice."""
