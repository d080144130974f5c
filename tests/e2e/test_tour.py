"""End to end: the newcomer's tour of issue 9, as a user runs it, each rough edge checked.

`station ... | head -1`, `trigger` without a station, `watch --timeout`, `history --config`,
where the data lives, a second `run` on taken ports, a world-writable data dir, and how fast
the daemon exits after "stopped".
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from station.messaging.client import request
from tests.e2e.conftest import RunningStation, free_port

Factory = Callable[..., RunningStation]
STATION = [sys.executable, "-m", "station.cli"]


def with_closed_stdout(args: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``station ARGS`` with stdout a pipe nobody reads any more (``| head -0``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*STATION, *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=timeout_s)
    finally:
        os.close(write_end)


def test_piping_into_head_exits_quietly_with_the_commands_code(
    run_station: Factory,
) -> None:
    """`trigger | head`, `status | head`, `config show | head`: no BrokenPipeError traceback;
    trigger still exits by the verdict (0 PASS, 1 FAIL), the others 0."""
    station = run_station("default")
    res = with_closed_stdout(["trigger", "--endpoint", station.command, "--part-id", "PIPE"])
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    db = sqlite3.connect(station.data_dir / "inspections.sqlite3")
    try:
        verdict = db.execute("SELECT verdict FROM inspections WHERE part_id = 'PIPE'"
                             ).fetchone()[0]
    finally:
        db.close()
    assert res.returncode == {"PASS": 0, "FAIL": 1}[verdict]
    for args in (["status", "--endpoint", station.command], ["config", "show"]):
        res = with_closed_stdout(args)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (args, res.stderr)
    assert station.stop()[0] == 0


def test_trigger_without_a_station_fails_fast() -> None:
    """No daemon: `station trigger` (default --timeout 60 s) says so within seconds, exit 3."""
    started = time.monotonic()
    res = subprocess.run([*STATION, "trigger", "--endpoint", f"tcp://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert res.returncode == 3
    assert "no station answers" in res.stderr and "station run" in res.stderr
    assert took < 20, f"took {took:.1f} s; the verdict timeout is 60 s"


def test_watch_timeout_exit_codes(run_station: Factory) -> None:
    """`watch --timeout` exits 3 with a message when nothing is published there, 0 when the
    station was heard (its status counts), 3 when --count verdicts did not come."""
    res = subprocess.run([*STATION, "watch", "--endpoint", f"tcp://127.0.0.1:{free_port()}",
                          "--timeout", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "nothing published" in res.stderr, res.stderr
    station = run_station("default")
    res = subprocess.run([*STATION, "watch", "--endpoint", station.publish, "--timeout", "1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([*STATION, "watch", "--endpoint", station.publish, "--timeout", "1",
                          "--count", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "0 of 1 verdict" in res.stderr, res.stderr
    assert station.stop()[0] == 0


def test_data_dir_is_shown_and_history_follows_the_config(
    run_station: Factory, tmp_path: Path
) -> None:
    """The start-up log, `status` and `history` say where the data is; `history --config`
    reads the store the config's storage.data_dir names, as `run --config` writes it."""
    data = tmp_path / "booth-data"
    cfg = tmp_path / "booth.yaml"
    samples = Path(__file__).resolve().parents[2] / "config" / "samples" / "*.jpg"
    cfg.write_text(
        f"storage: {{data_dir: {data}}}\n"
        f"cameras:\n  - {{name: cam0, replay: {{images: ['{samples}']}}}}\n"
        f"  - {{name: cam1, replay: {{images: ['{samples}']}}}}\n")
    station = run_station(str(cfg), ["--data-dir", ""])  # "": the config's storage.data_dir
    assert "data directory" in station.log() and str(data) in station.log()
    request(station.command, {"command": "inspect", "part_id": "CFG-1", "wait": True}, 60)
    status = request(station.command, {"command": "status"}, 5)["result"]
    assert status["data_dir"] == str(data)
    res = subprocess.run([*STATION, "status", "--endpoint", station.command],
                         capture_output=True, text=True, timeout=60)
    assert f"data    {data}" in res.stdout
    res = subprocess.run([*STATION, "history", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "STATION_DATA_DIR": ""})
    assert res.returncode == 0 and "CFG-1" in res.stdout, res.stdout + res.stderr
    assert str(data / "inspections.sqlite3") in res.stdout.splitlines()[0]
    assert station.stop()[0] == 0


def test_second_run_and_bad_data_dir_fail_before_the_model_loads(
    run_station: Factory, tmp_path: Path
) -> None:
    """A second `run` on the same ports, and a `run` on a world-writable data dir, fail with
    the key or the chmod to fix it, without loading the model first."""
    station = run_station("default")
    res = subprocess.run([*STATION, "run", "--data-dir", str(tmp_path / "d2"),
                          "--set", f"messaging.command={station.command}",
                          "--set", f"messaging.publish=tcp://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "messaging.command" in res.stderr
    assert "model loaded" not in res.stderr and "Traceback" not in res.stderr
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    res = subprocess.run([*STATION, "run", "--data-dir", str(open_dir),
                          "--set", f"messaging.command=tcp://127.0.0.1:{free_port()}",
                          "--set", f"messaging.publish=tcp://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and f"chmod 750 {open_dir}" in res.stderr, res.stderr
    assert "model loaded" not in res.stderr
    assert station.stop()[0] == 0


def test_exit_follows_stopped_at_once(tmp_path: Path) -> None:
    """SIGTERM: exit 0, and the process is gone right after it logs "stopped" (the teardown
    of torch and OpenCV used to add 1.5-5 s)."""
    port_c, port_p = free_port(), free_port()
    proc = subprocess.Popen(
        [*STATION, "run", "--data-dir", str(tmp_path / "data"),
         "--set", f"messaging.command=tcp://127.0.0.1:{port_c}",
         "--set", f"messaging.publish=tcp://127.0.0.1:{port_p}", "--set", "logging.format=json"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert proc.stderr is not None
    stopped_at: list[float] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event == "station ready":
                ready.set()
            if event == "stopped":
                stopped_at.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), "the station did not start"
        proc.terminate()
        code = proc.wait(15)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    proc.stderr.close()
    assert code == 0 and stopped_at
    assert exited - stopped_at[0] < 1.0, f"{exited - stopped_at[0]:.2f} s after 'stopped'"
