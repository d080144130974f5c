"""The end-to-end bench: ``station run`` with two replay cameras serving BayerRG8 frames of the
given size, driven through the command socket as fast as the queue allows, then one part at a
time; parts/s, latency percentiles, and whether any part was lost, answered BUSY or published
out of order. ``station bench --e2e`` runs it (options in :mod:`station.bench`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The reference camera's frame (width, height).
FULL_SIZE = (5472, 3648)
Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    """Progress goes nowhere unless a caller listens."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation; the maximum for q = 100)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


@dataclass
class E2ESettings:
    """The daemon bench."""

    width: int = FULL_SIZE[0]
    height: int = FULL_SIZE[1]
    device: str = "auto"
    mode: str = "tiled"
    parts: int = 60
    duration_s: float = 20.0
    serial_parts: int = 20
    warmup_parts: int = 8
    ready_timeout_s: float = 300.0
    extra: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_e2e(s: E2ESettings, log: Say | None = None) -> dict[str, Any]:
    """Start ``station run`` with two replay cameras, drive it, stop it; the figures."""
    import zmq

    from station.messaging.client import NoAnswer, request

    say = log or _quiet
    command = f"tcp://127.0.0.1:{_free_port()}"
    publish = f"tcp://127.0.0.1:{_free_port()}"
    sets = [
        f"messaging.command={command}", f"messaging.publish={publish}",
        "messaging.status_interval_s=0.2", f"pipeline.device={s.device}",
        f"pipeline.mode={s.mode}", "logging.level=warning",
    ]
    for cam in (0, 1):
        sets += [f"cameras.{cam}.replay.pixel_format=BayerRG8",
                 f"cameras.{cam}.replay.width={s.width}",
                 f"cameras.{cam}.replay.height={s.height}",
                 f"cameras.{cam}.replay.cache_mb=1024"]
    sets += s.extra
    with tempfile.TemporaryDirectory(prefix="station-e2e-") as tmp:
        log_path = Path(tmp) / "station.log"
        args = [sys.executable, "-m", "station.cli", "run", "--config", "default",
                "--data-dir", str(Path(tmp) / "data")]
        for item in sets:
            args += ["--set", item]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("STATION_CONFIG", None)
        say(f"e2e: starting station run ({s.width} x {s.height} BayerRG8 x 2 cameras, "
            f"{s.device}, {s.mode})")
        t_start = time.monotonic()
        with log_path.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

        def tail() -> str:
            return log_path.read_text(errors="replace")[-4000:]

        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        try:
            deadline = time.monotonic() + s.ready_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"station run exited with {proc.returncode}:\n{tail()}")
                try:
                    request(command, {"command": "ping"}, timeout_s=0.5)
                    break
                except NoAnswer:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"station run not up within {s.ready_timeout_s} s:\n{tail()}"
                        ) from None
            ready_s = time.monotonic() - t_start
            for topic in (b"verdict", b"status"):
                sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(publish)
            _await(sub, "status", 30.0)  # the subscription is live (slow joiner)
            say(f"e2e: up after {ready_s:.1f} s; {s.warmup_parts} warm-up part(s) "
                "(decode and cache every sample) ...")
            _serial(command, sub, "W", s.warmup_parts, 600.0)
            say(f"e2e: throughput, up to {s.parts} part(s) or {s.duration_s:g} s ...")
            burst = _burst(command, sub, s.parts, s.duration_s)
            say(f"e2e: {burst['parts_per_s']:.2f} parts/s; latency one part at a time "
                f"({s.serial_parts} part(s)) ...")
            serial = _serial(command, sub, "S", s.serial_parts, 600.0)
            status = request(command, {"command": "status"}, timeout_s=5.0)
        finally:
            sub.close()
            code = None
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            else:
                code = proc.returncode
    return {
        "frame": {"width": s.width, "height": s.height, "pixel_format": "BayerRG8",
                  "cameras": 2},
        "device": s.device, "mode": s.mode, "ready_s": round(ready_s, 2),
        "throughput": burst, "serial": serial,
        "model": (status.get("result") or {}).get("model"),
        "exit_code": code,
    }


def _await(sub: Any, topic: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sub.poll(100):
            parts = sub.recv_multipart()
            if parts[0].decode() == topic:
                header: dict[str, Any] = json.loads(parts[1])
                return header
    raise RuntimeError(f"no {topic} message within {timeout_s} s")


def _verdict(sub: Any, timeout_ms: int) -> dict[str, Any] | None:
    if not sub.poll(timeout_ms):
        return None
    parts = sub.recv_multipart()
    if parts[0] != b"verdict":
        return None
    header: dict[str, Any] = json.loads(parts[1])
    return header


def _trigger(command: str, part_id: str) -> tuple[bool, str]:
    from station.messaging.client import request

    reply = request(command, {"command": "inspect", "part_id": part_id}, timeout_s=10.0)
    if reply.get("ok"):
        return True, ""
    return False, str((reply.get("error") or {}).get("code"))


def _summary(latencies: list[float], cycles: list[float], verdicts: list[str]) -> dict[str, Any]:
    return {
        "latency_ms": {"p50": round(percentile(latencies, 50), 1),
                       "p99": round(percentile(latencies, 99), 1),
                       "max": round(max(latencies), 1) if latencies else None},
        "cycle_ms": {"p50": round(percentile(cycles, 50), 1),
                     "p99": round(percentile(cycles, 99), 1)},
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "latencies_ms": [round(v, 1) for v in latencies],
    }


def _stage_medians(headers: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for h in headers for k in h.get("timings_ms", {})})
    return {k: round(percentile([h["timings_ms"][k] for h in headers
                                 if k in h.get("timings_ms", {})], 50), 1) for k in keys}


def _serial(command: str, sub: Any, prefix: str, n: int, timeout_s: float) -> dict[str, Any]:
    """``n`` parts one at a time: trigger, wait for its verdict."""
    latencies, cycles, verdicts, headers = [], [], [], []
    lost = 0
    for i in range(n):
        part = f"{prefix}{i:05d}"
        t0 = time.monotonic()
        ok, code = _trigger(command, part)
        while not ok:  # BUSY: earlier parts still queued
            if code != "BUSY":
                raise RuntimeError(f"inspect refused with {code}")
            time.sleep(0.005)
            ok, code = _trigger(command, part)
        deadline = t0 + timeout_s
        while True:
            h = _verdict(sub, 200)
            if h is not None and h.get("part_id") == part:
                latencies.append((time.monotonic() - t0) * 1000)
                cycles.append(float(h["duration_ms"]))
                verdicts.append(h["verdict"])
                headers.append(h)
                break
            if time.monotonic() > deadline:
                lost += 1
                break
    return {"parts": n, "lost": lost, **_summary(latencies, cycles, verdicts),
            "stages_ms": _stage_medians(headers)}


def _burst(command: str, sub: Any, n: int, duration_s: float) -> dict[str, Any]:
    """Trigger parts as fast as the queue takes them (a BUSY answer waits for the next
    verdict); every accepted part must get exactly one verdict, in trigger order."""
    sent: dict[str, float] = {}
    order: list[str] = []
    got: list[str] = []
    latencies, cycles, verdicts, headers = [], [], [], []
    busy = 0
    i = 0
    t0 = time.monotonic()
    stop_at = t0 + duration_s

    def take(h: dict[str, Any] | None) -> None:
        if h is None:
            return
        part = h.get("part_id")
        if part in sent and part not in got:
            got.append(part)
            latencies.append((time.monotonic() - sent[part]) * 1000)
            cycles.append(float(h["duration_ms"]))
            verdicts.append(h["verdict"])
            headers.append(h)

    while i < n and time.monotonic() < stop_at:
        part = f"B{i:05d}"
        t = time.monotonic()
        ok, code = _trigger(command, part)
        if ok:
            sent[part] = t
            order.append(part)
            i += 1
            take(_verdict(sub, 0))
        elif code == "BUSY":
            busy += 1
            take(_verdict(sub, 50))
        else:
            raise RuntimeError(f"inspect refused with {code}")
    deadline = time.monotonic() + 120.0
    while len(got) < len(order) and time.monotonic() < deadline:
        take(_verdict(sub, 200))
    elapsed = time.monotonic() - t0
    lost = [p for p in order if p not in got]
    reordered = sum(1 for a, b in zip(got, [p for p in order if p in got], strict=True)
                    if a != b)
    return {
        "parts": len(order), "seconds": round(elapsed, 3),
        "parts_per_s": round(len(got) / elapsed, 3) if elapsed > 0 else 0.0,
        "busy_answers": busy, "lost": len(lost), "reordered": reordered,
        **_summary(latencies, cycles, verdicts), "stages_ms": _stage_medians(headers),
    }


# -- output ----------------------------------------------------------------------------------




def format_e2e(e: dict[str, Any]) -> str:
    """The end-to-end figures."""
    b, s = e["throughput"], e["serial"]
    return "\n".join([
        f"e2e        station run, 2 replay cameras {e['frame']['width']} x "
        f"{e['frame']['height']} BayerRG8, {e['device']}, mode {e['mode']}, "
        f"ready after {e['ready_s']} s",
        f"throughput {b['parts_per_s']:.2f} parts/s over {b['parts']} part(s) "
        f"({b['seconds']} s); lost {b['lost']}, reordered {b['reordered']}, "
        f"BUSY answers {b['busy_answers']}",
        f"           latency p50 {b['latency_ms']['p50']} ms, p99 {b['latency_ms']['p99']} ms "
        f"(queueing included); cycle p50 {b['cycle_ms']['p50']} ms",
        f"one by one latency p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms; "
        f"cycle p50 {s['cycle_ms']['p50']} ms, p99 {s['cycle_ms']['p99']} ms; lost {s['lost']}",
        "stages     " + ", ".join(f"{k} {v}" for k, v in s["stages_ms"].items()),
        f"exit code  {e['exit_code']}",
    ])
