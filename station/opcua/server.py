"""The OPC UA server: asyncua on its own thread and event loop, fed by plain functions.

The daemon gives :class:`OpcUaServer` two functions and pushes three kinds of news:

- ``trigger(part_id) -> inspection id`` (raises :class:`TriggerRefused`): called by the
  ``Trigger`` method, on the server's loop; it must only enqueue, never wait for a cycle.
- ``pending() -> (busy, accepting)``: read every :data:`POLL_S`; ``busy`` is true while an
  accepted inspection has no published verdict yet, ``accepting`` false once the station stops.
- :meth:`OpcUaServer.publish_verdict`, :meth:`~OpcUaServer.publish_status`: thread-safe, they
  only schedule work on the server's loop and return at once.

Busy/Ready: ``Busy`` turns true when a Trigger is accepted (before the method returns) or when
``pending`` reports an inspection from another channel; it turns false only when a verdict is
written, in the same step as ``LastVerdict`` and with the ``busy`` the daemon passed along, so
a PLC that sees ``Busy`` false reads the verdict of its part. ``Ready`` is ``not Busy`` while
the station accepts triggers. A Trigger while ``Busy`` is answered ``BadInvalidState``.

All of ``LastVerdict`` is written in one step of the loop, ``Sequence`` last, and a
``VerdictEventType`` event is fired on ``Station``: a client reading the fields in one Read
request never sees two verdicts mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog

from config import StationConfig
from config.errors import ConfigError, StationError
from config.opcua import default_application_uri
from station.opcua import nodes

log = structlog.get_logger(__name__)

POLL_S = 0.05
START_TIMEOUT_S = 60.0
MAX_PART_ID = 128

#: Bad status codes a Trigger can get, by the reason the daemon gives (docs/plc.md).
TRIGGER_STATUS = {
    "BUSY": "BadInvalidState",
    "SHUTTING_DOWN": "BadShutdown",
    "BAD_PART_ID": "BadInvalidArgument",
    "STORE_ERROR": "BadResourceUnavailable",
    "TIMEOUT": "BadTimeout",
}


class TriggerRefused(Exception):
    """The daemon did not accept a trigger; ``code`` is a key of :data:`TRIGGER_STATUS`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


TriggerFn = Callable[[str | None], str]
PendingFn = Callable[[], tuple[bool, bool]]


def _ua() -> Any:
    """``asyncua.ua``, typed loosely (its NewTypes make every literal an error under mypy)."""
    return importlib.import_module("asyncua.ua")


def _asyncua() -> Any:
    try:
        import asyncua
    except ImportError as exc:
        raise ConfigError(
            "opcua.enabled is true but asyncua is not installed: pip install "
            f"'inspection-station[opcua]' ({exc})"
        ) from exc
    return asyncua


class OpcUaServer:
    """The OPC UA server of one station. ``start()``, push news, ``stop()``."""

    def __init__(self, cfg: StationConfig, trigger: TriggerFn, pending: PendingFn) -> None:
        _asyncua()
        self.cfg = cfg
        self.o = cfg.opcua
        self._trigger = trigger
        self._pending = pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._server: Any = None
        self._idx = 0
        self._event_gen: Any = None
        self._busy = False
        self._last_id = ""
        self._sequence = 0
        self._accepting = True
        self.endpoint = self.o.endpoint
        self.application_uri = self.o.application_uri or default_application_uri(cfg.name)

    # --- life cycle (daemon's thread) -------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server thread; returns when it listens. ``StationError`` when it cannot."""
        for name in ("asyncua", "asyncua.server", "asyncua.uaprotocol"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise StationError(f"OPC UA server did not start within {timeout_s:g} s")
        if self._error is not None:
            error = self._error
            if isinstance(error, StationError):
                raise error
            raise StationError(
                f"OPC UA server on {self.endpoint} did not start: {type(error).__name__}: {error}"
            ) from error
        log.info("OPC UA server listening", endpoint=self.endpoint,
                 application_uri=self.application_uri)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and join the thread (clients are disconnected)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("OPC UA server thread did not stop", timeout_s=timeout_s)

    # --- news from the daemon (any thread; never blocks) -----------------------------------

    def publish_verdict(
        self, header: Mapping[str, Any], counts: Mapping[str, int], busy: bool
    ) -> None:
        """Write LastVerdict, Counters, Busy/Ready and fire the verdict event."""
        self._schedule(self._write_verdict(dict(header), dict(counts), busy))

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Write Status, Health and Counters."""
        self._schedule(self._write_values(nodes.status_values(dict(status))))

    def _schedule(self, coro: Any) -> Future[Any] | None:
        loop = self._loop
        if loop is None or loop.is_closed() or not self._ready.is_set():
            coro.close()
            return None
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed in between
            coro.close()
            return None

    # --- the server's thread ---------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() or logged; never raised here
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("OPC UA server stopped on an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await self._build()
        self._server = server
        try:
            await server.start()
        except OSError as exc:
            raise StationError(
                f"opcua.endpoint = {self.endpoint!r}: cannot listen ({exc.strerror or exc}); is "
                "another server on that port? Choose another port in opcua.endpoint"
            ) from exc
        self._ready.set()
        poller = asyncio.create_task(self._poll())
        try:
            await self._stop.wait()
        finally:
            poller.cancel()
            self._accepting = False
            await server.stop()
            log.info("OPC UA server stopped")

    async def _build(self) -> Any:
        asyncua = _asyncua()
        ua = _ua()
        from asyncua.server.internal_session import InternalSession

        from station.opcua.security import StationUsers, TrustFolder, certificate_validator

        o = self.o
        assert o.certificate and o.private_key and o.trust_dir  # the schema requires them
        cert_path = self.cfg.resolve(o.certificate)
        key_path = self.cfg.resolve(o.private_key)
        self._check_certificate(cert_path, key_path)
        trust = TrustFolder(self.cfg.resolve(o.trust_dir))
        users = StationUsers(
            trust,
            self.cfg.resolve(o.users_file) if o.users_file else None,
            self.cfg.resolve(o.user_certs_dir) if o.user_certs_dir else None,
            o.allow_anonymous, o.allow_unsecured,
        )
        server = asyncua.Server(user_manager=users)
        await server.init()
        server.set_endpoint(self.endpoint)
        if o.listen_host:
            server.socket_address = (o.listen_host, urlparse(self.endpoint).port)
        # Advertise the endpoint URL exactly as configured, whatever the client asked with.
        server.set_match_discovery_endpoint_url(False)
        server.set_match_discovery_client_ip(False)
        server.set_server_name(f"{self.cfg.name} inspection station")
        server.product_uri = "urn:inspection-station"
        server.manufacturer_name = "inspection-station"
        server.application_type = ua.ApplicationType.Server
        await server.set_application_uri(self.application_uri)
        await server.load_certificate(str(cert_path))
        await server.load_private_key(str(key_path))
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if o.allow_unsecured:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        tokens: list[type] = []
        if o.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if o.users_file:
            tokens.append(ua.UserNameIdentityToken)
        if o.user_certs_dir:
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(certificate_validator(trust))
        InternalSession.max_connections = o.max_sessions
        self._server = server
        await self._model(server)
        return server

    def _check_certificate(self, cert_path: Path, key_path: Path) -> None:
        from station.keys import certificate_uri, days_left, read_certificate

        for path, key in ((cert_path, "certificate"), (key_path, "private_key")):
            if not path.is_file():
                raise ConfigError(
                    f"opcua.{key} = {str(path)!r}: no such file; make it with `station keys "
                    "--opcua --dir DIR`"
                )
        cert = read_certificate(cert_path)
        uri = certificate_uri(cert)
        if uri != self.application_uri:
            raise ConfigError(
                f"opcua.certificate {str(cert_path)!r} carries application URI {uri!r} but the "
                f"server's is {self.application_uri!r} (opcua.application_uri, default "
                "urn:inspection-station:<name>); clients refuse the mismatch: make the "
                "certificate again with `station keys --opcua --force`"
            )
        left = days_left(cert)
        if left < 0:
            raise ConfigError(
                f"opcua.certificate {str(cert_path)!r} expired {-left:.0f} days ago; make a new "
                "one with `station keys --opcua --force` and re-trust it on the PLCs"
            )
        if left < 30:
            log.warning("OPC UA certificate expires soon", days_left=round(left, 1),
                        path=str(cert_path))

    async def _model(self, server: Any) -> None:
        ua = _ua()

        idx = await server.register_namespace(nodes.NAMESPACE_URI)
        self._idx = idx

        def nid(text: str) -> Any:
            return ua.NodeId(text, idx)

        made: dict[str, Any] = {"": server.nodes.objects}
        for node_id, parent, name in nodes.OBJECTS:
            made[node_id] = await made[parent].add_object(nid(node_id), ua.QualifiedName(name, idx))
        for var in nodes.VARIABLES:
            vtype = getattr(ua.VariantType, var.type)
            initial = _initial(var)
            node = await made[var.parent].add_variable(
                nid(var.node_id), ua.QualifiedName(var.name, idx), ua.Variant(initial, vtype),
                datatype=ua.NodeId(vtype.value, 0),
            )
            await node.write_attribute(
                ua.AttributeIds.ValueRank,
                ua.DataValue(ua.Variant(1 if var.array else -1, ua.VariantType.Int32)),
            )
            if var.array:
                await node.write_attribute(
                    ua.AttributeIds.ArrayDimensions,
                    ua.DataValue(ua.Variant([0], ua.VariantType.UInt32)),
                )
            if var.doc:
                text = ua.Variant(ua.LocalizedText(var.doc), ua.VariantType.LocalizedText)
                await node.write_attribute(ua.AttributeIds.Description, ua.DataValue(text))
        station = made[nodes.STATION]
        part_arg = ua.Argument(Name="PartId", DataType=ua.NodeId(ua.ObjectIds.String),
                               ValueRank=-1, Description=ua.LocalizedText(
                                   f"the part's id (serial, DMC), at most {MAX_PART_ID} "
                                   "characters; empty for none"))
        id_arg = ua.Argument(Name="InspectionId", DataType=ua.NodeId(ua.ObjectIds.String),
                             ValueRank=-1, Description=ua.LocalizedText(
                                 "the new inspection's id; LastVerdict.InspectionId equals it "
                                 "when its verdict is written"))
        await station.add_method(nid(nodes.TRIGGER), ua.QualifiedName("Trigger", idx),
                                 self._on_trigger, [part_arg], [id_arg])
        # The verdict event type, with stable ids for the type and its fields.
        base = server.get_node(ua.NodeId(ua.ObjectIds.BaseEventType))
        etype = await base.add_object_type(nid(nodes.VERDICT_EVENT_TYPE),
                                           ua.QualifiedName(nodes.VERDICT_EVENT_TYPE, idx))
        for name, type_name in nodes.EVENT_FIELDS:
            vtype = getattr(ua.VariantType, type_name)
            prop = await etype.add_property(
                nid(f"{nodes.VERDICT_EVENT_TYPE}.{name}"), ua.QualifiedName(name, idx),
                ua.Variant(_zero(type_name), vtype), datatype=ua.NodeId(vtype.value, 0),
            )
            await prop.set_modelling_rule(True)
        self._event_gen = await server.get_event_generator(etype, station)
        await self._write_values({f"{nodes.STATION}.Name": self.cfg.name,
                                  f"{nodes.STATION}.Ready": True})

    # --- on the server's loop ---------------------------------------------------------------

    async def _on_trigger(self, parent: Any, part: Any = None) -> Any:
        ua = _ua()

        value = getattr(part, "Value", part)
        if value is not None and not isinstance(value, str):
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        if value is not None and len(value) > MAX_PART_ID:
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        if self._busy:
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        try:  # the daemon's main loop accepts it: wait off this loop
            inspection_id = await asyncio.get_running_loop().run_in_executor(
                None, self._trigger, value or None)
        except TriggerRefused as exc:
            log.info("OPC UA trigger refused", code=exc.code, reason=str(exc))
            name = TRIGGER_STATUS.get(exc.code, "BadInternalError")
            return ua.StatusCode(getattr(ua.StatusCodes, name))
        except Exception:
            log.exception("OPC UA trigger failed")
            return ua.StatusCode(ua.StatusCodes.BadInternalError)
        if inspection_id != self._last_id:  # (its verdict cannot be written yet, but be sure)
            await self._set_busy(True)
        log.info("OPC UA trigger", inspection_id=inspection_id, part_id=value or None)
        return [ua.Variant(inspection_id, ua.VariantType.String)]

    async def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        await self._write_values({f"{nodes.STATION}.Busy": busy,
                                  f"{nodes.STATION}.Ready": (not busy) and self._accepting})

    async def _poll(self) -> None:
        """Busy for inspections from other channels; Ready false once the station stops."""
        while True:
            await asyncio.sleep(POLL_S)
            try:
                busy, accepting = self._pending()
            except Exception:
                log.exception("OPC UA: the daemon's pending() failed")
                continue
            if accepting != self._accepting:
                self._accepting = accepting
                await self._set_busy(self._busy)
            if busy and not self._busy:
                await self._set_busy(True)

    async def _write_verdict(self, header: dict[str, Any], counts: dict[str, int],
                             busy: bool) -> None:
        ua = _ua()

        self._sequence += 1
        self._last_id = str(header.get("inspection_id") or "")
        values = nodes.verdict_values(header, self._sequence)
        values.update(nodes.counter_values(counts))
        values[f"{nodes.STATION}.Busy"] = busy
        values[f"{nodes.STATION}.Ready"] = (not busy) and self._accepting
        self._busy = busy
        await self._write_values(values)
        gen = self._event_gen
        if gen is not None:
            verdict = str(header.get("verdict") or "")
            ev = gen.event
            for name, type_name in nodes.EVENT_FIELDS:
                value = values[f"{nodes.LAST_VERDICT}.{name}"]
                setattr(ev, name, ua.Variant(value, getattr(ua.VariantType, type_name)))
            ev.Severity = nodes.VERDICT_SEVERITY.get(verdict, 800)
            await gen.trigger(message=f"{verdict} part {header.get('part_id') or '-'} "
                              f"({header.get('inspection_id')})")

    async def _write_values(self, values: Mapping[str, nodes.Value]) -> None:
        """Write every value in one step of the loop (no client request runs in between)."""
        ua = _ua()

        server = self._server
        if server is None:
            return
        now = datetime.now(UTC)
        for node_id, value in values.items():
            var = nodes.variable(node_id)
            vtype = getattr(ua.VariantType, var.type)
            if value is None:
                value = _initial(var)
            dv = ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=now, ServerTimestamp=now)
            await server.write_attribute_value(ua.NodeId(node_id, self._idx), dv)


#: OPC UA's "no time" (1601-01-01, encoded as 0).
NO_TIME = datetime(1601, 1, 1, tzinfo=UTC)


def _zero(type_name: str) -> Any:
    return {"Boolean": False, "Int32": 0, "UInt32": 0, "Double": 0.0, "String": "",
            "DateTime": NO_TIME}[type_name]


def _initial(var: nodes.Var) -> Any:
    return [] if var.array else _zero(var.type)
