"""Config of the ZeroMQ sockets."""

from __future__ import annotations

from pydantic import Field

from config._base import Section


class MessagingConfig(Section):
    """ZeroMQ endpoints and limits."""

    publish: str = Field(
        "tcp://127.0.0.1:5560", description="PUB socket: verdict, status, event [endpoint]"
    )
    command: str = Field(
        "tcp://127.0.0.1:5561", description="ROUTER socket for requests [endpoint]"
    )
    max_request_bytes: int = Field(
        65536, ge=256, le=16 * 1024 * 1024, description="Larger requests are refused [bytes]"
    )
    send_hwm: int = Field(
        100, ge=1, le=100_000, description="Messages queued per subscriber before dropping [count]"
    )
    handshake_timeout_s: float = Field(
        5.0, ge=0.1, le=300,
        description="A connection that has not completed the ZeroMQ handshake this long after "
        "connecting is closed (ZMQ_HANDSHAKE_IVL) [s]",
    )
    heartbeat_interval_s: float = Field(
        5.0, ge=0.1, le=3600,
        description="The command and publish sockets ping every peer this often "
        "(ZMQ_HEARTBEAT_IVL) [s]",
    )
    heartbeat_timeout_s: float = Field(
        15.0, ge=0.1, le=3600,
        description="A peer that has sent nothing, not even a heartbeat, for this long is "
        "disconnected (ZMQ_HEARTBEAT_TIMEOUT; also sent to peers as ZMQ_HEARTBEAT_TTL) [s]",
    )
    status_interval_s: float = Field(
        5.0, gt=0, le=3600, description="Period of the published status message [s]"
    )
