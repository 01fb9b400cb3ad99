"""Spot-check request and result payloads: round trips and hostile bytes."""

from __future__ import annotations

import pytest

from common.protocol import Channel, ProtocolError, client_topic, encode, parse_topic
from common.spot_payloads import (
    SpotCheckRequest,
    SpotCheckResult,
    decode_spot_request,
    decode_spot_result,
    encode_spot_request,
    encode_spot_result,
)

RESULT = SpotCheckResult(
    "watch-7", "req-1", 1_700_000_000_000_000_000, 1_700_000_030_000_000_000, "AF",
    {"N": 0.05, "AF": 0.9, "O": 0.04, "noisy": 0.01}, ("clipped",), True, 96.5, "rhythm-v2-abc",
)  # fmt: skip


def test_round_trips_and_topics() -> None:
    # Prepare
    req = SpotCheckRequest("watch-7", "req-1", 30.0, 123)
    # Execute / Assert
    assert decode_spot_request(encode_spot_request(req)) == req
    assert decode_spot_result(encode_spot_result(RESULT)) == RESULT
    assert client_topic(Channel.SPOT, "watch-7") == "medchain/v1/spot/watch-7"
    assert parse_topic("medchain/v1/control/watch-7").channel is Channel.CONTROL


@pytest.mark.parametrize(
    ("kind", "body", "match"),
    [
        ("spot_check", {"client_id": "w", "request_id": "r", "duration_s": 5}, "duration_s"),
        ("spot_check", {"client_id": "w", "request_id": "r", "duration_s": 61}, "duration_s"),
        ("spot_check", {"client_id": "w", "request_id": "r x"}, "request_id"),
        ("spot_check", {"client_id": "w/../x", "request_id": "r"}, "client id"),
        ("spot_check", {"client_id": "w", "request_id": "r", "duration_s": True}, "duration_s"),
        ("pred", {"client_id": "w", "request_id": "r"}, "spot_check"),
    ],
)
def test_bad_requests_are_refused(kind: str, body: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_spot_request(encode(kind, body))


def _result(**change: object) -> bytes:
    body = {
        "client_id": "w", "request_id": "r", "t_start_ns": 10, "t_end_ns": 20, "label": "N",
        "probabilities": {"N": 1.0}, "quality": [], "decided": True, "heart_rate_bpm": None,
        "model_version": "m",
    }  # fmt: skip
    return encode("spot_result", body | change)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"t_end_ns": 5}, "ends before"),
        ({"probabilities": {"N": 1.5}}, "outside"),
        ({"probabilities": {f"c{i}": 0.0 for i in range(17)}}, "16 classes"),
        ({"probabilities": [0.5]}, "probabilities"),
        ({"quality": ["bad flag"]}, "flag"),
        ({"quality": ["a"] * 9}, "quality"),
        ({"heart_rate_bpm": 1e9}, "heart_rate_bpm"),
        ({"decided": 1}, "decided"),
        ({"label": ""}, "label"),
    ],
)
def test_bad_results_are_refused(change: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_spot_result(_result(**change))
    assert decode_spot_result(_result()).label == "N"
