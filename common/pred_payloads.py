"""``pred`` payloads (a device's beat predictions and events) and the store's receipts (``predack``).

A device batches beats and events into one ``pred`` payload with a ``batch_id``; once the store
has committed it, the aggregator answers on ``medchain/v1/predack/{client_id}`` and the device
forgets the batch. Decoders take untrusted bytes and read every field through
:mod:`common.wire_fields`; a bad row can be left out without losing its batch
(:func:`decode_predictions` with ``keep_valid_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from common.payloads import MAX_ACK_IDS, MAX_MODEL_VERSION, expect_kind
from common.protocol import ProtocolError, check_client_id, decode, encode
from common.types import BeatPrediction, Event
from common.wire_fields import (
    MAX_NS,
    check_text,
    int_field,
    json_field,
    list_field,
    name_field,
    number_field,
    optional_number,
    text_field,
)

MAX_BEATS = 2000  # beats per ``pred`` payload (a device batches a few hundred)
MAX_EVENTS = 200  # events per ``pred`` payload
MAX_CLASSES = 16  # entries of a beat's probability map
MAX_RR_S = 60.0  # longest credible RR interval, s
_Row = TypeVar("_Row")  # a decoded row (beat or event)


def beat_body(b: BeatPrediction) -> dict[str, object]:
    """A beat as a ``pred`` payload carries it (and the edge's outbox keeps it): NaN RR as null."""
    return {
        "t_ns": b.t_ns,
        "sample": b.sample,
        "label": b.label,
        "probs": b.probs,
        "model_version": b.model_version,
        "rr_s": None if math.isnan(b.rr_s) else b.rr_s,
    }


def event_body(e: Event) -> dict[str, object]:
    """An event as a ``pred`` payload carries it (and the edge's outbox keeps it)."""
    return {
        "event_id": e.event_id,
        "kind": e.kind,
        "t_start_ns": e.t_start_ns,
        "t_end_ns": e.t_end_ns,
        "details": e.details,
    }


def encode_predictions(
    client_id: str, beats: list[BeatPrediction], events: list[Event], batch_id: str = ""
) -> bytes:
    """Encode a batch of beat predictions and events for ``medchain/v1/pred/{client_id}``.

    ``batch_id`` (short name, unique per batch on the device) comes back in the store's
    receipt (:class:`PredAck`), so the device keeps the batch until the store has it.
    """
    body = {
        "client_id": client_id,
        "batch_id": batch_id,
        "beats": [beat_body(b) for b in beats],
        "events": [event_body(e) for e in events],
    }
    return encode("pred", body)


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row of a ``pred`` payload left out by :func:`decode_predictions` (``keep_valid_rows``):
    ``kind`` "beat" or "event", its ``index`` in that list, and why."""

    kind: str
    index: int
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.index}: {self.reason}"


def refused_summary(refused: tuple[RefusedRow, ...], shown: int = 3) -> str:
    """A log line's account of a batch's refused rows: how many, and the first ``shown``."""
    return f"{len(refused)} row(s) refused ({'; '.join(map(str, refused[:shown]))})"


@dataclass(frozen=True, slots=True)
class Predictions:
    """A decoded ``pred`` payload: one device's batch (``batch_id`` "" when it wants no receipt),
    and the rows left out (``refused``, only with ``keep_valid_rows``)."""

    client_id: str
    beats: list[BeatPrediction]
    events: list[Event]
    batch_id: str = ""
    refused: tuple[RefusedRow, ...] = ()


def decode_predictions(payload: bytes, *, keep_valid_rows: bool = False) -> Predictions:
    """Decode a ``pred`` payload: at most :data:`MAX_BEATS` beats and :data:`MAX_EVENTS`
    events, every field bounded (times int64 ns, probabilities in [0, 1], RR in s).

    The envelope (kind, client id, batch id, the two lists and their sizes) is all or nothing.
    A row that breaks its bounds raises ProtocolError, or with ``keep_valid_rows`` is left out
    and listed in ``refused``: the store keeps a batch's good rows, since resending cannot
    mend a bad one.
    """
    b = expect_kind(decode(payload), "pred").body
    client_id = check_client_id(text_field(b, "client_id", 64))
    batch = "" if b.get("batch_id", "") == "" else name_field(b, "batch_id")
    refused: list[RefusedRow] = []
    beats = _rows(
        list_field(b, "beats", MAX_BEATS),
        partial(_beat, client_id),
        "beat",
        refused,
        keep_valid_rows,
    )
    events = _rows(
        list_field(b, "events", MAX_EVENTS),
        partial(_event, client_id),
        "event",
        refused,
        keep_valid_rows,
    )
    return Predictions(client_id, beats, events, batch, tuple(refused))


def _rows(
    items: list[object],
    decode_row: Callable[[object], _Row],
    kind: str,
    refused: list[RefusedRow],
    keep_valid: bool,
) -> list[_Row]:
    """``decode_row`` of each item; a refused one raises, or is noted in ``refused``."""
    out: list[_Row] = []
    for i, x in enumerate(items):
        try:
            out.append(decode_row(x))
        except ProtocolError as exc:
            if not keep_valid:
                raise
            refused.append(RefusedRow(kind, i, str(exc)))
    return out


@dataclass(frozen=True, slots=True)
class PredAck:
    """The store's receipt for batches of predictions it has committed (the device may then
    forget them); on ``medchain/v1/predack/{client_id}``."""

    client_id: str
    batch_ids: tuple[str, ...]
    t_ns: int


def encode_pred_ack(ack: PredAck) -> bytes:
    """Encode a ``pred_ack`` payload (1..500 batch ids)."""
    if not 0 < len(ack.batch_ids) <= MAX_ACK_IDS:
        raise ValueError(f"a pred ack holds 1..{MAX_ACK_IDS} ids, got {len(ack.batch_ids)}")
    return encode(
        "pred_ack",
        {"client_id": ack.client_id, "batch_ids": list(ack.batch_ids), "t_ns": ack.t_ns},
    )


def decode_pred_ack(payload: bytes) -> PredAck:
    """Decode a ``pred_ack`` payload."""
    b = expect_kind(decode(payload), "pred_ack").body
    ids = list_field(b, "batch_ids", MAX_ACK_IDS)
    if not ids:
        raise ProtocolError("batch_ids is empty")
    return PredAck(
        check_client_id(text_field(b, "client_id", 64)),
        tuple(name_field({"id": i}, "id") for i in ids),
        int_field(b, "t_ns", 0, MAX_NS),
    )


def _object(x: object, what: str) -> dict[str, object]:
    if not isinstance(x, dict):
        raise ProtocolError(f"{what} is not an object")
    return x


def _beat(client_id: str, x: object) -> BeatPrediction:
    d = _object(x, "beat")
    probs = _object(d.get("probs"), "beat probs")
    if len(probs) > MAX_CLASSES:
        raise ProtocolError(f"beat probs hold {len(probs)} classes, limit {MAX_CLASSES}")
    rr = optional_number(d, "rr_s", 0.0, MAX_RR_S)
    return BeatPrediction(
        client_id,
        int_field(d, "t_ns", 0, MAX_NS),
        int_field(d, "sample", 0),
        name_field(d, "label"),
        {check_text(k, "class name", 16): number_field(probs, k, 0.0, 1.0) for k in probs},
        text_field(d, "model_version", MAX_MODEL_VERSION),
        float("nan") if rr is None else rr,
    )


def _event(client_id: str, x: object) -> Event:
    d = _object(x, "event")
    start, end = int_field(d, "t_start_ns", 0, MAX_NS), int_field(d, "t_end_ns", 0, MAX_NS)
    if end < start:
        raise ProtocolError("event ends before it starts")
    return Event(
        text_field(d, "event_id", 160),
        client_id,
        name_field(d, "kind"),
        start,
        end,
        json_field(d, "details", default={}),
    )
