"""Fixtures shared by every room's tests: the plant's servers (``tests/servers.py``)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plant import USERS, Running
from tests.servers import (
    Certificates,
    Mosquitto,
    Postgres,
    make_certificates,
    mosquitto_bin,
    need,
    pg_bin,
)

_db_numbers = itertools.count()


def _have_paho() -> bool:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return False
    return True


def _have_psycopg() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA with a server certificate for 127.0.0.1 and a client certificate (CN
    station)."""
    need("openssl", shutil.which("openssl") is not None)
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path: Path, certificates: Certificates) -> Iterator[Mosquitto]:
    """A running Mosquitto of this test's own (users ``USERS``; plain, TLS and client-cert
    listeners), stopped after."""
    need("mosquitto (Debian package mosquitto)", mosquitto_bin() is not None)
    need("paho-mqtt (extra mqtt)", _have_paho())
    m = Mosquitto(tmp_path / "broker", USERS, certificates)
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    """One throw-away PostgreSQL cluster for the session (initdb, fsync off)."""
    need("PostgreSQL (Debian package postgresql)", pg_bin("initdb") is not None)
    need("psycopg (extra collect)", _have_psycopg())
    pg = Postgres()
    pg.start()
    yield pg
    pg.remove()


@pytest.fixture
def database(pg_cluster: Postgres) -> str:
    """The connection string of a new, empty database in the session's cluster."""
    import psycopg

    name = f"t{next(_db_numbers)}"
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_cluster.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Stores with their publisher that the test makes (append); stopped after it."""
    made: list[Running] = []
    yield made
    for r in made:
        r.close()
