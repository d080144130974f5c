"""The plant's side (docs/fleet.md): the booth's outbox published to the plant's MQTT broker
(``publisher``), and ``station collect``, which writes every booth's verdicts into the plant's
PostgreSQL (``collector``, ``database``). ``link`` is the one connection to the broker both
use. Needs the optional extras ``mqtt`` (paho-mqtt) and, for the collector, ``collect``
(psycopg); nothing else in the station imports this package unless ``mqtt.enabled``."""

from __future__ import annotations

from config import StationConfig
from config.errors import ConfigError


def extra_missing(exc: ImportError) -> ConfigError:
    """The error for ``mqtt.enabled`` without the optional extra ``mqtt`` installed."""
    return ConfigError(
        f"mqtt.enabled is true but the optional extra 'mqtt' is missing ({exc.name}): "
        "pip install 'inspection-station[mqtt]', or set mqtt.enabled: false"
    )


def require_mqtt(cfg: StationConfig) -> None:
    """Refuse, before anything slow starts, an ``mqtt`` section that cannot work: the extra
    missing, the password or certificate files unreadable (``ConfigError``)."""
    try:
        from station.plant.link import check_settings
    except ImportError as exc:
        raise extra_missing(exc) from None
    check_settings(cfg)
