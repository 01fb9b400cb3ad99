"""Malformed input gets a clear 400, never a 500: the four inputs a fuzz run found, and a
hypothesis fuzz of every form/JSON field and query string of the API."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import csrf_of, login

HUGE = str(10**30)
CONTROL = {"action": "save", "task": "beat", "strategy": "fedavg", "rounds": 3}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # 1. a time bound beyond 64 bits (the store cannot bind it)
        ("GET", f"/api/patients/p1/predictions?since_ns={HUGE}", None),
        ("GET", f"/api/patients/p1/predictions?until_ns=-{HUGE}", None),
        # 2. a model version beyond 64 bits
        ("GET", f"/api/federation/models/{HUGE}", None),
        # 3. a NUL character in a text field (PostgreSQL refuses it; so does the store)
        ("POST", "/api/login", {"username": "a\x00b", "password": "whatever it is"}),
        ("POST", "/api/patients/p1/tokens", {"days": 1, "label": "clinic\x00"}),
        (
            "POST",
            "/api/labels",
            {"client_id": "p1", "target": "event", "t_ns": 5, "label": "vt_run", "note": "x\x00"},
        ),  # fmt: skip
        # 4. a non-finite JSON number where a whole number is expected
        ("POST", "/api/federation/control", {**CONTROL, "min_clients": float("inf")}),
        # 5. a label at the largest int64 time (the store's range query needs t_ns + 1): was 500
        (
            "POST",
            "/api/labels",
            {"client_id": "p1", "target": "beat", "t_ns": 2**63 - 1, "label": "N"},
        ),  # fmt: skip
        (
            "POST",
            "/api/labels",
            {"client_id": "p1", "target": "event", "t_ns": 2**63 - 1, "label": "other"},
        ),  # fmt: skip
        # 6. a fraction where a whole number is expected: was saved truncated (2.5 epochs -> 2)
        ("POST", "/api/federation/control", {**CONTROL, "local_epochs": 2.5}),
    ],
)
def test_malformed_input_is_400(client: FlaskClient, store, method: str, path: str,
                                body: dict[str, Any] | None) -> None:  # fmt: skip
    # Prepare
    from tests.web.conftest import event

    store.insert_events([event(5)])
    login(client, "root")
    headers = {"X-CSRF-Token": csrf_of(client)}
    # Execute
    if method == "GET":
        resp = client.get(path)
    else:
        resp = client.post(path, json=body, headers=headers)
    # Assert
    assert resp.status_code == 400, resp.data[:300]
    assert resp.get_json()["error"]["code"] == 400


@pytest.mark.parametrize("path", ["/api/login", "/api/labels", "/api/federation/control"])
def test_deeply_nested_json_is_400(client: FlaskClient, path: str) -> None:
    # Prepare: deeper than Python's JSON parser recurses (found by the same fuzz run)
    login(client, "root")
    body = b'{"a":' * 5000 + b"1" + b"}" * 5000
    # Execute
    resp = client.post(path, data=body, content_type="application/json",
                       headers={"X-CSRF-Token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 400


def test_nul_in_a_form_field_is_400(client: FlaskClient) -> None:
    # Execute
    resp = client.post("/login", data={"username": "a\x00b", "password": "whatever it is",
                                       "csrf_token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 400


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.lists(st.integers(), max_size=3),
)
_ROUTES = {
    "/api/labels": ("client_id", "target", "t_ns", "label", "note"),
    "/api/federation/control": (
        "action",
        "task",
        "strategy",
        "rounds",
        "dataset",
        "min_clients",
        "deadline_s",
        "lr",
        "mode",
        "config_json",
    ),  # fmt: skip
    "/api/federation/clients/p1": ("task", "dataset"),
    "/api/patients/p1/tokens": ("days", "label"),
}
_QUERIES = ("/api/patients/p1/predictions", "/api/patients/p1/events", "/api/labels/review")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(sorted(_ROUTES)),
    values=st.lists(_SCALARS, min_size=10, max_size=10),
    query=st.sampled_from(_QUERIES),
    qvalue=st.text(max_size=40),
    as_form=st.booleans(),
)
def test_fuzzed_fields_never_give_a_server_error(client: FlaskClient, route: str, values: list[Any],
                                                 query: str, qvalue: str, as_form: bool) -> None:  # fmt: skip
    # Prepare
    if client.get_cookie("medchain_session") is None or client.get("/api/me").status_code != 200:
        login(client, "root")
    token = csrf_of(client)
    body = dict(zip(_ROUTES[route], values, strict=False))
    # Execute
    if as_form:
        form = {k: v if isinstance(v, str) else repr(v) for k, v in body.items()}
        posted = client.post(route, data=form, headers={"X-CSRF-Token": token})
    else:
        posted = client.post(route, json=body, headers={"X-CSRF-Token": token})
    queried = client.get(query, query_string={"since_ns": qvalue, "limit": qvalue,
                                              "client_id": qvalue, "until_ns": qvalue})  # fmt: skip
    # Assert
    assert posted.status_code < 500, (route, body, posted.data[:200])
    assert queried.status_code < 500, (query, qvalue, queried.data[:200])
