"""Luminaires: the serial controller driver, its simulator, and the backend factory.

The daemon uses::

    from drivers.lights import open_lights
    lights = open_lights(cfg.lights)   # not opened yet
    lights.open()                      # LightError if the controller is unreachable
    lights.on(); ...; lights.off()     # never raises; health().fault if not confirmed
    lights.health()                    # no I/O
    lights.close()                     # lights off, threads and port closed
"""

from __future__ import annotations

from typing import Protocol

from config.lights import LightsConfig
from drivers.lights.base import EventSink, LightsHealth, Luminaires
from drivers.lights.null import NullLuminaires
from drivers.lights.protocol import ChannelStatus
from drivers.lights.serial_controller import SerialLuminaires
from drivers.lights.simulated import SimulatedLuminaires
from drivers.lights.simulator import FAULTS, Fault, LightSimulator


class LightController(Luminaires, Protocol):
    """``Luminaires`` plus the commissioning extras every backend here offers."""

    def set_pulse_width(self, channel: int, width_us: int) -> None:
        """Strobe pulse width of one channel, 0 = continuous [µs]."""

    def read_status(self, channel: int) -> ChannelStatus:
        """One channel's intensity, on/off state and pulse width, read from the controller."""
        ...


def open_lights(cfg: LightsConfig, on_event: EventSink | None = None) -> LightController:
    """The backend ``cfg.backend`` names, not yet opened: call ``.open()`` next.

    ``on_event`` hears the faults found outside any request (the on-time guard's).

    'serial': the driver on ``cfg.port``; 'simulator': a ``LightSimulator`` started in-process
    on a pty by ``open()`` with the real serial driver connected to it (its ``simulator``
    attribute gives the tests fault injection); 'none': a no-op.
    """
    if cfg.backend == "serial":
        return SerialLuminaires(cfg, on_event=on_event)
    if cfg.backend == "simulator":
        return SimulatedLuminaires(cfg, on_event=on_event)
    return NullLuminaires()


__all__ = [
    "FAULTS",
    "ChannelStatus",
    "EventSink",
    "Fault",
    "LightController",
    "LightSimulator",
    "LightsHealth",
    "Luminaires",
    "NullLuminaires",
    "SerialLuminaires",
    "SimulatedLuminaires",
    "open_lights",
]
