"""Log-in throttling with Flask-Limiter: per account and per address, counted atomically at the
start of each attempt (parallel guesses), in a storage several workers can share (Redis), with
the client address taken from a configured number of trusted proxies."""

from __future__ import annotations

import secrets
import threading
from collections import Counter

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from store.base import Store
from tests.support.services import require_service
from tests.web.conftest import PASSWORD, FakeFeed, csrf_of
from web.app import create_app
from web.settings import WebSettings


def _api_login(client: FlaskClient, username: str, password: str, addr: str = "127.0.0.1",
               forwarded: str | None = None) -> int:  # fmt: skip
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    resp = client.post("/api/login", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": addr}, headers=headers)  # fmt: skip
    return resp.status_code


def test_fifty_parallel_guesses_are_throttled(app: Flask, store: Store) -> None:
    # Prepare: a real scrypt hash (~0.1 s), so that every guess is in flight at once
    store.create_user("carol", generate_password_hash(PASSWORD), role="clinician")
    barrier = threading.Barrier(50)
    codes: list[int] = []

    def guess(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        codes.append(_api_login(client, "carol", f"guess number {i}"))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(50)]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Assert: at most the per-account allowance reached the password check
    counts = Counter(codes)
    assert counts[401] <= 5 and counts[429] >= 45, counts


def test_rotating_addresses_do_not_escape_the_account_limit(client: FlaskClient) -> None:
    # Execute
    codes = [_api_login(client, "alice", "wrong password!", addr=f"10.0.{i}.1") for i in range(12)]
    # Assert
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    assert _api_login(client, "alice", PASSWORD, addr="10.9.9.9") == 429  # even the right one


def test_padding_the_username_does_not_escape_the_account_limit(client: FlaskClient) -> None:
    # " alice", "alice  " ... log in as alice (the log-in strips the name) but were counted as
    # other accounts: with rotating addresses, no limit on guesses against alice at all
    codes = [_api_login(client, " " * (i % 3) + "alice" + " " * i, "wrong password!",
                        addr=f"10.1.{i}.1") for i in range(12)]  # fmt: skip
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}


def test_one_address_cannot_spray_many_accounts(client: FlaskClient) -> None:
    # Execute
    codes = [_api_login(client, f"user{i}", "wrong password!") for i in range(25)]
    # Assert
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}


def test_the_form_login_is_throttled_with_a_clear_page(client: FlaskClient) -> None:
    # Prepare
    token = csrf_of(client)
    for _ in range(5):
        client.post("/login", data={"username": "alice", "password": "nope nope nope",
                                    "csrf_token": token})  # fmt: skip
    # Execute
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": token})  # fmt: skip
    # Assert
    assert resp.status_code == 429 and b"Too many log-in attempts" in resp.data


def test_patient_code_guessing_is_throttled_per_address(client: FlaskClient) -> None:
    # Prepare
    token = csrf_of(client)
    # Execute
    codes = [client.post("/patient/login", data={"token": f"guess-{i}", "csrf_token": token},
                         environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code
             for i in range(25)]  # fmt: skip
    # Assert
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}


def test_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy(client: FlaskClient) -> None:
    # Execute: an attacker rotates X-Forwarded-For, but no proxy is configured
    codes = [_api_login(client, f"user{i}", "wrong password!", forwarded=f"192.0.2.{i}")
             for i in range(25)]  # fmt: skip
    # Assert
    assert set(codes[20:]) == {429}


def test_behind_a_trusted_proxy_each_client_has_its_own_address_limit(store: Store) -> None:
    # Prepare: the documented TLS proxy on 10.0.0.2 forwards two clients
    settings = WebSettings(secret_key="k" + secrets.token_hex(20), broker_url="", trusted_proxies=1)
    client = create_app(settings, store=store, feed=FakeFeed()).test_client()
    for i in range(20):
        _api_login(client, f"user{i}", "wrong password!", addr="10.0.0.2", forwarded="198.51.100.7")
    # Execute
    blocked = _api_login(
        client, "userX", "wrong password!", addr="10.0.0.2", forwarded="198.51.100.7"
    )
    other = _api_login(client, "userY", "wrong password!", addr="10.0.0.2", forwarded="203.0.113.9")
    # Assert
    assert blocked == 429 and other == 401


def test_workers_share_the_limit_through_redis(store: Store) -> None:
    # Prepare: two app instances (two worker processes) on one Redis
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means: no Redis here
        require_service("redis", "start redis-server on 127.0.0.1:6379")
    settings = WebSettings(secret_key="k" + secrets.token_hex(20), broker_url="",
                           ratelimit_storage_uri="redis://127.0.0.1:6379/0")  # fmt: skip
    workers = [create_app(settings, store=store, feed=FakeFeed()).test_client() for _ in range(2)]
    user = f"shared-{secrets.token_hex(6)}"
    addr = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    # Execute
    codes = [_api_login(workers[i % 2], user, "wrong password!", addr=addr) for i in range(8)]
    # Assert
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}


@pytest.mark.parametrize("uri", ["bogus://x", "no scheme"])
def test_unknown_storage_is_a_config_error(store: Store, uri: str) -> None:
    from common.errors import ConfigError

    settings = WebSettings(secret_key="k" + secrets.token_hex(20), broker_url="",
                           ratelimit_storage_uri=uri)  # fmt: skip
    with pytest.raises(ConfigError, match="ratelimit_storage_uri"):
        create_app(settings, store=store, feed=FakeFeed())
