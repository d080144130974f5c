"""Config of the OPC UA server for PLCs (optional extra ``opcua``; docs/plc.md)."""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from config._base import Section


def default_application_uri(station_name: str) -> str:
    """The application URI when ``opcua.application_uri`` is not set."""
    return f"urn:inspection-station:{station_name}"


class OpcUaConfig(Section):
    """The OPC UA server: endpoint, certificate, trusted clients, users."""

    enabled: bool = Field(
        False, description="Start the OPC UA server with the daemon (needs the extra `opcua`) [-]"
    )
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/station",
        description="The endpoint URL, advertised exactly as written (clients compare it to "
        "the letter): use the host name the PLC uses [url]",
    )
    listen_host: str | None = Field(
        None,
        description="Address to bind, when it differs from the endpoint's host (0.0.0.0: all "
        "interfaces); null: the endpoint's host [host]",
    )
    application_uri: str | None = Field(
        None,
        description="Application URI, also in the certificate; null: "
        "urn:inspection-station:<name> [uri]",
    )
    certificate: str | None = Field(
        None,
        description="Server certificate (DER), made by `station keys --opcua` [path]",
    )
    private_key: str | None = Field(
        None, description="Private key of the certificate (PEM) [path]"
    )
    trust_dir: str | None = Field(
        None,
        description="Folder of trusted client certificates (DER or PEM); `station keys --opcua "
        "--trust CERT` adds one; empty: no client is trusted [path]",
    )
    users_file: str | None = Field(
        None,
        description="User names and password hashes (JSON), written by `station keys --opcua "
        "--user NAME`; null: no password logins [path]",
    )
    user_certs_dir: str | None = Field(
        None,
        description="Folder of user certificates accepted as X.509 user tokens (`station keys "
        "--opcua --trust-user CERT`); null: none [path]",
    )
    allow_anonymous: bool = Field(
        False, description="Accept sessions without a user (trusted client certificate only) [-]"
    )
    allow_unsecured: bool = Field(
        False,
        description="Also offer SecurityPolicy None; no user token is ever accepted there, "
        "so it serves anonymous sessions only [-]",
    )
    max_sessions: int = Field(
        10, ge=1, le=1000, description="Sessions open at once; more are refused [count]"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(
                f"{value!r} is not an opc.tcp URL with a host; write e.g. "
                "opc.tcp://booth-1.plant.local:4840/station"
            )
        try:
            port = url.port
        except ValueError as exc:
            raise ValueError(f"{value!r}: the port is not a number in 1..65535") from exc
        if port is None:
            raise ValueError(f"{value!r} has no port; write e.g. opc.tcp://HOST:4840/station")
        return value

    @model_validator(mode="after")
    def _complete(self) -> OpcUaConfig:
        if not self.enabled:
            return self
        missing = [k for k in ("certificate", "private_key", "trust_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(
                f"opcua.enabled is true but {', '.join(missing)} is not set; run "
                "`station keys --opcua --dir DIR` and set the paths it prints"
            )
        if not (self.users_file or self.user_certs_dir or self.allow_anonymous):
            raise ValueError(
                "opcua.enabled is true but no one could log in: set users_file or "
                "user_certs_dir (or allow_anonymous: true)"
            )
        return self
