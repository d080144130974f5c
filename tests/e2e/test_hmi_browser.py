"""End to end in a real browser: ``station run`` and ``station hmi`` as subprocesses, Debian's
headless chromium driven through Selenium, as an operator would use the screen.

Needs ``chromium`` and ``chromium-driver`` (Debian packages; .ci/run installs them). Without
them the test skips, unless ``STATION_REQUIRE_BROWSER=1`` (CI sets it), where it fails.
Screenshots land in ``$STATION_TEST_ARTIFACTS/hmi`` (default: the test's temporary folder).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.e2e.conftest import RunningStation, free_port
from tests.e2e.test_daemon import sub_socket

TOKEN = "e2e-token-0123456789"
SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"
Factory = Callable[..., RunningStation]


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = ("Debian's chromium and chromium-driver are not installed: "
              "apt-get install -y chromium chromium-driver (.ci/run does)")
    if os.environ.get("STATION_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $STATION_TEST_ARTIFACTS/hmi, else the test's tmp folder."""
    root = os.environ.get("STATION_TEST_ARTIFACTS")
    out = (Path(root) if root else tmp_path / "artifacts") / "hmi"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium (a fresh profile, no network services of its own) via chromedriver."""
    chromium, driver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={profile}", "--window-size=1400,1000",
                "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


@dataclass
class RunningHmi:
    """A ``station hmi`` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_hmi(station: RunningStation, tmp_path: Path) -> RunningHmi:
    """``station hmi`` on a free port for ``station``; waits until it answers."""
    port = free_port()
    log_path = tmp_path / "hmi.log"
    args = [
        sys.executable, "-m", "station.cli", "hmi", "--config", "default",
        "--data-dir", str(station.data_dir),
        "--set", f"messaging.command={station.command}",
        "--set", f"messaging.publish={station.publish}",
        "--set", f"hmi.port={port}", "--set", "hmi.stale_status_s=30",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STATION_HMI_TOKEN": TOKEN}
    env.pop("STATION_CONFIG", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    hmi = RunningHmi(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"station hmi exited with {proc.returncode}:\n{hmi.log()}")
        try:
            with urllib.request.urlopen(hmi.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return hmi
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"station hmi not up in 60 s:\n{hmi.log()}")
        time.sleep(0.2)


def wait(drv: Any, cond: Callable[[Any], Any], what: str, timeout_s: float = 30) -> Any:
    """Wait for a condition on the page; the failure says what was awaited."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout_s, poll_frequency=0.05).until(cond, message=what)


def by_id(drv: Any, name: str) -> Any:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.ID, name)


def shown_inspection(drv: Any) -> str:
    """The inspection id the page shows."""
    return str(drv.execute_script(
        "return document.getElementById('inspection').dataset.inspectionId || ''"))


def next_verdict_of(sub: zmq.Socket[bytes], part_id: str, timeout_s: float = 60
                    ) -> tuple[dict[str, Any], float]:
    """The published verdict of ``part_id`` and the wall-clock time it arrived here."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sub.poll(100):
            parts = sub.recv_multipart()
            arrived = time.time()
            if parts[0] == b"verdict":
                header = json.loads(parts[1])
                if header["part_id"] == part_id:
                    return header, arrived
    raise AssertionError(f"no verdict for part {part_id} within {timeout_s} s")


def trigger_in_browser(drv: Any, sub: zmq.Socket[bytes], part_id: str
                       ) -> tuple[dict[str, Any], float]:
    """Type a part id, press "Trigger test part", return the verdict as published."""
    field = by_id(drv, "trigger-part")
    field.clear()
    field.send_keys(part_id)
    by_id(drv, "trigger").click()
    return next_verdict_of(sub, part_id)


def images_loaded(drv: Any) -> int:
    """How many camera pictures on the page have loaded (decoded, non-empty)."""
    return int(drv.execute_script(
        "return [...document.querySelectorAll('figure.camera img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"))


def http(url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """GET (or POST JSON) without any session; (status, body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_operator_walks_through_the_hmi(
    run_station: Factory, tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    """An operator signs in, triggers test parts and sees each verdict (within 1 s of its
    publication) with both camera pictures and the reasons; an ERROR stays on screen until
    acknowledged; the part is found in History, opened, exported as CSV and marked "operator
    disagrees", and its images and masks land in a folder `station train --format folder`
    loads. Every view is photographed."""
    from models.data import load_dataset

    broken = tmp_path / "broken" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"not a JPEG")
    # cam1 serves a real tile, then an undecodable file (an ERROR), then the tile again
    cam1 = json.dumps([str(SAMPLES / "Break_exp1_num_194173.jpg"), str(broken)])
    station = run_station("default", ["--set", f"cameras.1.replay.images={cam1}"])
    hmi = start_hmi(station, tmp_path)
    drv = browser
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = sub_socket(station.publish, ctx, station.command)
    try:
        # read-only views need no sign-in on loopback; actions do
        drv.get(hmi.url + "/live")
        wait(drv, lambda d: d.execute_script("return document.body.dataset.live") == "yes",
             "the live event stream to connect")
        assert http(hmi.url + "/api/trigger", {})[0] == 401
        drv.get(hmi.url + "/login?next=/live")
        by_id(drv, "token").send_keys(TOKEN)
        by_id(drv, "sign-in").click()
        # The URL changes before the new page is there, and the login page's own event
        # stream sets data-live too: wait for Live's own field (a race seen once in CI).
        wait(drv, lambda d: d.current_url.endswith("/live") and d.execute_script(
            "return document.readyState === 'complete' && "
            "document.getElementById('trigger-part') !== null"), "back on Live after sign-in")
        wait(drv, lambda d: d.execute_script("return document.body.dataset.live") == "yes",
             "the live event stream to connect")

        # 1: a complete inspection
        header, arrived = trigger_in_browser(drv, sub, "E2E-0001")
        iid = header["inspection_id"]
        assert header["verdict"] in ("PASS", "FAIL"), header["reasons"]
        wait(drv, lambda d: shown_inspection(d) == iid, f"Live to show {iid}", 10)
        rendered_ms = int(drv.execute_script(
            "return document.getElementById('inspection').dataset.renderedAt"))
        latency = rendered_ms / 1000 - arrived
        (artifacts / "latency.txt").write_text(
            f"verdict on screen {latency * 1000:.0f} ms after it reached the test's subscriber\n")
        assert latency < 1.0, f"the verdict appeared {latency:.2f} s after its publication"
        assert by_id(drv, "verdict-word").text == header["verdict"]
        assert by_id(drv, "part-id").text == "E2E-0001"
        wait(drv, lambda d: images_loaded(d) == 2, "both camera pictures to load")
        reasons = [li.text for li in by_id(drv, "reasons").find_elements("tag name", "li")]
        assert reasons and all(reasons), reasons
        if header["verdict"] == "FAIL":
            assert reasons == header["reasons"][: len(reasons)]
        drv.save_screenshot(str(artifacts / "live.png"))

        # 2: an ERROR (cam1's file cannot be decoded): shown until acknowledged
        header2, _ = trigger_in_browser(drv, sub, "E2E-0002")
        assert header2["verdict"] == "ERROR", header2
        wait(drv, lambda d: by_id(d, "alarm").is_displayed(), "the ERROR bar")
        assert "E2E-0002" in by_id(drv, "alarm-text").text
        wait(drv, lambda d: by_id(d, "verdict-word").text == "ERROR", "Live to show the ERROR")
        drv.save_screenshot(str(artifacts / "live-error.png"))
        drv.get(hmi.url + "/health")
        assert by_id(drv, "alarm").is_displayed()  # still there on another page
        assert "camera  cam0" in by_id(drv, "status-lines").text  # the words of station status
        drv.save_screenshot(str(artifacts / "health.png"))
        by_id(drv, "ack").click()
        wait(drv, lambda d: not by_id(d, "alarm").is_displayed(), "the ERROR bar to go")
        drv.refresh()
        assert not by_id(drv, "alarm").is_displayed()

        # 3: one more part, then the shift's figures
        drv.get(hmi.url + "/live")
        header3, _ = trigger_in_browser(drv, sub, "E2E-0003")
        wait(drv, lambda d: shown_inspection(d) == header3["inspection_id"], "part 3 on Live")
        drv.get(hmi.url + "/shift")
        counts = {v: int(by_id(drv, f"count-{v.lower()}").text) for v in ("PASS", "FAIL", "ERROR")}
        assert sum(counts.values()) >= 3 and counts["ERROR"] >= 1, counts
        drv.save_screenshot(str(artifacts / "shift.png"))

        # History: search, open, export, disagree
        drv.get(hmi.url + "/history?part=E2E-0001")
        rows = drv.find_elements("css selector", "#history-table tbody tr")
        assert [r.get_attribute("data-inspection-id") for r in rows] == [iid]
        drv.save_screenshot(str(artifacts / "history.png"))
        rows[0].find_element("tag name", "a").click()
        wait(drv, lambda d: shown_inspection(d) == iid, "the part's page")
        wait(drv, lambda d: images_loaded(d) == 2, "the part's pictures")
        status, body = http(hmi.url + "/history.csv?part=E2E")
        table = list(csv.DictReader(io.StringIO(body.decode())))
        assert status == 200 and sorted(r["part_id"] for r in table) == [
            "E2E-0001", "E2E-0002", "E2E-0003"]
        by_id(drv, "disagree-note").send_keys("customer complaint 4711: verdict wrong")
        by_id(drv, "disagree").click()
        wait(drv, lambda d: d.find_elements("id", "mark"), "the mark to show after reload")
        assert "customer complaint 4711" in by_id(drv, "mark").text
        drv.save_screenshot(str(artifacts / "part.png"))
        folder = station.data_dir / "hmi" / "disagreements" / (
            "operator-says-good" if header["verdict"] == "FAIL" else "operator-says-defective")
        images = sorted(p.name for p in (folder / "images").iterdir())
        assert images == [f"{iid}_cam0.jpg", f"{iid}_cam1.jpg"]
        dataset = load_dataset(folder, "folder")
        assert len(dataset.samples) == 2 and dataset.classes
        assert "4711" in (folder / "notes.csv").read_text()
        status, body = http(hmi.url + "/history.csv?part=E2E-0001")
        assert "customer complaint 4711" in body.decode()
    except Exception:
        drv.save_screenshot(str(artifacts / "failure.png"))
        (artifacts / "failure.html").write_text(drv.page_source)
        (artifacts / "hmi.log").write_text(hmi.log())
        raise
    finally:
        sub.close()
        ctx.term()
        hmi.proc.send_signal(signal.SIGTERM)
        try:
            code = hmi.proc.wait(15)
        except subprocess.TimeoutExpired:
            hmi.proc.kill()
            raise AssertionError(f"station hmi did not stop on SIGTERM:\n{hmi.log()}") from None
    assert code == 0, hmi.log()
    assert station.stop()[0] == 0
