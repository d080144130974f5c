"""config.mqtt: the plant's broker and collector settings refuse what cannot work, with the rule
and the value."""

from __future__ import annotations

import pytest

from config import load_config
from config.errors import ConfigError
from config.mqtt import CollectConfig, MqttConfig, topic_problem


def refused(*overrides: str) -> str:
    """The ConfigError text for the default config with ``overrides``."""
    with pytest.raises(ConfigError) as err:
        load_config("default", list(overrides), env={})
    return str(err.value)


def test_topics_are_built_below_the_station_s_name() -> None:
    """topic_root's {station} becomes the name; the client id defaults to station-<name>; the
    collector subscribes to the same tree with + for the station."""
    m = MqttConfig(topic_root="acme/plant1/paint/line3/{station}")
    assert m.topic("booth-7", "verdict") == "acme/plant1/paint/line3/booth-7/verdict"
    assert m.client_id_for("booth-7") == "station-booth-7"
    assert CollectConfig().filters(m) == ["acme/plant1/paint/line3/+/verdict"]
    assert CollectConfig(topics=["acme/#"]).filters(m) == ["acme/#"]


@pytest.mark.parametrize(("value", "words"), [
    ("acme/line", "must contain {station} exactly once"),
    ("acme/{station}/{station}", "must contain {station} exactly once"),
    ("acme/+/{station}", "contains a wildcard"),
    ("acme//{station}", "has an empty level"),
    ("/acme/{station}", "has an empty level"),
    ("$SYS/{station}", "starts with $"),
])
def test_a_bad_topic_root_is_refused_with_the_rule(value: str, words: str) -> None:
    """Wildcards, empty levels, a leading $ and a root without exactly one {station} are
    refused, naming the value."""
    text = refused(f"mqtt.topic_root={value}")
    assert words in text and "mqtt.topic_root" in text


def test_a_station_name_that_is_no_topic_level_is_refused_when_publishing() -> None:
    """A name with / (or + #) would split or break the topic tree: refused with mqtt on, fine
    without."""
    assert "may not contain '/'" in refused("name=line/1", "mqtt.enabled=true")
    assert load_config("default", ["name=line/1"], env={}).name == "line/1"


def test_tls_files_need_tls_and_certificates_come_in_pairs() -> None:
    """A client certificate without its key, or certificate files with TLS off, are refused
    with the fix."""
    assert "go together" in refused("mqtt.tls.enabled=true", "mqtt.tls.cert_file=c.pem")
    assert "mqtt.tls.enabled is false" in refused("mqtt.tls.ca_file=ca.pem")
    assert "retry_max_s" in refused("mqtt.retry_first_s=10", "mqtt.retry_max_s=1")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("collect.table", "Verdicts; DROP", "not a plain PostgreSQL name"),
    ("collect.topics", "[]", "empty list"),
    ("collect.topics", "['acme/#/x']", "not a valid filter"),
    ("collect.topics", "['acme/li+ne/#']", "not a valid filter"),
])
def test_bad_collector_settings_are_refused(key: str, value: str, words: str) -> None:
    """A table name that is not a plain identifier and malformed topic filters are refused."""
    assert words in refused(f"{key}={value}")


def test_topic_problem_accepts_a_plain_name() -> None:
    """A plain topic name has no problem."""
    assert topic_problem("acme/plant1/line/booth/verdict", "t") is None
