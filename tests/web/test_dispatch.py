"""Routing of untrusted MQTT messages into the sinks; rejects are counted, never raised."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.payloads import LabelAck, Status, encode_chunk, encode_label_ack, encode_status
from common.pred_payloads import encode_predictions
from common.protocol import decode, encode
from tests.web.conftest import T0_NS, beat, ecg_chunk, event
from web.live.dispatch import dispatch, subscriptions
from web.live.fanout import Fanout
from web.live.hub import LiveHub


class BrokenSink:
    def on_live(self, client_id, chunk):  # noqa: ANN001
        raise RuntimeError("store down")

    on_predictions = on_status = on_label_ack = on_live  # type: ignore[assignment]


@pytest.fixture()
def hub() -> LiveHub:
    return LiveHub(10.0, 10, Fanout(4, 16))


def test_subscriptions_cover_live_pred_status_and_label_receipts() -> None:
    assert subscriptions() == [
        "medchain/v1/live/#",
        "medchain/v1/pred/#",
        "medchain/v1/status/#",
        "medchain/v1/labelack/#",
    ]


def test_valid_messages_reach_every_sink(hub: LiveHub) -> None:
    # Prepare
    counters: Counter[str] = Counter()
    msgs = [
        ("medchain/v1/live/p1", encode_chunk("live", "p1", ecg_chunk(0))),
        ("medchain/v1/pred/p1", encode_predictions("p1", [beat(T0_NS, "V")], [event(T0_NS)])),
        ("medchain/v1/status/p1", encode_status(Status("p1", True, T0_NS))),
    ]
    # Execute
    ok = [dispatch([BrokenSink(), hub], t, p, counters) for t, p in msgs]
    # Assert
    assert ok == [True, True, True]
    snap = hub.snapshot("p1")
    assert (
        snap["latest_beat"]["label"] == "V" and snap["status"]["online"] and snap["streams"]["ecg"]
    )
    assert counters["sink_errors_BrokenSink"] == 3
    assert (
        counters["accepted_live"] == counters["accepted_pred"] == counters["accepted_status"] == 1
    )


def test_a_bad_row_costs_that_row_not_its_batch(hub: LiveHub) -> None:
    # Prepare: two good beats and one whose probability is above 1 (a device's bug)
    counters: Counter[str] = Counter()
    body = decode(
        encode_predictions("p1", [beat(T0_NS + i * 10**9, "V") for i in range(3)], [])
    ).body
    body["beats"][0]["probs"]["V"] = 1.5
    # Execute
    ok = dispatch([hub], "medchain/v1/pred/p1", encode("pred", body), counters)
    # Assert: the batch's good beats reach the live view, the bad one is counted and logged
    assert ok is True
    assert hub.snapshot("p1")["latest_beat"]["t_ns"] == T0_NS + 2 * 10**9
    assert counters["rejected_pred_rows"] == 1 and counters["accepted_pred"] == 1


@pytest.mark.parametrize(
    ("topic", "payload", "counter"),
    [
        (
            "medchain/v1/live/p2",
            encode_chunk("live", "p1", ecg_chunk(0)),
            "rejected_live",
        ),  # spoofed id
        (
            "medchain/v1/live/p1",
            encode_chunk("raw", "p1", ecg_chunk(0)),
            "rejected_live",
        ),  # wrong kind
        ("medchain/v1/pred/p1", b"MC\x01garbage", "rejected_pred"),
        ("medchain/v1/status/p1", encode("status", {"client_id": "p1"}), "rejected_status"),
        (
            "medchain/v1/labelack/p2",
            encode_label_ack(LabelAck("p1", ("L1",), T0_NS)),
            "rejected_labelack",
        ),  # a device may not acknowledge another patient's labels
        ("medchain/v1/round/current", b"", "rejected_round"),
        ("other/topic", b"x", "rejected_topic"),
        ("medchain/v1/live/bad id", b"", "rejected_live"),
    ],
)
def test_malformed_messages_are_counted_not_raised(
    hub: LiveHub, topic: str, payload: bytes, counter: str
) -> None:
    # Prepare
    counters: Counter[str] = Counter()
    # Execute
    ok = dispatch([hub], topic, payload, counters)
    # Assert
    assert ok is False and counters[counter] == 1
    assert hub.client_ids() == []


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    channel=st.sampled_from(["live", "pred", "status", "label", "labelack"]),
    payload=st.binary(max_size=512),
)
def test_fuzz_random_bytes_never_raise(channel: str, payload: bytes) -> None:
    # Prepare
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    counters: Counter[str] = Counter()
    # Execute
    ok = dispatch([hub], f"medchain/v1/{channel}/p1", payload, counters)
    # Assert
    assert ok is False and sum(counters.values()) == 1


@settings(derandomize=True, max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_corrupted_valid_payloads_never_raise(data: st.DataObject) -> None:
    # Prepare
    base = bytearray(encode_predictions("p1", [beat(T0_NS, "V")], [event(T0_NS)]))
    for _ in range(data.draw(st.integers(1, 8))):
        base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    counters: Counter[str] = Counter()
    # Execute
    dispatch([hub], "medchain/v1/pred/p1", bytes(base), counters)
    # Assert: the message is counted once, accepted (maybe with rows refused) or rejected, and
    # whatever reaches the hub is something it can take
    assert counters["accepted_pred"] + counters["rejected_pred"] == 1
    assert not any(k.startswith("sink_errors") for k in counters)
