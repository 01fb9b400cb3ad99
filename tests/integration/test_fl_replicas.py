"""Two aggregator replicas on one MQTT 5 shared subscription and one PostgreSQL store.

Whole updates are load-balanced between the replicas; the chunks of a large update must still
come together in one place, and every update must be counted exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from store import DesiredTraining, RoundState, Store
from tests.integration.fl_harness import aggregator, fleet, seed_store, wait_for
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration


def test_chunked_updates_across_shared_subscription_replicas(
    pg_store: Store, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: every update is split into several chunks (300-byte limit)
    store = pg_store
    seed_store(store, rounds=2, deadline_s=20.0, min_clients=4, quorum_fraction=1.0)
    # Execute
    with (
        aggregator(store, mosquitto.url, worker_override="agg-a"),
        aggregator(store, mosquitto.url, worker_override="agg-b"),
        fleet(mosquitto.url, tmp_path, 4, chunk_bytes=300) as f,
    ):
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
            90,
            "2 rounds",
        )
    # Assert: both rounds closed with all four clients counted once each
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert [(r.config["round_no"], r.state) for r in rounds] == [
        (1, RoundState.CLOSED),
        (2, RoundState.CLOSED),
    ]
    assert [store.count_updates(r.round_id) for r in rounds] == [4, 4]
    assert all(p.stats.rounds_trained == 2 for p in f.participants)
