"""The line's side as a user runs it: `station run` with CURVE and OPC UA on (keys from
`station keys`), the station commands with the client key from the config, and the worked
clients of docs/plc.md (asyncua, pyzmq with CURVE, and node-opcua, a second OPC UA stack)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from station.keys import Layout
from station.messaging.curve import ClientCurve, load_key_pair, load_public_key
from tests.e2e.conftest import RunningStation, free_port, start_station

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
INTEROP = ROOT / "tests" / "interop"
PASSWORD = "plc-password-1"
EXIT = {"PASS": 0, "FAIL": 1, "ERROR": 2}


def station_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@dataclass
class Booth:
    station: RunningStation
    layout: Layout
    overrides: list[str]
    opcua: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return station_cli(*args, *self.overrides)


@pytest.fixture(scope="module")
def booth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booth]:
    """Keys made with `station keys` as docs/plc.md says; the station started with them."""
    tmp = tmp_path_factory.mktemp("line-e2e")
    layout = Layout(tmp / "keys")
    d = str(layout.root)
    for args in (["keys", "--dir", d, "--client", "plc1", "--role", "plc"],
                 ["keys", "--dir", d, "--client", "ops", "--role", "admin"],
                 ["keys", "--dir", d, "--opcua", "--set", "name=line-e2e",
                  "--host", "127.0.0.1"],
                 ["keys", "--dir", d, "--opcua", "--client", "plc1"]):
        done = station_cli(*args)
        assert done.returncode == 0, done.stderr
    done = station_cli("keys", "--dir", d, "--opcua", "--user", "plc1", "--password-stdin",
                       stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    opcua = f"opc.tcp://127.0.0.1:{free_port()}/station"
    curve = [
        "messaging.curve.enabled=true",
        f"messaging.curve.server_secret_key={layout.server_secret}",
        f"messaging.curve.plc_keys={layout.role_dir('plc')}",
        f"messaging.curve.hmi_keys={layout.role_dir('hmi')}",
        f"messaging.curve.admin_keys={layout.role_dir('admin')}",
        f"messaging.curve.client_secret_key={layout.clients / 'ops.key_secret'}",
    ]
    opc = [
        "name=line-e2e", "opcua.enabled=true", f"opcua.endpoint={opcua}",
        f"opcua.certificate={layout.opcua_cert}", f"opcua.private_key={layout.opcua_key}",
        f"opcua.trust_dir={layout.opcua_trusted}", f"opcua.users_file={layout.opcua_users}",
    ]
    extra = [x for kv in curve + opc for x in ("--set", kv)]
    keys = ClientCurve(load_key_pair(layout.clients / "ops.key_secret"),
                       load_public_key(layout.server_public))
    station = start_station(tmp, extra=extra, curve=keys)
    overrides = ["--set", f"messaging.command={station.command}",
                 "--set", f"messaging.publish={station.publish}", *extra]
    yield Booth(station, layout, overrides, opcua)
    code, _ = station.stop()
    assert code == 0, station.log()


def test_station_commands_with_the_configured_key(booth: Booth) -> None:
    """status, trigger, result and reload reach the CURVE station with the key named by
    messaging.curve.client_secret_key."""
    done = booth.cli("status")
    assert done.returncode == 0, done.stderr
    assert "line-e2e" in done.stdout
    done = booth.cli("trigger", "--part-id", "E-1", "--json")
    assert done.returncode in (0, 1), done.stderr
    header = json.loads(done.stdout)
    done = booth.cli("result", header["inspection_id"], "--json")
    assert done.returncode == EXIT[header["verdict"]], done.stderr
    assert json.loads(done.stdout)["verdict"]["inspection_id"] == header["inspection_id"]
    done = booth.cli("result", "20990101T000000000-0000")
    assert done.returncode == 4 and "NOT_FOUND" in done.stderr
    done = booth.cli("reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reloaded: model")


def test_zeromq_worked_client(booth: Booth) -> None:
    """docs/examples/plc_zmq_client.py, both ways: wait for the verdict, and poll result."""
    for extra in ([], ["--poll"]):
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "plc_zmq_client.py"), booth.station.command,
             str(booth.layout.clients / "plc1.key_secret"), str(booth.layout.server_public),
             "Z-1", *extra], capture_output=True, text=True, timeout=120)
        header = json.loads(done.stdout)
        assert done.returncode == EXIT[header["verdict"]], done.stderr
        assert header["part_id"] == "Z-1"


def test_opcua_worked_client(booth: Booth) -> None:
    """docs/examples/plc_opcua_client.py (asyncua) triggers a part and reads its verdict."""
    lay = booth.layout
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "plc_opcua_client.py"), booth.opcua,
         str(lay.opcua_clients / "plc1-cert.der"), str(lay.opcua_clients / "plc1-key.pem"),
         "urn:inspection-station:client:plc1", "plc1", PASSWORD, "O-1"],
        capture_output=True, text=True, timeout=120)
    verdict = json.loads(done.stdout)
    assert done.returncode == EXIT[verdict["Verdict"]], done.stderr
    assert verdict["PartId"] == "O-1"


def node_client_dir(tmp_path: Path) -> Path:
    """node-opcua installed from the lock file (once), beside a copy of the example."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("STATION_REQUIRE_NODE") == "1":  # CI: .ci/run installs them
            pytest.fail("STATION_REQUIRE_NODE=1 but node or npm is not on PATH")
        pytest.skip("node and npm are not installed: the node-opcua interoperability check "
                    "needs them (apt-get install nodejs npm)")
    if not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    (tmp_path / "node_modules").symlink_to(INTEROP / "node_modules")
    shutil.copy(EXAMPLES / "plc_opcua_client.mjs", tmp_path)
    return tmp_path


def test_node_opcua_client_interoperates(booth: Booth, tmp_path: Path) -> None:
    """A second OPC UA stack (node-opcua): Basic256Sha256 SignAndEncrypt, user name, the
    endpoint URL matched to the letter, Trigger, and the verdict read back; a wrong password
    gets no session."""
    run_dir = node_client_dir(tmp_path)
    lay = booth.layout
    args = ["node", "plc_opcua_client.mjs", booth.opcua,
            str(lay.opcua_clients / "plc1-cert.pem"), str(lay.opcua_clients / "plc1-key.pem"),
            "urn:inspection-station:client:plc1", "plc1"]
    done = subprocess.run([*args, PASSWORD, "N-1"], cwd=run_dir, capture_output=True,
                          text=True, timeout=120)
    # node-opcua may print its own notices on stdout; the verdict is the one JSON line
    lines = [x for x in done.stdout.splitlines() if x.startswith('{"inspectionId"')]
    assert len(lines) == 1, (done.stdout, done.stderr)
    verdict = json.loads(lines[0])
    assert done.returncode == EXIT[verdict["verdict"]], done.stderr
    assert verdict["partId"] == "N-1"
    stored = booth.cli("result", verdict["inspectionId"], "--json")
    assert json.loads(stored.stdout)["verdict"]["verdict"] == verdict["verdict"]
    done = subprocess.run([*args, "wrong-password", "N-2"], cwd=run_dir, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert '"inspectionId"' not in done.stdout
