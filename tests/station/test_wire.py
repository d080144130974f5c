"""Tests of station.messaging.wire and ``station schema``."""

from __future__ import annotations

import json

import pytest

from station.cli import main
from station.messaging.wire import WIRE_SCHEMA_VERSION, json_schemas


def test_every_message_has_a_schema_with_a_version_field() -> None:
    """Each published or replied message's JSON Schema has the `schema` property."""
    schemas = json_schemas()
    assert schemas["wire_schema_version"] == WIRE_SCHEMA_VERSION
    for name in ("reply", "verdict", "status", "event"):
        assert "schema" in schemas[name]["properties"], name


def test_station_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`station schema` prints one JSON object with every message's schema."""
    assert main(["schema"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"request", "reply", "verdict", "status", "event"}
    assert main(["schema", "--message", "verdict"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "VerdictHeader"


def test_the_mqtt_messages_have_schemas_too() -> None:
    """`station schema --message mqtt-verdict` is the verdict header plus seq, defect_counts
    and maps_png; mqtt-state has online/offline."""
    schemas = json_schemas()
    verdict = schemas["mqtt-verdict"]["properties"]
    assert {"seq", "defect_counts", "maps_png", "inspection_id", "verdict"} <= set(verdict)
    assert schemas["mqtt-state"]["properties"]["state"]["enum"] == ["online", "offline"]
    assert main(["schema", "--message", "mqtt-verdict"]) == 0
