"""Config of the ZeroMQ sockets, and of CURVE, their authentication and encryption."""

from __future__ import annotations

from pydantic import Field, model_validator

from config._base import Section

#: The roles a client key may have, and what each may do (docs/plc.md, docs/messaging.md).
ROLES = ("plc", "hmi", "admin")


class CurveConfig(Section):
    """CURVE (ZeroMQ's public-key encryption and authentication) on both sockets.

    Off, the sockets take any client (the loopback demo). On, a client must hold a key pair
    whose public key is in one of the role folders; ``station keys`` makes the files.
    """

    enabled: bool = Field(
        False, description="Encrypt both sockets and accept only the keys listed below [-]"
    )
    server_secret_key: str | None = Field(
        None,
        description="The station's secret key file (zmq.auth certificate, `station keys` "
        "writes server.key_secret); its public half server.key lies beside it [path]",
    )
    plc_keys: str | None = Field(
        None,
        description="Folder of public key files (*.key) of PLC clients: inspect, result, "
        "status, ping [path]",
    )
    hmi_keys: str | None = Field(
        None,
        description="Folder of public key files of HMI clients: subscribe to the publish "
        "socket, status, history, ping [path]",
    )
    admin_keys: str | None = Field(
        None,
        description="Folder of public key files of administrators: every command, reload "
        "included, and subscribe [path]",
    )
    client_secret_key: str | None = Field(
        None,
        description="The secret key file the `station` command line (status, trigger, "
        "watch, reload, result) uses to reach a CURVE station; null: none [path]",
    )

    @model_validator(mode="after")
    def _complete(self) -> CurveConfig:
        if not self.enabled:
            return self
        if not self.server_secret_key:
            raise ValueError(
                "messaging.curve.enabled is true but server_secret_key is not set; run "
                "`station keys --dir DIR` and set it to DIR/server.key_secret"
            )
        if not (self.plc_keys or self.hmi_keys or self.admin_keys):
            raise ValueError(
                "messaging.curve.enabled is true but no role folder is set (plc_keys, "
                "hmi_keys, admin_keys): no client could connect"
            )
        return self


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
    curve: CurveConfig = Field(
        default_factory=CurveConfig, description="CURVE authentication and encryption [-]"
    )
