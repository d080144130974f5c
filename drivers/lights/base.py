"""The luminaire interface every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: Where a driver reports what happens outside any request: ``(kind, data)``, e.g.
#: ``("lights_fault", {"reason": ..., "during": "guard"})``. Called from driver threads; must
#: not block.
EventSink = Callable[[str, dict[str, object]], None]


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
    #: Why the lights may be on against orders (an all-off the controller did not confirm);
    #: empty once every channel is confirmed off. The on-time guard keeps retrying meanwhile.
    fault: str = ""


class Luminaires(Protocol):
    """The booth's LED luminaires behind one controller.

    ``on`` switches every configured channel on at its recipe intensity, ``off`` switches
    all of them off. Errors are ``config.errors.LightError`` subclasses. ``off`` is safe to
    call at any time and never raises (it logs instead); whether the controller confirmed it
    is in ``health().fault`` (empty: confirmed off), which the inspection cycle checks.
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
