"""``medchain web``: serve the web app; ``web add-user``; ``web patient-token``.

Heavy imports (flask, paho, the store) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import MedchainError

_LOGGER = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``web`` command and its subcommands."""
    p = subparsers.add_parser(
        "web",
        help="serve the clinician/patient web app",
        description="Serve the MedChain web app (patient view, label review, federation view). "
        "Settings also come from MEDCHAIN_WEB_* environment variables or a [web] TOML table.",
    )
    _common(p, None)
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8080)")
    p.set_defaults(func=serve)
    sub = p.add_subparsers(dest="web_command", metavar="SUBCOMMAND")

    u = sub.add_parser("add-user", help="create a clinician account (password from a prompt)")
    _common(u, argparse.SUPPRESS)
    u.add_argument("username")
    u.add_argument("--role", choices=("clinician", "admin"), default="clinician",
                   help="admin may also change the training controls")  # fmt: skip
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    u.add_argument("--update", action="store_true",
                   help="if the user exists, set this password (role unchanged) instead of failing")  # fmt: skip
    u.set_defaults(func=add_user)

    t = sub.add_parser("patient-token", help="mint a patient's access token (printed once)")
    _common(t, argparse.SUPPRESS)
    t.add_argument("client_id", help="the patient's device/client id")
    t.add_argument("--days", type=float, default=365.0, help="validity in days (0: never expires)")
    t.add_argument("--label", default="", help="a note kept with the token (e.g. who received it)")
    t.add_argument("--url", default="", metavar="BASE",
                   help="also print the patient's link on the web app at BASE "
                        "(e.g. http://127.0.0.1:8080/) and the link as a QR code")  # fmt: skip
    t.set_defaults(func=patient_token)


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--store", dest="store_url", default=default,
                   help="store URL: sqlite:///file.db or postgresql://... (MEDCHAIN_WEB_STORE_URL)")  # fmt: skip
    p.add_argument("--broker", dest="broker_url", default=default,
                   help="MQTT broker mqtt://host:port; '' disables the live feed")  # fmt: skip
    p.add_argument("--config", type=Path, default=default, help="TOML settings file ([web] table)")


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from web.settings import load_web_settings

    overrides = {k: getattr(args, k, None) for k in ("store_url", "broker_url", "host", "port")}
    return load_web_settings(env, getattr(args, "config", None), overrides)


def serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the app under gunicorn (one process, ``threads`` threads) until SIGINT/SIGTERM.

    Settings, the secret key, the limiter storage and the store (migrations included) are
    checked here first, so a mistake is one clear line instead of a worker that fails to boot.
    """
    from store.factory import open_store
    from web import limits, security, serve
    from web.app import create_app

    settings = _settings(args, env)
    if settings.secret_key:
        security.check_secret_key(settings.secret_key)
    limits.check_storage_uri(settings.ratelimit_storage_uri)
    store = open_store(settings.store_url)
    store_url = store.url
    store.close()
    print(f"MedChain web on http://{settings.host}:{settings.port}/ "
          f"(store {store_url}, broker {settings.broker_url or 'none'}; "
          f"gunicorn, {settings.threads} threads)", flush=True)  # fmt: skip
    serve.run(lambda: create_app(settings), settings)
    return 0


def add_user(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Create a clinician account."""
    from store.factory import open_store
    from web.security import hash_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise MedchainError("the passwords differ")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise MedchainError(str(exc)) from exc
    store = open_store(_settings(args, env).store_url)
    try:
        if args.update and store.get_user(args.username) is not None:
            store.set_user_password(args.username, password_hash)
            store.audit("cli", "set_password", target=args.username)
            print(f"user {args.username}: password updated")
            return 0
        store.create_user(args.username, password_hash, role=args.role)
        store.audit("cli", "add_user", target=args.username, details={"role": args.role})
    finally:
        store.close()
    print(f"user {args.username} ({args.role}) created")
    return 0


def patient_token(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Mint an access token for one patient; print it once (only its hash is stored), and with
    ``--url`` the link that opens it and that link as a QR code."""
    from common.protocol import ProtocolError, check_client_id
    from store.factory import open_store
    from web.patient_link import PatientLink, login_url
    from web.security import new_patient_token

    try:
        check_client_id(args.client_id)
    except ProtocolError as exc:
        raise MedchainError(str(exc)) from exc
    if args.days < 0:
        raise MedchainError("--days must be >= 0")
    token, token_hash = new_patient_token()
    expires = time.time() + args.days * 86400 if args.days else None
    store = open_store(_settings(args, env).store_url)
    try:
        if store.get_client(args.client_id) is None:
            store.register_client(args.client_id)
        store.create_patient_token(token_hash, args.client_id, expires_at=expires, label=args.label)
        store.audit("cli", "patient_token", target=args.client_id, details={"label": args.label})
    finally:
        store.close()
    print(token)
    print(f"(access code for {args.client_id}: enter it at /patient/login; "
          f"or send 'Authorization: Bearer <token>' to the JSON API)", file=sys.stderr)  # fmt: skip
    if args.url:
        link = PatientLink(args.client_id, token, login_url(args.url, token))
        print(link.qr_terminal(), end="")
        print(link.url)
    return 0
