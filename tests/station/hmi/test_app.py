"""Tests of station.hmi.app: the real application served by uvicorn on a free port, a real
PUB socket standing in for the station's, a real store; requests over HTTP."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import zmq

from config import load_config
from station.hmi.app import create_app
from station.hmi.auth import COOKIE, session_value
from station.store import Store
from tests.e2e.conftest import free_port
from tests.station.hmi.conftest import T0, defect, header, record

TOKEN = "test-token-0123456789"


@dataclass
class Served:
    """A running HMI and the PUB socket it follows."""

    url: str
    data_dir: Path
    pub: zmq.Socket[bytes]
    app: Any

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(), exc.headers

    def post(self, path: str, body: Any, signed_in: bool = True, raw: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": content_type}
        if signed_in:
            headers["Cookie"] = f"{COOKIE}={session_value(TOKEN)}"
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())


def serve(tmp_path: Path, token: str | None = TOKEN, *overrides: str) -> Iterator[Served]:
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = load_config("default", [
        f"messaging.publish={publish}", f"messaging.command=tcp://127.0.0.1:{free_port()}",
        "hmi.timezone=Europe/Berlin", *overrides], env={})
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(publish)
    app = create_app(cfg, tmp_path / "data", token)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HMI did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", tmp_path / "data", pub, app)
    finally:
        app.state.hmi.closing.set()
        server.should_exit = True
        thread.join(10)
        pub.close()
        ctx.term()


@pytest.fixture
def hmi(tmp_path: Path) -> Iterator[Served]:
    """The HMI over a store with a FAIL (part with markup in its id), a PASS and an ERROR."""
    store = Store(tmp_path / "data")
    from datetime import timedelta

    record(store, header(1, "FAIL", T0, part="<b>A-1</b>", defects=[defect()]))
    record(store, header(2, "PASS", T0 + timedelta(minutes=1)))
    record(store, header(3, "ERROR", T0 + timedelta(minutes=2)))
    record(store, header(4, "FAIL", T0 + timedelta(minutes=3), defects=[defect()]),
           previews=False)
    store.close()
    yield from serve(tmp_path)


FAIL_ID = header(1)["inspection_id"]
PASS_ID = header(2)["inspection_id"]
ERROR_ID = header(3)["inspection_id"]
NO_PREVIEW_ID = header(4)["inspection_id"]


def test_every_page_renders_and_escapes(hmi: Served) -> None:
    """Live, Shift, History, a part, Health and sign-in answer 200 with their content; a
    part id with markup is text; every response carries the content security policy."""
    for path, expect in [("/live", b"Trigger test part"), ("/shift", b"count-pass"),
                         ("/history", b"4 inspections"), (f"/part/{FAIL_ID}", b"disagree-form"),
                         ("/health", b"status-lines"), ("/login", b"HMI token")]:
        status, body, headers = hmi.get(path)
        assert status == 200, (path, body[:300])
        assert expect in body, path
        assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = hmi.get("/history?part=A-1")
    assert b"&lt;b&gt;A-1&lt;/b&gt;" in body and b"<b>A-1</b>" not in body
    assert b"1 inspection " in body
    _, body, _ = hmi.get("/live")
    assert b"ERROR at" in body  # the unacknowledged ERROR is on every page


def test_search_errors_and_unknown_parts_are_said(hmi: Served) -> None:
    """A bad filter shows its message; an unknown part is a 404 page; a bad shift key too."""
    _, body, _ = hmi.get("/history?verdict=MAYBE")
    assert b"choose PASS, FAIL or ERROR" in body
    status, body, _ = hmi.get("/part/nope")
    assert status == 404 and b"no inspection" in body
    _, body, _ = hmi.get("/shift?shift=2026-11-22.lunch")
    assert b"no shift named" in body


def test_pictures_previews_maps_and_refusals(hmi: Served) -> None:
    """A kept preview is a JPEG; without one the defect map is shown as a PNG; unknown and
    path-like names are 404."""
    status, body, headers = hmi.get(f"/image/{FAIL_ID}/cam0")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, body, headers = hmi.get(f"/image/{NO_PREVIEW_ID}/cam0")
    assert status == 200 and headers["Content-Type"] == "image/png"
    for path in (f"/image/{ERROR_ID}/cam0", "/image/nope/cam0", f"/image/{FAIL_ID}/..%2f..",
                 f"/image/{FAIL_ID}/cam9"):
        assert hmi.get(path)[0] == 404, path


def test_csv_export(hmi: Served) -> None:
    """The search as CSV, newest first, the columns named, filters applied."""
    status, body, headers = hmi.get("/history.csv?verdict=FAIL")
    lines = body.decode().splitlines()
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert lines[0].startswith("inspection_id,part_id,started_at_utc") and len(lines) == 3
    assert hmi.get("/history.csv?since=never")[0] == 400


def test_actions_need_the_token_and_clean_json(hmi: Served) -> None:
    """Not signed in: 401. Wrong content type, not JSON, not an object, too large, a field of
    the wrong type: 400 with the reason."""
    assert hmi.post("/api/ack", {}, signed_in=False)[0] == 401
    cases = [
        ({}, b"x", "text/plain", "Content-Type: application/json"),
        ({}, b"{not json", "application/json", "not JSON"),
        ({}, b"[1]", "application/json", "JSON object"),
        ({}, b"{" + b" " * 20000 + b"}", "application/json", "over 16384 bytes"),
        ({"note": 5}, None, "application/json", "note must be text"),
    ]
    for body, raw, ctype, reason in cases:
        status, reply = hmi.post("/api/ack", body, raw=raw, content_type=ctype)
        assert status == 400 and reason in reply["error"], reply


def test_sign_in_and_out(hmi: Served) -> None:
    """The right token gives the session cookie (HttpOnly, SameSite=Strict), a wrong one 401."""
    req = urllib.request.Request(hmi.url + "/api/login", data=json.dumps(
        {"token": TOKEN}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        cookie = r.headers["set-cookie"]
    assert f"{COOKIE}={session_value(TOKEN)}" in cookie and TOKEN not in cookie
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    status, reply = hmi.post("/api/login", {"token": "wrong"}, signed_in=False)
    assert status == 401 and reply["error"] == "wrong token"


def test_acknowledge_clears_the_alarm(hmi: Served) -> None:
    """Acknowledging up to the shown ERROR leaves no alarm, on every page after."""
    _, body, _ = hmi.get("/health")
    assert b'id="alarm" class="alarm" role="alert">' in body
    status, reply = hmi.post("/api/ack", {"upto": "2026-11-22T05:33:00.000+00:00"})
    assert status == 200 and reply["alarm"] is None
    _, body, _ = hmi.get("/health")
    assert b'role="alert" hidden' in body
    status, reply = hmi.post("/api/ack", {"upto": "tomorrow"})
    assert status == 400 and "ISO 8601" in reply["error"]


def test_disagree_exports_and_marks(hmi: Served) -> None:
    """A FAIL marked: images and masks exported, the mark on the part page and in History;
    an ERROR and unknown ids are refused."""
    status, reply = hmi.post("/api/disagree", {"inspection_id": FAIL_ID, "note": "dust"})
    assert status == 200 and reply["operator_says"] == "good" and len(reply["files"]) == 4
    assert (hmi.data_dir / "hmi" / "disagreements" / "operator-says-good" / reply["files"][0]
            ).is_file()
    _, body, _ = hmi.get(f"/part/{FAIL_ID}")
    assert b"operator says <b>good</b>" in body
    _, body, _ = hmi.get("/history")
    assert b"operator says good: dust" in body
    status, reply = hmi.post("/api/disagree", {"inspection_id": NO_PREVIEW_ID})
    assert status == 200 and "storage.preview_px" in reply["problem"]
    assert hmi.post("/api/disagree", {"inspection_id": ERROR_ID})[0] == 400
    assert hmi.post("/api/disagree", {"inspection_id": "nope"})[0] == 404
    assert hmi.post("/api/disagree", {"inspection_id": "../../etc"})[0] == 400


def test_trigger_without_a_station_says_so(hmi: Served, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """Nobody on messaging.command: 503 naming the endpoint; an overlong part id: 400."""
    monkeypatch.setattr("station.hmi.app.TRIGGER_TIMEOUT_S", 0.3)
    status, reply = hmi.post("/api/trigger", {"part_id": "T-1"})
    assert status == 503 and "no answer from tcp://127.0.0.1:" in reply["error"]
    assert hmi.post("/api/trigger", {"part_id": "x" * 200})[0] == 400


def test_remote_clients_need_to_sign_in_to_view(hmi: Served) -> None:
    """A client on another machine (as the proxy header from loopback says) is sent to the
    sign-in page; with the session cookie it may view."""
    remote = {"X-Forwarded-For": "10.0.0.5"}
    req = urllib.request.Request(hmi.url + "/history", headers=remote)
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as exc:
        opener.open(req, timeout=10)
    exc.value.close()
    assert exc.value.code == 303 and exc.value.headers["Location"] == "/login?next=/history"
    assert hmi.get("/events", remote)[0] == 401
    signed = {**remote, "Cookie": f"{COOKIE}={session_value(TOKEN)}"}
    assert hmi.get("/history", signed)[0] == 200


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects instead of following them."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_live_events_stream_the_verdicts(hmi: Served) -> None:
    """/events says hello with the state, then sends each published verdict as the Live
    view model, the images pointing at the store."""
    host, port = hmi.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.request("GET", "/events")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")

    def next_event() -> tuple[str, Any]:
        kind, data = "", ""
        while True:
            line = resp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and kind:
                return kind, json.loads(data)

    kind, hello = next_event()
    assert kind == "hello" and hello["inspection"]["inspection_id"] == NO_PREVIEW_ID
    assert hello["alarm"]["inspection_id"] == ERROR_ID
    h = header(9, "FAIL", T0, defects=[defect()])
    deadline = time.monotonic() + 20
    seen = None
    while seen is None:  # slow joiner: publish until the feed has it, then read the stream
        assert time.monotonic() < deadline, "the feed never received the verdict"
        hmi.pub.send_multipart([b"verdict", json.dumps(h).encode(), b"m0", b"m1"])
        time.sleep(0.05)
        seen = hmi.app.state.hmi.feed.verdict()
    kind, vm = next_event()
    while kind != "verdict":
        kind, vm = next_event()
    assert vm["inspection_id"] == h["inspection_id"] and vm["verdict"] == "FAIL"
    assert vm["cameras"][0]["image_kind"] == "defect map"  # not in the store: the map
    conn.close()


def test_actions_are_off_without_a_token(tmp_path: Path) -> None:
    """No token configured: the pages say so and every action is 403."""
    for served in serve(tmp_path, None):
        _, body, _ = served.get("/live")
        assert b"actions off" in body
        status, reply = served.post("/api/trigger", {})
        assert status == 403 and "no token configured" in reply["error"]
        assert served.post("/api/login", {"token": "x"})[0] == 403


def test_the_hmi_does_not_load_torch() -> None:
    """The HMI process stays small: importing the app pulls in neither torch nor the model."""
    code = ("import sys, station.hmi.app, station.commands.hmi; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
