"""station.plant.publisher: the store's outbox to a real Mosquitto broker (started by the test),
read back by a real MQTT subscriber."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from station.cycle import error_outcome
from station.messaging.wire import CameraOut, DefectOut, PlantState, PlantVerdict
from station.store import Store
from tests.plant import ROOT, USERS, Running, plant_config, record
from tests.servers import Certificates, Listener, Mosquitto, skip_without, wait_for

skip_without("paho.mqtt.client")
from station.plant.publisher import verdict_payload  # noqa: E402


def listen(broker: Mosquitto, client_id: str = "", expiry: int = 0) -> Listener:
    """A subscriber to everything below ROOT, as the collector user."""
    return Listener(broker.port, "collector", USERS["collector"], [f"{ROOT}/#"], client_id,
                    expiry)


def test_verdicts_reach_the_broker_in_order_and_leave_the_outbox(
        broker: Mosquitto, tmp_path: Path, running: list[Running]) -> None:
    """Thirty verdicts recorded before the publisher starts arrive in order (seq 1..30), each a
    valid PlantVerdict on <root>/booth-1/verdict; each leaves the outbox once acknowledged."""
    sub = listen(broker)
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    ids = record(r.store, r.cfg, 30)
    assert r.store.backlog() == 30
    r.publisher.start()
    wait_for(lambda: len(sub.payloads("/booth-1/verdict")) >= 30, 20, "30 verdicts")
    got = [PlantVerdict.model_validate(p) for p in sub.payloads("/booth-1/verdict")]
    assert [v.inspection_id for v in got] == ids
    assert [v.seq for v in got] == list(range(1, 31))
    assert got[0].station == "booth-1" and got[0].calibration_id == "cal-1"
    wait_for(lambda: r.store.backlog() == 0, 10, "the outbox to empty")
    h = r.health()
    assert h["connected"] and h["delivered"] == 30 and h["oldest_age_s"] is None
    assert r.publisher.problems(h) == []
    sub.close()


def test_no_matching_subscriber_counts_as_delivered(
        broker: Mosquitto, tmp_path: Path, running: list[Running]) -> None:
    """With nobody subscribed the broker answers PUBACK 0x10 (no matching subscribers): that is
    a delivery, and the outbox empties."""
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    record(r.store, r.cfg, 5)
    r.publisher.start()
    wait_for(lambda: r.store.backlog() == 0, 20, "the outbox to empty")
    assert r.publisher.delivered == 5 and r.publisher.refused == 0


def test_a_broker_outage_keeps_verdicts_on_disk_and_sends_them_in_order_after(
        broker: Mosquitto, tmp_path: Path, running: list[Running]) -> None:
    """The broker stops: verdicts wait in the outbox, status says the broker is not connected,
    with the backlog and its age; the broker comes back: the subscriber (persistent session)
    gets every verdict, first copies in seq order, none lost."""
    sub = listen(broker, "test-subscriber", 600)
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    r.publisher.start()
    ids = record(r.store, r.cfg, 10)
    wait_for(lambda: r.store.backlog() == 0, 20, "the first ten to go")
    broker.stop()
    wait_for(lambda: not r.health()["connected"], 10, "the publisher to notice")
    ids += record(r.store, r.cfg, 20)
    wait_for(lambda: "connection refused" in (r.health()["last_error"] or ""), 10,
             "a refused reconnection")
    h = r.health()
    assert h["backlog"] == 20 and h["oldest_age_s"] is not None
    problem = " ".join(r.publisher.problems(h))
    assert "plant broker not connected" in problem and "20 verdict(s) wait" in problem
    broker.start()
    wait_for(lambda: r.store.backlog() == 0, 30, "the backlog to drain")
    wait_for(lambda: len({p["inspection_id"] for p in sub.payloads("/verdict")}) == 30, 20,
             "all thirty at the subscriber")
    first: list[str] = []
    for p in sub.payloads("/verdict"):
        if p["inspection_id"] not in first:
            first.append(str(p["inspection_id"]))
    assert first == ids
    sub.close()


def test_a_refused_verdict_stays_in_the_outbox_until_the_broker_takes_it(
        tmp_path: Path, certificates: Certificates, broker: Mosquitto,
        running: list[Running]) -> None:
    """The broker's ACL forbids the station's topic: PUBACK 0x87, the verdict stays in the
    outbox, status names the refusal; once the ACL allows it (SIGHUP), it is delivered."""
    acl = tmp_path / "acl-broker"
    m = Mosquitto(acl, USERS, None, acl="user station\ntopic write other/#\n")
    m.start()
    try:
        r = Running(tmp_path, plant_config(tmp_path, m.port))
        running.append(r)
        record(r.store, r.cfg, 3)
        r.publisher.start()
        wait_for(lambda: r.publisher.refused > 0, 20, "a refusal")
        h = r.health()
        assert h["backlog"] == 3 and h["connected"]
        assert "Not authorized (0x87)" in (h["last_refusal"] or "")
        assert "stays in the outbox" in " ".join(r.publisher.problems(h))
        m.acl_path.write_text("user station\ntopic write acme/#\n")
        m.reload()
        wait_for(lambda: r.store.backlog() == 0, 30, "delivery once allowed")
        assert r.publisher.problems(r.health()) == []
    finally:
        m.stop()


@pytest.mark.parametrize("case", ["wrong password", "plain text to TLS", "unknown CA"])
def test_refused_connections_say_why(case: str, broker: Mosquitto, tmp_path: Path,
                                     running: list[Running]) -> None:
    """A wrong password (CONNACK 0x87), a plain-text client on a TLS-only listener (closed before
    CONNACK) and a broker certificate from an unknown CA are each one clear sentence naming the
    keys to check; the verdicts stay in the outbox."""
    assert broker.tls_port is not None
    args: dict[str, tuple[int, list[str], str]] = {
        "wrong password": (broker.port, [], "check mqtt.username and the password"),
        "plain text to TLS": (broker.tls_port, [], "if that listener is TLS-only, set "
                              "mqtt.tls.enabled: true"),
        "unknown CA": (broker.tls_port, ["mqtt.tls.enabled=true"],
                       "give the CA that signed it in mqtt.tls.ca_file"),
    }
    port, extra, words = args[case]
    password = "wrong" if case == "wrong password" else USERS["station"]
    r = Running(tmp_path, plant_config(tmp_path, port, *extra, password=password))
    running.append(r)
    record(r.store, r.cfg, 2)
    r.publisher.start()
    wait_for(lambda: words in (r.health()["last_error"] or ""), 20, words)
    if case == "wrong password":
        assert "Not authorized (0x87)" in str(r.health()["last_error"])
    assert r.store.backlog() == 2 and not r.health()["connected"]


@pytest.mark.parametrize("auth", ["password over TLS", "client certificate"])
def test_tls_with_a_password_or_a_client_certificate(
        auth: str, broker: Mosquitto, certificates: Certificates, tmp_path: Path,
        running: list[Running]) -> None:
    """TLS with the test CA works with a password and with a client certificate (the broker
    takes its CN as the user name)."""
    tls = ["mqtt.tls.enabled=true", f"mqtt.tls.ca_file={certificates.ca}"]
    if auth == "client certificate":
        assert broker.cert_port is not None
        cfg = plant_config(tmp_path, broker.cert_port, *tls, "mqtt.username=null",
                           "mqtt.password_file=null",
                           f"mqtt.tls.cert_file={certificates.client_cert}",
                           f"mqtt.tls.key_file={certificates.client_key}")
    else:
        assert broker.tls_port is not None
        cfg = plant_config(tmp_path, broker.tls_port, *tls)
    r = Running(tmp_path, cfg)
    running.append(r)
    record(r.store, r.cfg, 3)
    r.publisher.start()
    wait_for(lambda: r.store.backlog() == 0, 20, "delivery over TLS")
    assert r.health()["broker"].startswith("mqtts://")


def test_birth_status_and_clean_stop_are_retained(
        broker: Mosquitto, tmp_path: Path, running: list[Running]) -> None:
    """On connecting the station publishes state online and its status, both retained (a
    subscriber that comes later gets them); a clean stop leaves state offline "stopped"."""
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    r.publisher.offer_status({"topic": "status", "station": "booth-1", "state": "ready"})
    r.publisher.start()
    wait_for(lambda: r.health()["connected"], 20, "a connection")
    late = listen(broker)
    wait_for(lambda: late.payloads("/state") and late.payloads("/status"), 10, "retained")
    state = PlantState.model_validate(late.payloads("/state")[0])
    assert state.state == "online" and state.station == "booth-1"
    assert all(retained for _, _, retained in late.messages)
    assert late.payloads("/status")[0]["state"] == "ready"
    r.close()
    after = listen(broker)
    wait_for(lambda: after.payloads("/state"), 10, "the retained state")
    assert after.payloads("/state")[0]["state"] == "offline"
    assert after.payloads("/state")[0]["reason"] == "stopped"
    late.close()
    after.close()


def test_an_exception_in_a_callback_drops_the_connection_not_the_thread(
        broker: Mosquitto, tmp_path: Path, running: list[Running]) -> None:
    """paho would end its network thread on a callback's exception; here the first on_publish
    raises, the connection is dropped and made again, and every verdict still goes."""
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    original = r.publisher._on_publish
    calls = []

    def boom(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        original(*args)

    r.publisher._on_publish = boom  # type: ignore[method-assign,assignment]
    record(r.store, r.cfg, 4)
    r.publisher.start()
    wait_for(lambda: r.store.backlog() == 0, 20, "the outbox to empty")
    assert r.publisher._thread.is_alive()


def test_the_payload_counts_defects_per_class_and_carries_maps_when_asked(
        tmp_path: Path) -> None:
    """verdict_payload: seq, defects counted per class over all cameras, and with
    include_maps the PNG files the row names, base64 (a pruned map is left out)."""
    cfg = plant_config(tmp_path, 1883)
    store = Store(tmp_path / "d", outbox=True)
    d = {"class_name": "Crack", "class_index": 1, "area_px": 9, "area_mm2": None,
         "box": (0, 0, 3, 3), "centroid": (1.0, 1.0), "mean_score": 0.9, "max_score": 0.95}
    header = error_outcome(cfg, "x", "P", "r", {"model_id": "m", "trained": True}, None).header
    header = header.model_copy(update={"verdict": "FAIL", "cameras": [
        CameraOut(camera="cam0", defects=[DefectOut(camera="cam0", **d),
                                          DefectOut(camera="cam0", **d)]),
        CameraOut(camera="cam1", defects=[
            DefectOut(camera="cam1", **{**d, "class_name": "Blowhole"})])],
        "maps": ["cam0", "cam1"]})
    iid = record(store, cfg, 1, header)[0]
    rel = store.write_map(iid, header.started_at, "cam0", b"\x89PNG fake")
    with store._lock:
        store._db.execute("UPDATE inspections SET maps = ? WHERE id = ?",
                          (json.dumps({"cam0": rel, "cam1": "maps/gone.png"}), iid))
        store._db.commit()
    queued = store.outbox_after(0, 10)[0]
    plain = PlantVerdict.model_validate_json(verdict_payload(queued, store.data_dir, False))
    assert plain.seq == 1 and plain.defect_counts == {"Blowhole": 1, "Crack": 2}
    assert plain.maps_png is None
    with_maps = PlantVerdict.model_validate_json(verdict_payload(queued, store.data_dir, True))
    assert with_maps.maps_png is not None and set(with_maps.maps_png) == {"cam0"}
    assert base64.b64decode(with_maps.maps_png["cam0"]) == b"\x89PNG fake"
    store.close()
