"""Hundreds of devices, each with its own MQTT connection, through the real broker and the
aggregator's service (the bench runs 10,000: bench/fl_scale.py --grid mqtt)."""

from __future__ import annotations

import pytest

from store import Store
from tests.support.mqtt_fleet import run_rounds_over_broker

pytestmark = pytest.mark.integration


def test_rounds_of_300_connected_devices_count_every_update(
    pg_store_url: tuple[Store, str],
) -> None:
    # Prepare
    store, _ = pg_store_url
    # Execute
    out = run_rounds_over_broker(store, 300, 2, processes=1, timeout_s=240)  # > one batch
    # Assert: every device online, both rounds closed with every update, nothing resent
    assert [r["state"] for r in out["rounds"]] == ["closed", "closed"]
    assert [r["updates"] for r in out["rounds"]] == [300, 300]
    fleets = out["fleets"]
    assert sum(f["count"] for f in fleets) == 300
    assert sum(f["connects"] for f in fleets) == 300  # no session lost on the way
    assert sum(f["updates_sent"] for f in fleets) == 600
    assert 0 < out["broker_kb_per_device"] < 1000
    assert store.count_updates(store.list_rounds(task="beat", limit=1)[0].round_id) == 300
