"""``station keys``: CURVE key pairs and OPC UA certificates, trust and users."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from urllib.parse import urlparse

from config import StationConfig
from config.errors import ConfigError
from config.opcua import default_application_uri
from station.commands._common import add_config_options, config_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station keys``."""
    p = sub.add_parser(
        "keys", help="make CURVE keys and OPC UA certificates",
        description="Without options: make the station's CURVE key pair in DIR (if missing) "
        "and the role folders DIR/plc, DIR/hmi, DIR/admin. --client NAME --role ROLE: a "
        "client's key pair (hand DIR/clients/NAME.key_secret to the client) whose public key "
        "goes into the role folder. --opcua: the OPC UA server certificate; with --trust CERT "
        "a client certificate is trusted, with --user NAME a user is added (password from "
        "stdin or a prompt), with --client NAME a client certificate is made and trusted. "
        "Prints the config keys to set. Nothing is overwritten without --force.",
    )
    add_config_options(p)
    p.add_argument("--dir", metavar="DIR",
                   help="key folder (default: ./keys)")
    p.add_argument("--client", metavar="NAME", help="make a client key pair / certificate")
    p.add_argument("--role", choices=["plc", "hmi", "admin"],
                   help="the client's role (CURVE; with --client)")
    p.add_argument("--opcua", action="store_true", help="OPC UA certificates instead of CURVE")
    p.add_argument("--trust", metavar="CERT", help="with --opcua: trust this client certificate")
    p.add_argument("--trust-user", metavar="CERT",
                   help="with --opcua: accept this certificate as an X.509 user token")
    p.add_argument("--user", metavar="NAME", help="with --opcua: add or replace a user")
    p.add_argument("--password-stdin", action="store_true",
                   help="with --user: read the password from the first line of stdin")
    p.add_argument("--client-uri", metavar="URI",
                   help="with --opcua --client: the client's application URI "
                   "(default urn:inspection-station:client:NAME)")
    p.add_argument("--host", action="append", default=[], metavar="NAME",
                   help="with --opcua: a host name or IP for the certificate (repeatable; "
                   "default: the endpoint's host, this host's names, localhost, 127.0.0.1)")
    p.add_argument("--days", type=int, default=3650, help="certificate lifetime (default 3650)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make what the options ask for and print the config keys."""
    from station.keys import Layout

    cfg = config_from_args(args)
    layout = Layout(Path(args.dir or "keys").expanduser().resolve())
    if args.opcua:
        return _opcua(args, cfg, layout)
    if args.trust or args.trust_user or args.user:
        raise ConfigError("--trust, --trust-user and --user go with --opcua")
    return _curve(args, layout)


def _curve(args: argparse.Namespace, layout: object) -> int:
    from station.keys import Layout, client_pair, server_pair

    assert isinstance(layout, Layout)
    secret, made = server_pair(layout, force=args.force and not args.client)
    print(f"{'made' if made else 'kept'} the station's key pair: {secret}")
    if args.client:
        if not args.role:
            raise ConfigError("--client NAME needs --role plc, hmi or admin")
        client_secret, public = client_pair(layout, args.client, args.role, force=args.force)
        print(f"made client {args.client!r} ({args.role}): give {client_secret} to the client; "
              f"its public key is in {public}")
        print(f"the client also needs the station's public key: {layout.server_public}")
    print("\nconfig (messaging.curve):")
    print("  curve:\n    enabled: true")
    print(f"    server_secret_key: {layout.server_secret}")
    for role in ("plc", "hmi", "admin"):
        print(f"    {role}_keys: {layout.role_dir(role)}")
    if args.client and args.role == "admin":
        print(f"    client_secret_key: {layout.clients / (args.client + '.key_secret')}"
              "   # for the station command line")
    return 0


def _opcua(args: argparse.Namespace, cfg: StationConfig, layout: object) -> int:
    from station.keys import (
        Layout,
        certificate_uri,
        default_hostnames,
        make_opcua_certificate,
        read_certificate,
        set_user,
        trust_certificate,
        write_pem_copy,
    )

    assert isinstance(layout, Layout)
    o = cfg.opcua
    explicit_dir = args.dir is not None
    cert_path = layout.opcua_cert if explicit_dir or not o.certificate else cfg.resolve(
        o.certificate)
    key_path = layout.opcua_key if explicit_dir or not o.private_key else cfg.resolve(
        o.private_key)
    trusted = layout.opcua_trusted if explicit_dir or not o.trust_dir else cfg.resolve(
        o.trust_dir)
    user_certs = layout.opcua_user_certs if explicit_dir or not o.user_certs_dir else \
        cfg.resolve(o.user_certs_dir)
    users = layout.opcua_users if explicit_dir or not o.users_file else cfg.resolve(o.users_file)
    uri = o.application_uri or default_application_uri(cfg.name)
    did = False
    if args.trust:
        target = trust_certificate(Path(args.trust), trusted)
        print(f"trusted client certificate {args.trust} -> {target} "
              f"(application URI {certificate_uri(read_certificate(target))})")
        did = True
    if args.trust_user:
        target = trust_certificate(Path(args.trust_user), user_certs)
        print(f"user certificate {args.trust_user} -> {target}")
        did = True
    if args.user:
        password = _password(args)
        new = set_user(users, args.user, password)
        print(f"{'added' if new else 'replaced'} user {args.user!r} in {users}")
        did = True
    if args.client:
        from station.keys import check_name

        name = check_name(args.client, "--client")
        client_uri = args.client_uri or f"urn:inspection-station:client:{name}"
        ccert = layout.opcua_clients / f"{name}-cert.der"
        ckey = layout.opcua_clients / f"{name}-key.pem"
        make_opcua_certificate(ccert, ckey, client_uri, args.host or ["localhost"], name,
                               client=True, days=args.days, force=args.force)
        target = trust_certificate(ccert, trusted)
        pem = write_pem_copy(ccert)
        print(f"made client certificate {ccert} (PEM: {pem}; key {ckey}, application URI "
              f"{client_uri}); trusted as {target}")
        did = True
    if cert_path.exists() and not (args.force and not did):
        print(f"kept the server certificate {cert_path} (application URI "
              f"{certificate_uri(read_certificate(cert_path))})"
              + ("" if did else "; --force replaces it"))
    else:
        host = urlparse(o.endpoint).hostname
        hosts = args.host or default_hostnames(host)
        make_opcua_certificate(cert_path, key_path, uri, hosts, f"{cfg.name} OPC UA server",
                               days=args.days, force=args.force)
        print(f"made the server certificate {cert_path} for {uri}, hosts {', '.join(hosts)}")
    trusted.mkdir(parents=True, exist_ok=True)
    print("\nconfig (opcua):")
    print(f"  opcua:\n    enabled: true\n    endpoint: {o.endpoint}")
    print(f"    application_uri: {uri}")
    print(f"    certificate: {cert_path}\n    private_key: {key_path}\n    trust_dir: {trusted}")
    print(f"    users_file: {users}")
    if user_certs.exists():
        print(f"    user_certs_dir: {user_certs}")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass(f"password for {args.user}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ; nothing changed")
    return first
