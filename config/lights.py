"""Config of the luminaire controller (serial line, or its simulator on a pseudo-terminal)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from config._base import Section


class LightChannel(Section):
    """One luminaire on one controller channel."""

    channel: int = Field(1, ge=1, le=99, description="Controller channel number [-]")
    name: str = Field("light", min_length=1, max_length=32, description="Name used in logs [-]")
    intensity: int = Field(
        128, ge=0, le=255, description="Intensity during an inspection [0..255 steps]"
    )
    pulse_us: int = Field(
        default=0, ge=0, le=99_999,
        description="Strobe pulse width sent to the controller at open; 0 = continuous light "
        "[µs]",
    )


class LightsConfig(Section):
    """The luminaire controller."""

    backend: Literal["simulator", "serial", "none"] = Field(
        "simulator",
        description="'serial': a controller on `port`; 'simulator': the built-in controller "
        "simulator started on a pseudo-terminal; 'none': no lights [-]",
    )
    port: str = Field(
        "/dev/ttyUSB0",
        description="Serial device of the controller (prefer a stable /dev/serial/by-id/ link); "
        "unused by the 'simulator' and 'none' backends [path]",
    )
    baudrate: int = Field(
        9600, ge=1200, le=921600, description="Serial line speed [bit/s]"
    )
    reply_timeout_s: float = Field(
        0.5, gt=0, le=10, description="Time to wait for each reply [s]"
    )
    retries: int = Field(2, ge=0, le=10, description="Retries of a command after a fault [count]")
    reopen_backoff_s: float = Field(
        0.5, gt=0, le=60, description="First delay before reopening a vanished port [s]"
    )
    reopen_backoff_max_s: float = Field(
        10.0, gt=0, le=600, description="Longest delay between reopen attempts [s]"
    )
    max_on_s: float = Field(
        10.0, gt=0, le=3600,
        description="Guard: lights are forced off after being on this long [s]",
    )
    settle_ms: float = Field(
        20.0, ge=0, le=2000, description="Wait after switching on before triggering [ms]"
    )
    simulator_channels: int = Field(
        default=4, ge=1, le=99,
        description="Channels fitted in the built-in simulator (backend 'simulator') [count]",
    )
    channels: list[LightChannel] = Field(
        default_factory=lambda: [
            LightChannel(channel=1, name="top", intensity=180),
            LightChannel(channel=2, name="side", intensity=120),
        ],
        min_length=0, max_length=99,
        description="Luminaires and their inspection intensities [-]",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LightsConfig:
        """Channel numbers unique; backoff limits ordered; simulated channels suffice."""
        numbers = [c.channel for c in self.channels]
        dupes = sorted({n for n in numbers if numbers.count(n) > 1})
        if dupes:
            raise ValueError(
                f"lights.channels: channel number(s) {dupes} appear more than once; "
                "each luminaire needs its own controller channel"
            )
        if self.reopen_backoff_max_s < self.reopen_backoff_s:
            raise ValueError(
                f"lights.reopen_backoff_max_s ({self.reopen_backoff_max_s} s) must be >= "
                f"lights.reopen_backoff_s ({self.reopen_backoff_s} s)"
            )
        if self.backend == "simulator" and numbers and max(numbers) > self.simulator_channels:
            raise ValueError(
                f"lights.channels uses channel {max(numbers)} but the simulator has "
                f"lights.simulator_channels={self.simulator_channels}; raise it"
            )
        return self
