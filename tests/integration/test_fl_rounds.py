"""End-to-end federated rounds: aggregator + clients over a private mosquitto, real stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_aggregator.store import DesiredTraining, RoundState, Store, open_store
from tests.integration.fl_harness import aggregator, fleet, seed_store, wait_for
from tests.support.services import PG_URL, Mosquitto, postgres_available, require_service

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'fl.db'}")
    else:
        if not postgres_available():
            require_service("postgresql", "start PostgreSQL on 127.0.0.1:5432")
        s = open_store(f"{PG_URL}?schema=fl_{uuid.uuid4().hex[:10]}")
    yield s
    s.close()


def test_three_rounds_complete_and_publish_models(
    store: Store, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare
    seed_store(store, rounds=3)
    # Execute
    with aggregator(store, mosquitto.url) as service, fleet(mosquitto.url, tmp_path, 4) as f:
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED, 60, "3 rounds"
        )
    # Assert
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert [r.state for r in rounds] == [RoundState.CLOSED] * 3
    assert [store.count_updates(r.round_id) for r in rounds] == [4, 4, 4]
    assert [r.result_version for r in rounds] == [2, 3, 4]
    assert all(p.stats.rounds_trained == 3 for p in f.participants)
    assert all(
        (tmp_path / "work" / p.client_id / "personal_head.npz").is_file() for p in f.participants
    )
    assert store.round_metrics(rounds[-1].round_id)["received"] == 4
    assert len(service.history) == 3
