"""A PLC's handshake with the station over ZeroMQ with CURVE, as docs/plc.md describes it.

    python plc_zmq_client.py COMMAND_ENDPOINT CLIENT.key_secret SERVER.key PART_ID [--poll]

Sends ``inspect`` for the part and prints the verdict header as JSON. Without ``--poll`` it
waits for the verdict in the reply (``wait: true``); with ``--poll`` it takes the inspection id
at once (``wait: false``) and polls ``result`` until the verdict is there. Exit 0 PASS,
1 FAIL, 2 ERROR, 3 no verdict (refused, no answer).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import zmq
import zmq.auth

TIMEOUT_S = 60.0  # longer than the station's cycle.cycle_timeout_s (30 s)


def ask(endpoint: str, keys: tuple[bytes, bytes, bytes], payload: dict[str, Any],
        timeout_s: float) -> dict[str, Any]:
    """One request on a fresh REQ socket (a REQ socket that missed a reply cannot go on)."""
    public, secret, server_public = keys
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
    try:
        sock.connect(endpoint)
        # send() on a REQ socket blocks while there is no peer (a refused key leaves none)
        if not sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            raise TimeoutError(f"no connection to {endpoint} in {timeout_s:g} s")
        sock.send_json(payload, zmq.NOBLOCK)
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer from {endpoint} in {timeout_s:g} s")
        reply: dict[str, Any] = sock.recv_json()  # type: ignore[assignment]
        return reply
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    poll = "--poll" in argv
    args = [a for a in argv if a != "--poll"]
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 3
    endpoint, client_secret, server_key, part_id = args
    public, secret = zmq.auth.load_certificate(client_secret)
    server_public, _ = zmq.auth.load_certificate(server_key)
    assert secret is not None, f"{client_secret} holds no secret key"
    keys = (public, secret, server_public)
    try:
        reply = ask(endpoint, keys, {"command": "inspect", "part_id": part_id,
                                     "wait": not poll}, TIMEOUT_S)
        if not reply["ok"]:
            print(f"refused: {reply['error']['code']}: {reply['error']['message']}",
                  file=sys.stderr)
            return 3
        header = reply["result"]
        if poll:
            inspection_id = header["inspection_id"]
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                reply = ask(endpoint, keys, {"command": "result",
                                             "inspection_id": inspection_id}, 5.0)
                if not reply["ok"]:
                    print(f"refused: {reply['error']['message']}", file=sys.stderr)
                    return 3
                if reply["result"]["state"] == "done":
                    header = reply["result"]["verdict"]
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no verdict for {inspection_id}")
                time.sleep(0.1)
    except TimeoutError as exc:
        print(f"plc_zmq_client: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(header))
    return {"PASS": 0, "FAIL": 1, "ERROR": 2}.get(header["verdict"], 3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
