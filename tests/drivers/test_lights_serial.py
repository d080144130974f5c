"""The serial driver against the simulator over a real pty: no mocks, real pyserial."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.errors import LightError, LightPortError, LightProtocolError, LightRefused, LightTimeout
from config.lights import LightChannel, LightsConfig
from drivers.lights import (
    LightSimulator,
    NullLuminaires,
    SerialLuminaires,
    SimulatedLuminaires,
    open_lights,
)
from drivers.lights import protocol as p

#: Timeout for exchanges that must succeed: generous, never waited for on the happy path.
OK_TIMEOUT_S = 1.0
#: Timeout for exchanges a fault makes time out: short, it is waited for.
FAULT_TIMEOUT_S = 0.05


def make_cfg(port: str | Path, **overrides: Any) -> LightsConfig:
    """A serial LightsConfig with test-sized timings."""
    values: dict[str, Any] = {
        "backend": "serial", "port": str(port), "reply_timeout_s": OK_TIMEOUT_S, "retries": 1,
        "reopen_backoff_s": 0.02, "reopen_backoff_max_s": 0.1, "max_on_s": 30.0,
        "settle_ms": 0.0,
        "channels": [
            LightChannel(channel=1, name="top", intensity=180, pulse_us=0),
            LightChannel(channel=2, name="side", intensity=120, pulse_us=250),
        ],
    }
    values.update(overrides)
    return LightsConfig(**values)


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll ``condition`` every 5 ms until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[LightSimulator]:
    """A 4-channel simulator behind the link tmp_path/lights."""
    s = LightSimulator(channels=4, link=tmp_path / "lights")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def driver_factory(sim: LightSimulator) -> Iterator[Callable[..., SerialLuminaires]]:
    """Open drivers on the simulator; every one is closed at teardown."""
    made: list[SerialLuminaires] = []

    def make(**overrides: Any) -> SerialLuminaires:
        assert sim.link is not None
        drv = SerialLuminaires(make_cfg(sim.link, **overrides))
        made.append(drv)
        drv.open()
        return drv

    yield make
    for drv in made:
        drv.close()


@pytest.fixture
def lights(driver_factory: Callable[..., SerialLuminaires]) -> SerialLuminaires:
    """An open driver with default test timings."""
    return driver_factory()


def test_open_identifies_switches_off_and_sets_pulses(
    sim: LightSimulator, lights: SerialLuminaires
) -> None:
    """open(): all off, identification read, configured pulse widths applied."""
    assert lights.ident == "LIGHTSIM-4 1.0"
    assert [str(r.command) for r in list(sim.requests)[:2]] == ["L", "V"]
    assert sim.state(2).pulse_us == 250
    h = lights.health()
    assert (h.backend, h.connected, h.lit, h.errors, h.reopens) == ("serial", True, False, 0, 0)
    assert "LIGHTSIM-4 1.0" in h.detail


def test_on_off_and_single_channel_control(sim: LightSimulator, lights: SerialLuminaires) -> None:
    """on() lights every configured channel at its intensity; off() darkens all."""
    lights.on()
    assert sim.lit_channels() == {1, 2}
    assert (sim.state(1).intensity, sim.state(2).intensity) == (180, 120)
    assert lights.health().lit and lights.health().channels == {1: 180, 2: 120}
    lights.off()
    assert sim.lit_channels() == frozenset() and not lights.health().lit
    lights.set_intensity(3, 42)
    lights.set_channel(3, True)
    assert lights.read_status(3).lit and sim.state(3).intensity == 42
    lights.set_channel(3, False)
    assert lights.read_status(3) == sim.state(3) and not sim.state(3).lit


def test_intensities_are_sent_only_when_needed(
    sim: LightSimulator, lights: SerialLuminaires
) -> None:
    """A second on() sends only the two L commands: the controller keeps its intensities."""
    lights.on()
    before = sim.request_count
    lights.off()
    lights.on()
    assert sim.request_count - before == 3  # L0 broadcast, L1 ch1, L1 ch2


def test_ng_raises_refused_with_code(sim: LightSimulator, lights: SerialLuminaires) -> None:
    """An NG is not retried; LightRefused carries the number, the port and the channel."""
    sim.set_fault("ng", code=6)
    before = sim.request_count
    with pytest.raises(LightRefused) as info:
        lights.set_intensity(1, 99)
    assert info.value.code == 6
    assert sim.request_count - before == 1
    message = str(info.value)
    assert str(sim.link) in message and "channel 01" in message and "intensity 99" in message
    assert "NG 06" in message and "luminaire fault" in message


def test_line_noise_ng_is_retried(sim: LightSimulator, lights: SerialLuminaires) -> None:
    """NG 01 (checksum error at the controller) is retried and then succeeds."""
    sim.set_fault("ng", code=1, count=1)
    lights.set_intensity(1, 99)
    assert sim.state(1).intensity == 99
    assert lights.health().errors == 1


def test_no_reply_times_out_after_bounded_retries(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """no_reply: retries + 1 attempts of reply_timeout_s each, then LightTimeout."""
    lights = driver_factory(reply_timeout_s=FAULT_TIMEOUT_S, retries=2)
    sim.set_fault("no_reply")
    started = time.monotonic()
    with pytest.raises(LightTimeout, match=r"channel 02, status: no reply within 0.05 s .*3 att"):
        lights.read_status(2)
    elapsed = time.monotonic() - started
    assert 3 * FAULT_TIMEOUT_S <= elapsed < 2.0
    assert lights.health().errors == 3 and lights.health().connected


@pytest.mark.parametrize(("kind", "fragment"), [("garbled", "start with '@'"),
                                                 ("bad_checksum", "checksum")])
def test_corrupt_replies_raise_protocol_error(
    sim: LightSimulator, lights: SerialLuminaires, kind: str, fragment: str
) -> None:
    """garbled and bad_checksum replies: retried, then LightProtocolError naming the defect."""
    sim.set_fault(kind)
    with pytest.raises(LightProtocolError, match=fragment):
        lights.set_channel(1, True)


def test_transient_corruption_is_absorbed_by_a_retry(
    sim: LightSimulator, lights: SerialLuminaires
) -> None:
    """One corrupt reply, then a good one: the call succeeds (commands are idempotent)."""
    sim.set_fault("garbled", count=1)
    lights.on()
    assert sim.lit_channels() == {1, 2}


def test_failed_on_switches_everything_off(sim: LightSimulator, lights: SerialLuminaires) -> None:
    """on() failing half way (channel 2 refused) leaves no channel lit."""
    sim.set_fault("ng", code=6, after=2, count=1)  # F1, L1 pass; F2 refused; L0 passes
    with pytest.raises(LightRefused, match="channel 02"):
        lights.on()
    assert sim.lit_channels() == frozenset()
    assert not lights.health().lit


def test_late_reply_is_not_taken_for_the_next_one(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """Bytes waiting before a request (a late reply, noise) are flushed, not read as its reply."""
    lights = driver_factory(retries=0)
    sim.inject(p.encode_ok(1) + b"\x00noise")  # e.g. the OK of a request that timed out
    assert lights.read_status(2) == sim.state(2)
    assert lights.health().errors == 0


def test_reply_for_another_channel_is_refused(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """A well-formed reply carrying the wrong channel is a protocol error, not success."""
    lights = driver_factory(retries=0)
    sim.set_fault("no_reply", count=1)
    seen = sim.request_count

    def answer_wrongly() -> None:
        assert wait_for(lambda: sim.request_count > seen)  # the request is in: reply to it
        sim.inject(p.encode_ok(3))

    helper = threading.Thread(target=answer_wrongly)
    helper.start()
    with pytest.raises(LightProtocolError, match="reply is for channel 03, expected 01"):
        lights.set_channel(1, False)
    helper.join(5.0)


def test_vanished_port_is_reopened_with_backoff(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """Port gone: LightPortError, no reopen before the backoff; port back: recovery, all off."""
    lights = driver_factory(reopen_backoff_s=0.3, reopen_backoff_max_s=0.3)
    lights.on()
    sim.set_fault("port_closed")
    with pytest.raises(LightPortError, match=str(sim.link)):
        lights.on()
    h = lights.health()
    assert not h.connected and "Input/output error" in h.detail and h.lit  # may still be lit
    with pytest.raises(LightPortError, match="next reopen attempt in"):
        lights.set_intensity(1, 5)
    sim.set_fault("none")
    assert wait_for(lambda: _try_on(lights), timeout=3.0)
    assert sim.lit_channels() == {1, 2}
    assert (sim.state(1).intensity, sim.state(2).intensity) == (180, 120)  # re-sent after reopen
    h = lights.health()
    assert h.connected and h.reopens == 1 and h.errors == 1


def _try_on(lights: SerialLuminaires) -> bool:
    try:
        lights.on()
    except LightPortError:
        return False
    return True


def test_reopen_greets_the_controller_again(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """After a reopen: all off, identify and every pulse width again before the command."""
    lights = driver_factory()
    sim.set_fault("port_closed")
    lights.off()
    sim.set_fault("none")
    sim.requests.clear()
    assert wait_for(lambda: _try_on(lights), timeout=3.0)
    sent = [(r.channel, str(r.command), r.data) for r in sim.requests]
    assert sent[:4] == [(0, "L", "0"), (0, "V", ""), (1, "P", "00000"), (2, "P", "00250")]


def test_refused_greeting_closes_the_port_and_retries_later(tmp_path: Path) -> None:
    """A controller in local mode (NG 07) at open: LightRefused, port closed; once it
    accepts remote commands again, the next request connects."""
    sim = LightSimulator(link=tmp_path / "lights")
    sim.start()
    sim.set_fault("ng", code=7)
    drv = SerialLuminaires(make_cfg(tmp_path / "lights"))
    try:
        with pytest.raises(LightRefused, match=r"NG 07 \(controller in local") as info:
            drv.open()
        assert info.value.code == 7 and not drv.health().connected
        sim.set_fault("none")
        assert wait_for(lambda: _try_on(drv), timeout=3.0)
        assert sim.lit_channels() == {1, 2} and drv.health().reopens == 0
    finally:
        drv.close()
        sim.stop()


def test_backoff_doubles_up_to_its_maximum(tmp_path: Path) -> None:
    """With a fake clock: reopen attempts at +0.02, +0.04, +0.08, +0.1, +0.1 s."""
    now = [100.0]
    drv = SerialLuminaires(make_cfg(tmp_path / "missing"), clock=lambda: now[0])
    try:
        with pytest.raises(LightPortError, match=r"cannot open .*missing at 9600 bit/s"):
            drv.open()
        waits = []
        for _ in range(5):
            with pytest.raises(LightPortError, match="next reopen attempt in"):
                drv.set_channel(1, False)
            wait = drv._next_reopen - now[0]
            waits.append(round(wait, 3))
            now[0] += wait
            with pytest.raises(LightPortError, match="cannot open"):
                drv.set_channel(1, False)
        assert waits == [0.02, 0.04, 0.08, 0.1, 0.1]
    finally:
        drv.close()


def test_open_on_a_missing_port_recovers_later(tmp_path: Path) -> None:
    """open() fails without a controller, yet the driver works once one appears."""
    link = tmp_path / "lights"
    drv = SerialLuminaires(make_cfg(link))
    sim = LightSimulator(link=link)
    try:
        with pytest.raises(LightPortError, match="lights"):
            drv.open()
        sim.start()
        assert wait_for(lambda: _try_on(drv), timeout=3.0)
        assert sim.lit_channels() == {1, 2}
    finally:
        drv.close()
        sim.stop()
    assert sim.lit_channels() == frozenset()


def test_max_on_time_guard(sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
                           ) -> None:
    """Lights left on are forced off after max_on_s, without any call from the owner."""
    lights = driver_factory(max_on_s=0.1)
    lights.on()
    started = time.monotonic()
    assert wait_for(lambda: not sim.lit_channels() and not lights.health().lit, timeout=2.0)
    assert time.monotonic() - started >= 0.09
    assert lights.guard_trips == 1


def test_guard_keeps_trying_while_off_fails(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """The guard's first off attempts are refused; it retries until the lights are off."""
    lights = driver_factory(max_on_s=0.05, retries=0)
    sim.set_fault("ng", code=7, after=4, count=2)  # F1 L1 F2 L2 pass, two offs refused
    lights.on()
    assert wait_for(lambda: not sim.lit_channels(), timeout=2.0)
    assert lights.guard_trips >= 3


def test_unconfirmed_off_is_a_fault_the_guard_clears(
    sim: LightSimulator, request: pytest.FixtureRequest
) -> None:
    """An all-off the controller swallows: health().fault says so at once, the guard retries
    on the backoff (not after max_on_s), publishes lights_fault once, and lights_recovered
    with the fault cleared once the controller confirms."""
    events: list[tuple[str, dict[str, object]]] = []
    assert sim.link is not None
    lights = SerialLuminaires(
        make_cfg(sim.link, max_on_s=30.0, reply_timeout_s=FAULT_TIMEOUT_S, retries=0),
        on_event=lambda kind, data: events.append((kind, data)),
    )
    lights.open()
    request.addfinalizer(lights.close)
    lights.on()
    sim.set_fault("no_reply")  # the off and every retry are swallowed, the lights stay lit
    lights.off()
    health = lights.health()
    assert health.lit and "all-off not confirmed" in health.fault and "01, 02" in health.fault
    assert sim.lit_channels() == frozenset({1, 2})
    assert wait_for(lambda: any(k == "lights_fault" for k, _ in events), timeout=5.0)
    assert lights.guard_trips == 0  # retried for the fault, long before max_on_s
    sim.set_fault("none")
    assert wait_for(lambda: not sim.lit_channels() and not lights.health().fault, timeout=5.0)
    assert wait_for(lambda: any(k == "lights_recovered" for k, _ in events), timeout=2.0)
    kinds = [k for k, _ in events]
    assert kinds.count("lights_fault") == 1, kinds
    fault = dict(events)["lights_fault"]
    assert fault["during"] == "guard" and "all-off not confirmed" in str(fault["reason"])


def test_failed_off_with_nothing_lit_is_no_fault(
    sim: LightSimulator, driver_factory: Callable[..., SerialLuminaires]
) -> None:
    """An all-off that fails while no channel was lit leaves no fault: nothing can be on."""
    lights = driver_factory(reply_timeout_s=FAULT_TIMEOUT_S, retries=0)
    sim.set_fault("no_reply")
    lights.off()
    assert lights.health().fault == "" and not lights.health().lit


def test_close_forces_off_and_is_final(sim: LightSimulator, tmp_path: Path) -> None:
    """close(): lights off, port released; twice is fine; commands after it fail clearly."""
    assert sim.link is not None
    drv = SerialLuminaires(make_cfg(sim.link))
    drv.open()
    drv.on()
    drv.close()
    drv.close()
    assert sim.lit_channels() == frozenset()
    drv.off()  # never raises
    with pytest.raises(LightPortError, match="before open"):
        drv.on()


def test_second_driver_on_the_same_port_is_refused(
    sim: LightSimulator, lights: SerialLuminaires
) -> None:
    """The port is opened exclusively: a second process/driver gets LightPortError."""
    assert sim.link is not None
    other = SerialLuminaires(make_cfg(sim.link))
    try:
        with pytest.raises(LightPortError, match="exclusively lock"):
            other.open()
    finally:
        other.close()


def test_bad_arguments_raise_light_error(lights: SerialLuminaires) -> None:
    """Channel or value out of range is refused before anything is sent."""
    with pytest.raises(LightError, match=r"channel 01 intensity 300 is outside 0\.\.255"):
        lights.set_intensity(1, 300)
    with pytest.raises(LightError, match=r"channel 0 is outside 1\.\.99"):
        lights.set_channel(0, True)
    with pytest.raises(LightError, match="pulse width"):
        lights.set_pulse_width(1, 100_000)


def test_open_lights_backends(tmp_path: Path) -> None:
    """'serial' -> driver on cfg.port; 'none' -> a no-op reporting backend none."""
    serial_drv = open_lights(make_cfg(tmp_path / "x"))
    assert isinstance(serial_drv, SerialLuminaires) and serial_drv.port == str(tmp_path / "x")
    none = open_lights(LightsConfig(backend="none"))
    assert isinstance(none, NullLuminaires)
    none.open()
    none.on()
    none.set_intensity(1, 5)
    none.set_channel(1, True)
    assert none.read_status(1).intensity == 5
    none.off()
    none.close()
    assert none.health().backend == "none" and none.health().connected


def test_simulator_backend_end_to_end() -> None:
    """'simulator': real driver on an in-process simulator; kill and restore it mid-run."""
    cfg = make_cfg("unused", backend="simulator", simulator_channels=2)
    lights = open_lights(cfg)
    assert isinstance(lights, SimulatedLuminaires)
    try:
        lights.open()
        lights.on()
        assert lights.simulator.lit_channels() == {1, 2}
        assert lights.health().backend == "simulator"
        lights.simulator.set_fault("port_closed")
        with pytest.raises(LightPortError):
            lights.on()
        lights.simulator.set_fault("none")
        assert wait_for(lambda: _try_on(lights), timeout=3.0)
        assert lights.health().reopens == 1
    finally:
        lights.close()
    assert not lights.simulator.running


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_leaked_threads_or_fds() -> None:
    """20 open/on/off/fault/close cycles leave threads and file descriptors as they were."""
    threads, fds = threading.active_count(), _fds()
    for i in range(20):
        lights = open_lights(make_cfg("unused", backend="simulator", max_on_s=0.05))
        lights.open()
        lights.on()
        if i % 5 == 0:
            assert isinstance(lights, SimulatedLuminaires)
            lights.simulator.set_fault("port_closed")
            lights.off()
            lights.simulator.set_fault("none")
        lights.close()
    assert threading.active_count() == threads
    assert _fds() == fds


@pytest.mark.soak
def test_soak_5000_cycles_with_faults() -> None:
    """5,000 on/off cycles with a fault every 500: descriptors, threads and recovery hold."""
    lights = open_lights(make_cfg("unused", backend="simulator", reply_timeout_s=0.05))
    assert isinstance(lights, SimulatedLuminaires)
    lights.open()
    threads, fds = threading.active_count(), _fds()
    failures = 0
    kinds = ["no_reply", "garbled", "ng", "bad_checksum", "port_closed"]
    try:
        for i in range(5000):
            if i % 500 == 250:
                lights.simulator.set_fault(kinds[(i // 500) % len(kinds)])
            elif i % 500 == 260:
                lights.simulator.set_fault("none")
            try:
                lights.on()
            except LightError:
                failures += 1
                time.sleep(0.03)  # past the reopen backoff
            lights.off()
        assert not lights.simulator.lit_channels()
        assert threading.active_count() == threads and _fds() == fds
        assert 0 < failures < 200
    finally:
        lights.close()
