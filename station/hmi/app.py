"""The HMI web application (Starlette): pages, the live event stream, actions.

Routes::

    GET  /live /shift /history /part/{id} /health /login   pages (HTML, every asset local)
    GET  /events                 server-sent events: hello (the state), verdict, status,
                                 event, alarm
    GET  /image/{id}/{camera}    the frame preview JPEG (or, without one, the defect map)
    GET  /history.csv            the search as CSV
    POST /api/login /api/logout  the action token <-> a session cookie
    POST /api/trigger            inspect a test part         (token)
    POST /api/ack                acknowledge the ERRORs shown (token)
    POST /api/disagree           mark "operator disagrees"  (token), export for training

Pages and their data are built by ``station.hmi.views``; this module only wires requests to
them. Queries of the store run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from config import StationConfig
from config.errors import StationError
from pipeline.overlay import colour
from station.hmi import views
from station.hmi.auth import COOKIE, Access, session_value
from station.hmi.clock import Clock, iso_utc, parse_iso, previous_shifts, shift_at, shift_by_key
from station.hmi.export import SAYS, ExportError, classes_of, export_disagreement
from station.hmi.feed import Feed, Message
from station.hmi.records import Records
from station.hmi.state import Disagreement, HmiState
from station.messaging.client import NoAnswer, request

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY = 16 * 1024
KEEPALIVE_S = 15.0
TICK_S = 0.5  # how soon an event stream notices that the server is closing
TRIGGER_TIMEOUT_S = 5.0  # the station answers `inspect` (no wait) at once when it is up
SHIFTS_LISTED = 9
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class Hmi:
    """Everything the handlers share."""

    cfg: StationConfig
    data_dir: Path
    clock: Clock
    records: Records
    state: HmiState
    feed: Feed
    access: Access
    export_dir: Path
    closing: threading.Event = field(default_factory=threading.Event)  # ends the streams


# --- helpers -------------------------------------------------------------------------------


def _hmi(request: Request) -> Hmi:
    hmi: Hmi = request.app.state.hmi
    return hmi


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _may_view(request: Request) -> bool:
    return _hmi(request).access.may_view(
        _client(request), request.cookies.get(COOKIE), request.headers.get("authorization"))


def _signed_in(request: Request) -> bool:
    return _hmi(request).access.signed_in(
        request.cookies.get(COOKIE), request.headers.get("authorization"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _status_model(hmi: Hmi) -> dict[str, Any] | None:
    status, _ = hmi.feed.status()
    model = (status or {}).get("model")
    return dict(model) if isinstance(model, dict) else None


def _find_image(hmi: Hmi) -> views.ImageFinder:
    def find(header: dict[str, Any], camera: str) -> tuple[str | None, str]:
        iid = str(header["inspection_id"])
        url = f"/image/{iid}/{camera}"
        if hmi.records.preview_file(iid, str(header.get("started_at", "")), camera):
            return url, "photo"
        if camera in header.get("maps", []):
            return url, "defect map"
        return None, "none"

    return find


def _inspection(hmi: Hmi, header: dict[str, Any]) -> dict[str, Any]:
    return views.inspection_view(header, hmi.clock, hmi.cfg.rules, _find_image(hmi),
                                 _status_model(hmi))


def _alarm(hmi: Hmi) -> dict[str, Any] | None:
    if not hmi.records.exists():
        return None
    try:
        error, count = hmi.records.errors_after(hmi.state.acknowledged_upto())
    except StationError as exc:
        log.warning("alarm query failed", error=str(exc))
        return None
    return views.alarm_view(error, count, hmi.clock)


def _status(hmi: Hmi) -> dict[str, Any]:
    status, age = hmi.feed.status()
    return views.status_view(status, age, hmi.cfg.hmi.stale_status_s, hmi.feed.last_bad
                             if status is None else None)


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    hmi = _hmi(request)
    templates: Jinja2Templates = request.app.state.templates
    base = {
        "station": hmi.cfg.name, "page": name.removesuffix(".html"),
        "signed_in": _signed_in(request), "actions_enabled": hmi.access.actions_enabled,
        "alarm": _alarm(hmi), "health": _status(hmi), "timezone": hmi.clock.name,
    }
    return templates.TemplateResponse(request, name, {**base, **context},
                                      status_code=status_code,
                                      headers={"Cache-Control": "no-store"})


def view(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """A read-only page: refused (sign-in page) when the client may not view."""

    def wrapped(request: Request) -> Response:
        if not _may_view(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        try:
            return handler(request)
        except StationError as exc:  # the store is missing or unreadable: say so, stay up
            return _page(request, "problem.html", problem=str(exc), status_code=503)

    return wrapped


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ValueError("send the body as JSON (Content-Type: application/json)")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise ValueError(f"the body is over {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ValueError(f"the body is over {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{key} of {len(value)} characters: at most {limit}")
    return value.strip()


def action(
    handler: Callable[[Request, dict[str, Any]], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """An action: needs the token (cookie or bearer) and a JSON body."""

    async def wrapped(request: Request) -> Response:
        hmi = _hmi(request)
        if not hmi.access.actions_enabled:
            return _error(403, "actions are off: no token configured (set $STATION_HMI_TOKEN "
                          "or hmi.token_file and restart station hmi)")
        if not _signed_in(request):
            return _error(401, "sign in with the HMI token first")
        try:
            data = await _json_body(request)
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            return await handler(request, data)
        except ValueError as exc:
            return _error(400, str(exc))

    return wrapped


# --- pages ---------------------------------------------------------------------------------


@view
def live_page(request: Request) -> Response:
    """The last verdict, large; both cameras; reasons; ids."""
    hmi = _hmi(request)
    header = hmi.feed.verdict() or (hmi.records.latest() if hmi.records.exists() else None)
    data = _inspection(hmi, header) if header else None
    return _page(request, "live.html", inspection=data)


@view
def part_page(request: Request) -> Response:
    """One inspection from the store, as Live shows it, with the disagreement form."""
    hmi = _hmi(request)
    iid = request.path_params["iid"]
    found = hmi.records.header(iid) if hmi.records.exists() else None
    if found is None:
        return _page(request, "problem.html", status_code=404,
                     problem=f"no inspection {iid!r} in the store; search for it in History")
    header, _ = found
    mark = hmi.state.disagreements([iid]).get(iid)
    return _page(request, "part.html", inspection=_inspection(hmi, header),
                 mark={**asdict(mark), "at": hmi.clock.show(mark.at)} if mark else None,
                 can_disagree=header["verdict"] in SAYS,
                 operator_says=SAYS.get(header["verdict"], ""))


@view
def shift_page(request: Request) -> Response:
    """Counts per hour and per shift, yield, FAIL by class, cycle times."""
    hmi = _hmi(request)
    shifts = hmi.cfg.hmi.shifts
    now = hmi.clock.now()
    key = request.query_params.get("shift")
    problem = None
    try:
        window = shift_by_key(shifts, hmi.clock, key) if key else shift_at(shifts, hmi.clock, now)
    except ValueError as exc:
        problem, window = str(exc), shift_at(shifts, hmi.clock, now)
    listed = previous_shifts(shifts, hmi.clock, window, SHIFTS_LISTED)
    since, until = iso_utc(window.start), iso_utc(window.end)
    if hmi.records.exists():
        minutes = hmi.records.minute_counts(iso_utc(listed[-1].start), until)
        durations = hmi.records.durations(since, until)
        failed = hmi.records.failed_defects(since, until)
    else:
        minutes, durations, failed = [], [], []
    shift = views.shift_view(window, [m for m in minutes if m[0] >= since[:16]], durations,
                             failed, hmi.clock, hmi.cfg.rules, now)
    nxt = shift_at(shifts, hmi.clock, window.end)
    return _page(request, "shift.html", shift=shift, rows=views.shift_rows(listed, minutes),
                 prev_key=listed[1].key if len(listed) > 1 else None,
                 next_key=nxt.key if nxt.start <= now else None, problem=problem)


@view
def history_page(request: Request) -> Response:
    """Search by part id, verdict and time; one page of results."""
    hmi = _hmi(request)
    params = dict(request.query_params)
    problem = None
    try:
        filters = views.parse_filters(params, hmi.clock)
    except ValueError as exc:
        problem, filters = str(exc), views.parse_filters({}, hmi.clock)
    try:
        number = max(1, int(params.get("page", "1")))
    except ValueError:
        number = 1
    size = hmi.cfg.hmi.page_size
    rows, total = (hmi.records.search(filters, size, (number - 1) * size)
                   if hmi.records.exists() else ([], 0))
    marks = hmi.state.disagreements([r.id for r in rows])
    query = {k: v for k, v in params.items() if k in ("part", "verdict", "since", "until") and v}
    return _page(request, "history.html", rows=views.history_rows(rows, marks, hmi.clock),
                 pager=views.Page(number, size, total), query=query, problem=problem,
                 store_exists=hmi.records.exists())


@view
def health_page(request: Request) -> Response:
    """Cameras, lights, model, calibration, problems, events; the ERROR until acknowledged."""
    hmi = _hmi(request)
    events = [views.event_view(e, hmi.clock) for e in hmi.feed.events()]
    return _page(request, "health.html", events=events, feed={
        "endpoint": hmi.feed.endpoint, "bad": hmi.feed.bad_messages, "last_bad": hmi.feed.last_bad,
        "store": str(hmi.records.path), "store_exists": hmi.records.exists(),
        "preview_px": hmi.cfg.storage.preview_px, "export_dir": str(hmi.export_dir),
    })


def login_page(request: Request) -> Response:
    """The token form."""
    nxt = request.query_params.get("next", "/live")
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/live"
    return _page(request, "login.html", next=nxt)


def root(request: Request) -> Response:
    """``/`` is Live."""
    return RedirectResponse("/live", status_code=307)


# --- data ----------------------------------------------------------------------------------


def image(request: Request) -> Response:
    """A frame preview JPEG, else the defect map coloured by class, else 404."""
    if not _may_view(request):
        return PlainTextResponse("sign in to view", status_code=401)
    hmi = _hmi(request)
    iid, camera = request.path_params["iid"], request.path_params["camera"]
    if not (SAFE_NAME.match(iid) and SAFE_NAME.match(camera)):
        return PlainTextResponse("no such image", status_code=404)
    header: dict[str, Any] | None = None
    maps: dict[str, str] = {}
    latest = hmi.feed.verdict()
    if latest is not None and latest["inspection_id"] == iid:
        header = latest
    elif hmi.records.exists():
        found = hmi.records.header(iid)
        if found is not None:
            header, maps = found
    if header is None:
        return PlainTextResponse(f"no inspection {iid}", status_code=404)
    cache = {"Cache-Control": "private, max-age=86400"}
    preview = hmi.records.preview_file(iid, str(header.get("started_at", "")), camera)
    if preview is not None:
        return FileResponse(preview, media_type="image/jpeg", headers=cache)
    png = hmi.feed.map_png(iid, camera)
    if png is None:
        path = hmi.records.map_file(maps.get(camera))
        png = path.read_bytes() if path else None
    if png is None:
        return PlainTextResponse(f"no picture kept of {iid} on {camera}", status_code=404)
    return Response(coloured_map(png), media_type="image/png", headers=cache)


def coloured_map(png: bytes) -> bytes:
    """A class-index map PNG as a picture: classes in their colours on dark grey."""
    dmap = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if dmap is None:
        raise StationError("a defect map PNG could not be decoded")
    out = np.full((*dmap.shape, 3), 48, np.uint8)
    for idx in np.unique(dmap):
        if idx:
            out[dmap == idx] = colour(int(idx))
    ok, buf = cv2.imencode(".png", out)
    return bytes(buf.tobytes()) if ok else png


def history_csv(request: Request) -> Response:
    """The History search as CSV (at most hmi.csv_max_rows rows)."""
    if not _may_view(request):
        return PlainTextResponse("sign in to export", status_code=401)
    hmi = _hmi(request)
    try:
        filters = views.parse_filters(dict(request.query_params), hmi.clock)
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    marks = hmi.state.all_disagreements()

    def lines() -> Iterator[str]:
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(views.CSV_COLUMNS)
        if hmi.records.exists():
            for r in hmi.records.iter_rows(filters, hmi.cfg.hmi.csv_max_rows):
                out.writerow(views.csv_row(r, marks.get(r.id), hmi.clock))
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    name = f"inspections-{datetime.now(UTC):%Y%m%dT%H%M%S}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def events(request: Request) -> Response:
    """Server-sent events: ``hello`` with the state, then every verdict, status, event, alarm."""
    if not _may_view(request):
        return PlainTextResponse("sign in to view", status_code=401)
    hmi = _hmi(request)
    queue = hmi.feed.listen()

    def sse(kind: str, data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

    def hello() -> dict[str, Any]:
        header = hmi.feed.verdict() or (hmi.records.latest() if hmi.records.exists() else None)
        return {"inspection": _inspection(hmi, header) if header else None,
                "alarm": _alarm(hmi), "health": _status(hmi)}

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n" + sse("hello", await to_thread.run_sync(hello))
            quiet = 0.0
            while not hmi.closing.is_set():
                try:
                    msg = await asyncio.wait_for(queue.get(), TICK_S)
                except TimeoutError:
                    quiet += TICK_S
                    if quiet >= KEEPALIVE_S:
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                    continue
                quiet = 0.0
                if msg.topic == "verdict":
                    yield sse("verdict", _inspection(hmi, msg.header))
                    if msg.header.get("verdict") == "ERROR":
                        yield sse("alarm", await to_thread.run_sync(_alarm, hmi))
                elif msg.topic == "status":
                    yield sse("health", _status(hmi))
                elif msg.topic == "event":
                    yield sse("event", views.event_view(msg.header, hmi.clock))
                elif msg.topic == "alarm":
                    yield sse("alarm", await to_thread.run_sync(_alarm, hmi))
        finally:
            hmi.feed.unlisten(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- actions -------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """Exchange the token for a session cookie."""
    hmi = _hmi(request)
    if not hmi.access.actions_enabled:
        return _error(403, "no token is configured: set $STATION_HMI_TOKEN or hmi.token_file")
    try:
        data = await _json_body(request)
        token = _text(data, "token", 512)
    except ValueError as exc:
        return _error(400, str(exc))
    if not hmi.access.check_token(token):
        await asyncio.sleep(1.0)  # slows guessing
        log.warning("sign-in refused", client=_client(request))
        return _error(401, "wrong token")
    assert hmi.access.token is not None
    response = JSONResponse({"ok": True})
    response.set_cookie(COOKIE, session_value(hmi.access.token), httponly=True,
                        samesite="strict", path="/")
    log.info("signed in", client=_client(request))
    return response


async def logout(request: Request) -> Response:
    """Forget the session cookie."""
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE, path="/")
    return response


@action
async def trigger(request: Request, data: dict[str, Any]) -> Response:
    """Inspect a test part: ``inspect`` on the station's command socket (no wait)."""
    hmi = _hmi(request)
    part = _text(data, "part_id", views.MAX_PART_ID) or (
        f"TEST-{hmi.clock.local(hmi.clock.now()):%Y%m%d-%H%M%S}")
    endpoint = hmi.cfg.messaging.command
    try:
        reply = await to_thread.run_sync(request_inspect, endpoint, part)
    except NoAnswer as exc:
        return _error(503, str(exc))
    if not reply.get("ok"):
        err = reply.get("error") or {}
        return _error(409, f"the station refused: {err.get('code')}: {err.get('message')}")
    log.info("test part triggered", part_id=part, client=_client(request))
    return JSONResponse({"ok": True, "part_id": part, **(reply.get("result") or {})})


def request_inspect(endpoint: str, part_id: str) -> dict[str, Any]:
    """Send ``inspect`` (no wait) and return the reply."""
    return request(endpoint, {"command": "inspect", "part_id": part_id, "wait": False},
                   TRIGGER_TIMEOUT_S)


@action
async def acknowledge(request: Request, data: dict[str, Any]) -> Response:
    """Acknowledge the ERRORs up to the one shown (``upto``: its finished_at)."""
    hmi = _hmi(request)
    upto = _text(data, "upto", 64) or iso_utc(hmi.clock.now())
    try:
        upto = iso_utc(parse_iso(upto))
    except ValueError:
        raise ValueError(f"upto {upto!r} is not an ISO 8601 time") from None
    note = _text(data, "note", 2000)
    await to_thread.run_sync(hmi.state.acknowledge, upto, note)
    hmi.feed.announce(Message("alarm", {}))
    log.info("errors acknowledged", upto=upto, client=_client(request))
    return JSONResponse({"ok": True, "alarm": await to_thread.run_sync(_alarm, hmi)})


@action
async def disagree(request: Request, data: dict[str, Any]) -> Response:
    """Mark "operator disagrees" with a note; export the images and masks for training."""
    hmi = _hmi(request)
    iid = _text(data, "inspection_id", 64)
    note = _text(data, "note", 2000)
    if not SAFE_NAME.match(iid):
        return _error(400, f"inspection_id {iid[:64]!r} is not an inspection id")

    def work() -> Response:
        found = hmi.records.header(iid) if hmi.records.exists() else None
        if found is None:
            return _error(404, f"no inspection {iid} in the store")
        header, maps = found
        if header["verdict"] not in SAYS:
            return _error(400, f"inspection {iid} is ERROR: it judged nothing; acknowledge it")
        at = iso_utc(hmi.clock.now())
        status, _ = hmi.feed.status()
        classes = classes_of(header, ((status or {}).get("model") or {}).get("classes"))
        problem = None
        files: list[str] = []
        folder = None
        try:
            done = export_disagreement(hmi.records, header, maps, hmi.export_dir, note,
                                       classes, at)
            files, folder = done.files, str(done.folder)
            if done.missing:
                problem = f"no preview kept of camera(s) {', '.join(done.missing)}"
        except ExportError as exc:
            problem = str(exc)
        hmi.state.disagree(Disagreement(iid, at, header.get("part_id"), header["verdict"],
                                        SAYS[header["verdict"]], note, files))
        log.info("operator disagrees", inspection_id=iid, files=len(files), problem=problem)
        return JSONResponse({"ok": True, "operator_says": SAYS[header["verdict"]],
                             "folder": folder, "files": files, "problem": problem})

    return await to_thread.run_sync(work)


# --- the application -----------------------------------------------------------------------


class SecurityHeaders:
    """Adds the content security policy (only this site's own files run) and its friends."""

    HEADERS = (
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(cfg: StationConfig, data_dir: Path, token: str | None) -> Starlette:
    """The HMI for the station ``cfg`` whose store is under ``data_dir``."""
    h = cfg.hmi
    state_dir = cfg.resolve(h.state_dir) if h.state_dir else data_dir / "hmi"
    hmi = Hmi(
        cfg=cfg, data_dir=data_dir, clock=Clock(h.timezone), records=Records(data_dir),
        state=HmiState(state_dir), feed=Feed(cfg.messaging.publish, h.events_kept),
        access=Access(token, h.public_views),
        export_dir=cfg.resolve(h.export_dir) if h.export_dir else state_dir / "disagreements",
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hmi.feed.start()
        try:
            yield
        finally:
            hmi.feed.stop()
            hmi.state.close()

    app = Starlette(
        middleware=[Middleware(SecurityHeaders)],
        routes=[
            Route("/", root),
            Route("/live", live_page),
            Route("/shift", shift_page),
            Route("/history", history_page),
            Route("/history.csv", history_csv),
            Route("/part/{iid}", part_page),
            Route("/health", health_page),
            Route("/login", login_page),
            Route("/events", events),
            Route("/image/{iid}/{camera}", image),
            Route("/api/login", login, methods=["POST"]),
            Route("/api/logout", logout, methods=["POST"]),
            Route("/api/trigger", trigger, methods=["POST"]),
            Route("/api/ack", acknowledge, methods=["POST"]),
            Route("/api/disagree", disagree, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.hmi = hmi
    app.state.templates = Jinja2Templates(directory=HERE / "templates")

    return app
