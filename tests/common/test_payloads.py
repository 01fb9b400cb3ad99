"""Edge payloads: round trips and fuzzing (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import payloads as pl
from common import pred_payloads as pp
from common.protocol import ProtocolError, decode, encode
from common.types import BeatPrediction, Event, SignalChunk, StreamKind


def test_chunk_round_trip() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    chunk = SignalChunk(
        StreamKind.ACC, 200.0, 1_700_000_000_000_000_000, rng.normal(0, 500, (40, 3)), seq=400
    )
    # Execute
    cid, out = pl.decode_chunk(pl.encode_chunk("raw", "dev-1", chunk), "raw")
    # Assert
    assert cid == "dev-1"
    assert (out.kind, out.fs, out.t0_ns, out.seq) == (chunk.kind, chunk.fs, chunk.t0_ns, chunk.seq)
    np.testing.assert_allclose(out.samples, chunk.samples, rtol=1e-6, atol=1e-3)


def test_chunk_kind_mismatch_is_rejected() -> None:
    chunk = SignalChunk(StreamKind.ECG, 130.0, 0, np.zeros((5, 1)))
    with pytest.raises(ProtocolError, match="expected"):
        pl.decode_chunk(pl.encode_chunk("live", "d", chunk), "raw")


def test_chunk_shape_must_match_blob() -> None:
    payload = encode(
        "raw",
        {"client_id": "d", "stream": "ecg", "fs": 130, "t0_ns": 0, "seq": 0, "shape": [10, 1]},
        b"\0" * 8,
    )
    with pytest.raises(ProtocolError, match="float32"):
        pl.decode_chunk(payload, "raw")


def test_predictions_keep_their_valid_rows_only_when_asked() -> None:
    # Prepare: beat 1 has an RR past 60 s, event 0 ends before it starts
    beats = [BeatPrediction("d", 10 * i, i, "N", {"N": 1.0}, "v3", 0.8) for i in range(3)]
    body = decode(pp.encode_predictions("d", beats, [], "b-1")).body
    body["beats"][1]["rr_s"] = 61.0
    body["events"] = [{"event_id": "e", "kind": "k", "t_start_ns": 5, "t_end_ns": 1}]
    payload = encode("pred", body)
    # Execute / Assert: by default the payload is refused whole
    with pytest.raises(ProtocolError, match="rr_s"):
        pp.decode_predictions(payload)
    batch = pp.decode_predictions(payload, keep_valid_rows=True)
    assert batch.beats == [beats[0], beats[2]] and batch.events == []
    assert [(r.kind, r.index) for r in batch.refused] == [("beat", 1), ("event", 0)]
    assert "61.0" in batch.refused[0].reason and "before it starts" in batch.refused[1].reason
    # the envelope stays all or nothing
    body["beats"] = "not a list"
    with pytest.raises(ProtocolError, match="not a list"):
        pp.decode_predictions(encode("pred", body), keep_valid_rows=True)


def test_predictions_round_trip() -> None:
    beats = [
        BeatPrediction("d", 10, 5, "V", {"N": 0.1, "V": 0.9}, "v3", 0.8),
        BeatPrediction("d", 20, 9, "N", {"N": 1.0}, "v3"),
    ]
    events = [Event("e1", "d", "vt_run", 1, 2, {"beats": 4})]
    batch = pp.decode_predictions(pp.encode_predictions("d", beats, events, "b-1"))
    cid, b2, e2 = batch.client_id, batch.beats, batch.events
    assert batch.batch_id == "b-1"
    assert cid == "d"
    assert b2[0] == beats[0]
    assert math.isnan(b2[1].rr_s)
    assert e2 == events


def test_status_and_label_round_trip() -> None:
    s = pl.Status("d", False, 5, "v2", 80.0, "lwt")
    assert pl.decode_status(pl.encode_status(s)) == s
    lb = pl.Label("l1", "d", 99, "S", "beat", "dr-a")
    assert pl.decode_label(pl.encode_label(lb)) == lb
    ack = pl.LabelAck("d", ("l1", "l2"), 7)
    assert pl.decode_label_ack(pl.encode_label_ack(ack)) == ack


@pytest.mark.parametrize(
    "ids",
    [[], ["x"] * 501, [""], [1], ["x" * 129], "l1"],
    ids=["empty", "too-many", "blank", "not-str", "too-long", "not-list"],
)
def test_label_ack_bounds(ids: object) -> None:
    payload = encode("label_ack", {"client_id": "d", "label_ids": ids, "t_ns": 1})
    with pytest.raises(ProtocolError):
        pl.decode_label_ack(payload)


def test_label_ack_encoder_refuses_unbounded_batches() -> None:
    with pytest.raises(ValueError, match="1..500"):
        pl.encode_label_ack(pl.LabelAck("d", (), 1))


@settings(max_examples=300, derandomize=True)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "client_id",
                "stream",
                "fs",
                "t0_ns",
                "seq",
                "shape",
                "beats",
                "events",
                "online",
                "t_ns",
                "label_ids",
            ]
        ),
        st.one_of(
            st.none(),
            st.integers(-5, 5),
            st.text(max_size=5),
            st.booleans(),
            st.lists(st.integers(-2, 70000), max_size=3),
            st.lists(st.text(max_size=3), max_size=3),
        ),
    ),
    st.sampled_from(["raw", "live", "pred", "status", "label", "label_ack"]),
    st.binary(max_size=64),
)
def test_decoders_raise_only_protocol_errors(
    body: dict[str, object], kind: str, blob: bytes
) -> None:
    payload = encode(kind, body, blob)
    for decoder in (
        lambda b: pl.decode_chunk(b, kind),
        pp.decode_predictions,
        pl.decode_status,
        pl.decode_label,
        pl.decode_label_ack,
    ):
        try:
            decoder(payload)
        except ProtocolError:
            pass


@pytest.mark.parametrize(
    ("channel", "kind", "fs", "ok"),
    [
        ("raw", StreamKind.ECG, 60.0, False),  # the ECG filters' 40 Hz band edge needs > 80 Hz
        ("raw", StreamKind.ECG, 100.0, True),
        ("raw", StreamKind.PPG, 5.0, False),  # the PPG heart-rate tracker needs > 8 Hz
        ("raw", StreamKind.ACC, 1.0, True),
        ("live", StreamKind.ECG, 50.0, True),  # live is only drawn: a device may send 50 Hz
        ("live", StreamKind.ECG, 1e-310, False),  # a subnormal rate made the live times inf
    ],
)
def test_a_chunk_at_a_rate_its_stream_cannot_have_is_refused(
    channel: str, kind: StreamKind, fs: float, ok: bool
) -> None:
    # Prepare: before, any rate in (0, 10 kHz] passed, and one 60 Hz ECG chunk ended a live agent
    payload = pl.encode_chunk(channel, "d", SignalChunk(kind, fs, 0, np.ones((4, 1)), 0))
    # Execute / Assert
    if ok:
        assert pl.decode_chunk(payload, channel)[1].fs == fs
    else:
        with pytest.raises(ProtocolError, match="sampling rate"):
            pl.decode_chunk(payload, channel)
