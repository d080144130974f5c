"""Config of the plant's side: the MQTT broker a station publishes to (optional extra ``mqtt``)
and the collector that writes every booth's verdicts into PostgreSQL (extra ``collect``).

docs/fleet.md describes the topic tree, the payloads and the guarantees.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from config._base import Section

#: The placeholder of ``mqtt.topic_root`` that becomes the station's name.
STATION_PLACEHOLDER = "{station}"
#: Characters a station name may not contain when it is a level of the MQTT topic tree.
TOPIC_LEVEL_FORBIDDEN = "/+#"
_PG_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def topic_problem(topic: str, what: str) -> str | None:
    """Why ``topic`` cannot be an MQTT topic name we publish to, or None.

    Rules: 1 to 1024 characters, no wildcard (``+``, ``#``), no empty level (``a//b``, a
    leading or trailing ``/``), no NUL, not starting with ``$`` (reserved for the broker).
    """
    if not topic or len(topic) > 1024:
        return f"{what} {topic!r} must have 1 to 1024 characters"
    if "+" in topic or "#" in topic:
        return f"{what} {topic!r} contains a wildcard (+ or #); a topic name has none"
    if "\x00" in topic:
        return f"{what} {topic!r} contains a NUL character"
    if topic.startswith("$"):
        return f"{what} {topic!r} starts with $, which brokers reserve for themselves"
    if "" in topic.split("/"):
        return f"{what} {topic!r} has an empty level (a leading, trailing or double /)"
    return None


class MqttTls(Section):
    """TLS towards the broker."""

    enabled: bool = Field(
        False, description="Connect with TLS (the broker's TLS listener, usually port 8883) [-]"
    )
    ca_file: str | None = Field(
        None,
        description="PEM file of the CA(s) that signed the broker's certificate; null: the "
        "system's CAs [path]",
    )
    cert_file: str | None = Field(
        None,
        description="PEM client certificate, for brokers that authenticate clients by "
        "certificate (with key_file) [path]",
    )
    key_file: str | None = Field(
        None, description="PEM private key of cert_file (unencrypted) [path]"
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "mqtt.tls.cert_file and mqtt.tls.key_file go together: give both (client "
                "certificate authentication) or neither"
            )
        if (self.cert_file or self.ca_file) and not self.enabled:
            raise ValueError(
                "mqtt.tls names certificate files but mqtt.tls.enabled is false; set it true "
                "(and mqtt.port to the broker's TLS listener, usually 8883)"
            )
        return self


class MqttConfig(Section):
    """The plant's MQTT broker: where, who, which topics, and the outbox's bound."""

    enabled: bool = Field(
        False,
        description="Publish every verdict to the broker (needs the extra: pip install "
        "'inspection-station[mqtt]') [-]",
    )
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Broker [host]")
    port: int = Field(1883, ge=1, le=65535, description="Broker port; TLS usually 8883 [port]")
    client_id: str | None = Field(
        None, max_length=128,
        description="MQTT client id, fixed across connections; null: station-<name> [-]",
    )
    username: str | None = Field(
        None, min_length=1, max_length=256, description="User name; null: anonymous [-]"
    )
    password_file: str | None = Field(
        None,
        description="File holding the password (mode 0600); $STATION_MQTT_PASSWORD overrides "
        "it [path]",
    )
    tls: MqttTls = Field(default_factory=MqttTls, description="TLS [-]")
    topic_root: str = Field(
        "enterprise/site/area/line/{station}",
        description="Unified-Namespace path of this station; {station} is replaced by the "
        "station's name; verdict, status and state go below it [topic]",
    )
    keepalive_s: int = Field(
        30, ge=5, le=3600,
        description="PINGREQ interval; the broker declares the station gone (last will) after "
        "1.5 times it [s]",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, le=120, description="TCP, TLS and CONNACK must complete within this [s]"
    )
    retry_first_s: float = Field(
        0.5, gt=0, le=600, description="First wait before reconnecting; doubled per failure [s]"
    )
    retry_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest wait between reconnection attempts [s]"
    )
    max_inflight: int = Field(
        20, ge=1, le=65535,
        description="Verdicts sent and not yet acknowledged (PUBACK) at once; the broker's "
        "Receive Maximum lowers it [count]",
    )
    max_backlog: int = Field(
        100_000, ge=1, le=100_000_000,
        description="Undelivered verdicts kept in the outbox; at this many, new triggers are "
        "refused (BACKLOG_FULL) until the broker takes them [count]",
    )
    include_maps: bool = Field(
        False,
        description="Put the defect-map PNGs (base64) in each verdict message; they are read "
        "from the store when sent [-]",
    )

    @field_validator("topic_root")
    @classmethod
    def _topic_root(cls, v: str) -> str:
        if v.count(STATION_PLACEHOLDER) != 1:
            raise ValueError(
                f"mqtt.topic_root {v!r} must contain {STATION_PLACEHOLDER} exactly once, so "
                "that every station publishes below its own name, e.g. "
                "acme/plant1/paint/line3/{station}"
            )
        problem = topic_problem(v.replace(STATION_PLACEHOLDER, "x"), "mqtt.topic_root")
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _retry(self) -> MqttConfig:
        if self.retry_max_s < self.retry_first_s:
            raise ValueError(
                f"mqtt.retry_max_s ({self.retry_max_s:g} s) is below mqtt.retry_first_s "
                f"({self.retry_first_s:g} s); make it at least as long"
            )
        return self

    def topic(self, station: str, leaf: str) -> str:
        """``<topic_root with the station's name>/<leaf>``."""
        return f"{self.topic_root.replace(STATION_PLACEHOLDER, station)}/{leaf}"

    def client_id_for(self, station: str) -> str:
        """The fixed client id: ``client_id`` or ``station-<name>``."""
        return self.client_id or f"station-{station}"


class CollectConfig(Section):
    """``station collect``: the plant-side process that writes every booth's verdicts into
    PostgreSQL. It connects to the broker of the ``mqtt`` section (host, port, TLS,
    credentials), with a client id and session of its own."""

    database: str = Field(
        "postgresql:///station",
        description="libpq connection string or URI of the plant's PostgreSQL; the password "
        "from $PGPASSWORD or ~/.pgpass, not here [conninfo]",
    )
    table: str = Field(
        "inspection_verdicts",
        description="Table the verdicts go into (created when missing) [identifier]",
    )
    topics: list[str] | None = Field(
        None,
        description="Topic filters to subscribe to; null: mqtt.topic_root with + for the "
        "station, then /verdict [topic filters]",
    )
    client_id: str = Field(
        "station-collector", min_length=1, max_length=128,
        description="MQTT client id, fixed: the broker keeps the session (and the verdicts "
        "that arrive while the collector is away) under it [-]",
    )
    session_expiry_s: int = Field(
        7 * 86400, ge=60, le=4_294_967_294,
        description="How long the broker keeps the collector's session and queued verdicts "
        "while it is disconnected (the broker may cap it) [s]",
    )
    receive_maximum: int = Field(
        1000, ge=1, le=65535,
        description="Verdicts the broker may send before the collector acknowledges them; "
        "each is acknowledged after its database commit [count]",
    )
    batch_size: int = Field(
        500, ge=1, le=100_000, description="Verdicts written per database transaction [count]"
    )
    batch_wait_s: float = Field(
        0.2, gt=0, le=60, description="Longest wait to fill a batch before writing it [s]"
    )
    stats_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Period of the collector's figures in its log [s]"
    )

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not _PG_IDENT.match(v):
            raise ValueError(
                f"collect.table {v!r} is not a plain PostgreSQL name: lower-case letters, digits "
                "and _, starting with a letter or _, at most 63 characters"
            )
        return v

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("collect.topics is an empty list; give filters or null")
        for f in v:
            if not f or len(f) > 1024 or "\x00" in f:
                raise ValueError(f"collect.topics: {f!r} must have 1 to 1024 characters")
            levels = f.split("/")
            for i, level in enumerate(levels):
                if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
                        "+" in level and level != "+"):
                    raise ValueError(
                        f"collect.topics: {f!r} is not a valid filter: + stands alone in a "
                        "level, # alone in the last one"
                    )
        return v

    def filters(self, mqtt: MqttConfig) -> list[str]:
        """The topic filters to subscribe to."""
        return self.topics or [mqtt.topic("+", "verdict")]
