"""Synthetic devices at scale through the service: every invited device's update counts, the
rounds close with new releases, and the report splits devices' from aggregator's time."""

from __future__ import annotations

import time

from cloud_aggregator.scale import HEAD_SHAPES, SyntheticDevice, run_rounds
from common import fl_protocol as fl
from common import protocol as proto
from tests.store.conftest import Backend


def test_rounds_of_synthetic_devices_close_with_every_update(backend: Backend) -> None:
    # Prepare
    store = backend.open(clock=time.time)  # the service's clock
    # Execute
    out = run_rounds(store, 300, 2, fraction=0.5, max_seconds=120)
    # Assert: half the devices invited per round (no over-selection), all of them counted
    assert [r["state"] for r in out["rounds"]] == ["closed", "closed"]
    assert [r["invited"] for r in out["rounds"]] == [150, 150]
    assert [r["updates"] for r in out["rounds"]] == [150, 150]
    assert sorted(m.version for m in store.list_models()) == [1, 2, 3]
    for r in out["rounds"]:
        assert 0 <= r["devices_s"] <= r["wall_s"] and r["aggregator_updates_per_s"] > 0
    assert out["peak_rss_mb"] > 0


def test_a_synthetic_device_answers_once_and_only_when_invited() -> None:
    # Prepare
    dev = SyntheticDevice("sim-1", HEAD_SHAPES)
    rule = fl.Invitation.covering("s", ["sim-1"])
    ann = fl.RoundAnnouncement("4", "g1", 1, 2, 0, "v1", "ab" * 32, 2 * 10**18, 10**18, rule)
    other = fl.RoundAnnouncement("5", "g1", 2, 2, 0, "v1", "ab" * 32, 2 * 10**18, 10**18,
                                 fl.Invitation("s", 0))  # fmt: skip
    # Execute / Assert
    dev.on_message(proto.round_current_topic(), fl.encode_round(ann))
    ((topic, payload),) = dev.poll()
    assert dev.poll() == []
    u = fl.decode_update(payload)
    assert (topic, u.client_id, u.round_id, u.base_version) == (
        proto.client_topic(proto.Channel.UPDATE, "sim-1"), "sim-1", "4", "v1")  # fmt: skip
    assert {k: v.shape for k, v in u.delta.items()} == HEAD_SHAPES
    dev.on_message(proto.round_current_topic(), fl.encode_round(other))
    assert dev.poll() == []
    dev.on_message(proto.round_current_topic(), b"\x00garbage")
    assert dev.announcement is None
