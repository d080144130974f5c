"""The 'simulator' backend: the simulator in-process, the real serial driver talking to it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from config.lights import LightsConfig
from drivers.lights.base import EventSink
from drivers.lights.serial_controller import SerialLuminaires
from drivers.lights.simulator import LightSimulator


class SimulatedLuminaires(SerialLuminaires):
    """``SerialLuminaires`` on a ``LightSimulator`` started by ``open`` and stopped by ``close``.

    The simulator serves on a pty behind a stable link in a private temporary directory, so
    ``simulator.set_fault("port_closed")`` and ``set_fault("none")`` exercise the driver's
    reopen path exactly as a pulled and replugged USB adapter would.
    """

    def __init__(self, cfg: LightsConfig, on_event: EventSink | None = None) -> None:
        super().__init__(cfg, port="(simulator not started)", backend="simulator",
                         on_event=on_event)
        self.simulator = LightSimulator(channels=cfg.simulator_channels)
        self._tmpdir: Path | None = None

    def open(self) -> None:
        """Start the simulator (once), then open the driver on it."""
        if not self.simulator.running:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="station-lightsim-"))
            self.simulator.link = self._tmpdir / "lights"
            self.port = self.simulator.start()
        super().open()

    def close(self) -> None:
        """Driver closed (lights off), then the simulator stopped; safe to call twice."""
        super().close()
        self.simulator.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
