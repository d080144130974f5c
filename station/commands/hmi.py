"""``station hmi``: the operator's web screen, in its own process (optional extra ``hmi``)."""

from __future__ import annotations

import argparse
import socket
from types import FrameType

from config.errors import ConfigError
from station.commands._common import (
    add_config_options,
    add_data_dir_option,
    config_from_args,
    data_dir,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station hmi``."""
    p = sub.add_parser(
        "hmi", help="serve the operator's web screen",
        description="Serve the operator's screen (Live, Shift, History, Health) over HTTP on "
        "hmi.host:hmi.port. It follows the station on messaging.publish, reads the store in "
        "the data directory read-only and triggers test parts on messaging.command, so it may "
        "run beside the daemon or on another machine. Actions need the token "
        "($STATION_HMI_TOKEN or hmi.token_file). Needs the extra: pip install "
        "'inspection-station[hmi]'. See docs/hmi.md.",
    )
    add_config_options(p)
    add_data_dir_option(p)
    p.add_argument("--host", help="listen address (default: hmi.host)")
    p.add_argument("--port", type=int, help="listen port (default: hmi.port)")
    p.set_defaults(func=run)


def check_listen(host: str, port: int) -> None:
    """Refuse, with the keys to change, an address this machine cannot listen on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"hmi.host {host!r}: not an address here ({exc.strerror}); use "
                          "127.0.0.1, 0.0.0.0 or an address of this machine") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            raise ConfigError(
                f"hmi.port {port} on {host}: cannot listen ({exc.strerror}); is another HMI "
                "running? Choose a free port with --port or --set hmi.port=PORT"
            ) from None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    from station.logs import setup_logging

    try:
        import uvicorn

        from station.hmi.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"station hmi needs the optional extra 'hmi' ({exc.name} is missing): "
            "pip install 'inspection-station[hmi]'"
        ) from None
    from station.hmi.auth import load_token

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    host = args.host or cfg.hmi.host
    port = args.port if args.port is not None else cfg.hmi.port
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a TCP port is 1 to 65535")
    check_listen(host, port)
    token = load_token(cfg.resolve(cfg.hmi.token_file) if cfg.hmi.token_file else None)
    app = create_app(cfg, data_dir(args, cfg), token)
    import structlog

    structlog.get_logger(__name__).info(
        "hmi serving", url=f"http://{host}:{port}/live", actions="on" if token else "off",
        publish=cfg.messaging.publish)
    hmi = app.state.hmi

    class Server(uvicorn.Server):
        """SIGTERM/SIGINT: close the event streams, stop, exit 0 (as `station run` does)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            hmi.closing.set()
            self.force_exit = self.should_exit  # a second signal: no more waiting
            self.should_exit = True

    server = Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=5, server_header=False, lifespan="on",
    ))
    server.run()
    return 0 if server.started else 1
