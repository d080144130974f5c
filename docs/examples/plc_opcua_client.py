"""A PLC's handshake with the station over OPC UA (asyncua), as docs/plc.md describes it.

    python plc_opcua_client.py ENDPOINT CLIENT_CERT CLIENT_KEY APPLICATION_URI USER PASSWORD PART_ID

Connects with Basic256Sha256 SignAndEncrypt and a user name, waits for Ready, calls
Trigger(PartId), waits until LastVerdict.InspectionId is the id Trigger returned, reads the
verdict in one Read request and prints it as JSON. Exit 0 PASS, 1 FAIL, 2 ERROR, 3 no verdict
(refused, timed out, connection lost).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

NAMESPACE = "urn:inspection-station:opcua"
VERDICT_TIMEOUT_S = 60.0  # longer than the station's cycle.cycle_timeout_s (30 s)
FIELDS = ("InspectionId", "PartId", "Verdict", "VerdictCode", "Reasons", "DefectClasses",
          "DefectCounts", "DefectTotal", "DurationMs", "ModelId")


async def inspect(endpoint: str, cert: str, key: str, app_uri: str, user: str, password: str,
                  part_id: str) -> dict[str, object]:
    client = Client(endpoint, timeout=10)
    client.application_uri = app_uri
    await client.set_security(SecurityPolicyBasic256Sha256, certificate=cert, private_key=key,
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    client.set_user(user)
    client.set_password(password)
    async with client:
        ns = await client.get_namespace_index(NAMESPACE)

        def node(name: str):  # type: ignore[no-untyped-def]
            return client.get_node(ua.NodeId(name, ns))

        deadline = time.monotonic() + VERDICT_TIMEOUT_S
        while not await node("Station.Ready").read_value():
            if time.monotonic() > deadline:
                raise TimeoutError("the station never became Ready")
            await asyncio.sleep(0.05)
        inspection_id = await node("Station").call_method(
            ua.NodeId("Station.Trigger", ns), part_id)
        while await node("Station.LastVerdict.InspectionId").read_value() != inspection_id:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no verdict for {inspection_id} in {VERDICT_TIMEOUT_S} s")
            await asyncio.sleep(0.05)
        values = await client.read_values([node(f"Station.LastVerdict.{f}") for f in FIELDS])
        return dict(zip(FIELDS, values, strict=True))


def main(argv: list[str]) -> int:
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 3
    try:
        verdict = asyncio.run(inspect(*argv))
    except (ua.UaError, OSError, TimeoutError) as exc:
        print(f"plc_opcua_client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(verdict))
    return {1: 0, 2: 1, 3: 2}.get(int(verdict["VerdictCode"]), 3)  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
