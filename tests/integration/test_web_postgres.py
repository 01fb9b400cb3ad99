"""The web app on the production backend: PostgresStore in a private schema."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from store.base import Store
from store.records import DesiredTraining, LabelState
from tests.web.conftest import T0_NS, FakeFeed, beat, event
from web.app import create_app
from web.settings import WebSettings

pytestmark = pytest.mark.integration
PASSWORD = "postgres web test"


def test_pages_labels_and_controls_on_postgres(pg_store: Store) -> None:
    # Prepare
    pg_store.create_user(
        "root", generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"), role="admin"
    )
    pg_store.register_client("p1", task="beat")
    pg_store.insert_predictions([beat(T0_NS, "V")])
    pg_store.insert_events([event(T0_NS + 10**9)])
    feed = FakeFeed()
    client = create_app(
        WebSettings(secret_key="pg-key-" + "9f3b7d1c5a2e4f6b8d0c" * 2, broker_url=""),
        store=pg_store,
        feed=feed,
    ).test_client()
    token = client.post("/api/login", json={"username": "root", "password": PASSWORD}).get_json()[
        "csrf_token"
    ]
    headers = {"X-CSRF-Token": token}
    # Execute
    pages = {
        p: client.get(p).status_code
        for p in ("/patients", "/patients/p1", "/labels", "/federation")
    }
    review = client.get("/api/labels/review").get_json()["items"]
    labelled = client.post("/api/labels", json={"client_id": "p1", "target": "beat", "t_ns": T0_NS, "label": "S"},
                           headers=headers)  # fmt: skip
    control = client.post("/api/federation/control", json={"action": "start", "task": "beat", "strategy": "fedavg",
                                                           "rounds": 4, "min_quorum": 2}, headers=headers)  # fmt: skip
    # Assert
    assert set(pages.values()) == {200}
    assert [(i["target"], i["label"]) for i in review] == [("event", "vt_run"), ("beat", "V")]
    assert labelled.status_code == 201 and labelled.get_json()["label"]["state"] == "delivered"
    assert [lb.state for lb in pg_store.list_labels("p1")] == [LabelState.DELIVERED] and len(
        feed.published
    ) == 1
    ctl = pg_store.get_training_control()
    assert (
        control.status_code == 200
        and ctl.desired is DesiredTraining.RUNNING
        and ctl.config == {"min_quorum": 2}
    )
