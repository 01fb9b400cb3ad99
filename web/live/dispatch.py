"""Route one MQTT message (topic, untrusted bytes) to the hub (pure).

Malformed payloads are counted per channel and logged with a hex prefix, never raised: one
bad device must not stop the live feed for everyone else.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from common.payloads import LabelAck, Status, decode_chunk, decode_label_ack, decode_status
from common.pred_payloads import decode_predictions, refused_summary
from common.protocol import Channel, ProtocolError, parse_topic, subscription
from common.types import BeatPrediction, Event, SignalChunk

_LOGGER = logging.getLogger(__name__)

CHANNELS = (Channel.LIVE, Channel.PRED, Channel.STATUS, Channel.LABEL_ACK)


class FeedSink(Protocol):
    """Receives decoded live-feed messages (the hub; the store recorder)."""

    def on_live(self, client_id: str, chunk: SignalChunk) -> None:
        """Take one decoded live signal chunk of a device."""
        ...

    def on_predictions(
        self, client_id: str, beats: list[BeatPrediction], events: list[Event]
    ) -> None:
        """Take one decoded batch of beat predictions and events of a device."""
        ...

    def on_status(self, status: Status) -> None:
        """Take one decoded device status."""
        ...

    def on_label_ack(self, ack: LabelAck) -> None:
        """Take a device's receipt for clinician labels it has stored."""
        ...


def subscriptions() -> list[str]:
    """Topic filters the web's live feed subscribes to."""
    return [subscription(ch) for ch in CHANNELS]


def dispatch(sinks: Sequence[FeedSink], topic: str, payload: bytes, counters: Counter[str]) -> bool:
    """Decode one message and hand it to every sink; return False (and count) if rejected.

    The client id in the topic must match the one in the payload: a device may only speak for
    itself (the broker's ACL enforces the topic, this enforces the body). A sink that fails is
    logged and counted; the other sinks still get the message.
    """
    try:
        parsed = parse_topic(topic)
        deliver: Callable[[FeedSink], None]
        if parsed.channel is Channel.LIVE:
            cid, chunk = decode_chunk(payload, "live")
            _check_owner(parsed.ident, cid)
            deliver = partial(_live, cid, chunk)
        elif parsed.channel is Channel.PRED:
            batch = decode_predictions(payload, keep_valid_rows=True)  # as the aggregator does
            _check_owner(parsed.ident, batch.client_id)
            if batch.refused:
                counters["rejected_pred_rows"] += len(batch.refused)
                _LOGGER.warning(
                    "batch on %s: %s, the rest shown", topic[:200], refused_summary(batch.refused)
                )
            deliver = partial(_pred, batch.client_id, batch.beats, batch.events)
        elif parsed.channel is Channel.STATUS:
            status = decode_status(payload)
            _check_owner(parsed.ident, status.client_id)
            deliver = partial(_status, status)
        elif parsed.channel is Channel.LABEL_ACK:
            ack = decode_label_ack(payload)
            _check_owner(parsed.ident, ack.client_id)
            deliver = partial(_label_ack, ack)
        else:
            raise ProtocolError(f"channel {parsed.channel} is not part of the live feed")
    except (ProtocolError, ValueError) as exc:
        parts = topic.split("/")
        counters[f"rejected_{parts[2] if len(parts) > 2 else 'topic'}"] += 1
        _LOGGER.warning("rejected message on %s (%s): %s", topic, exc, payload[:32].hex())
        return False
    counters[f"accepted_{parsed.channel}"] += 1
    for sink in sinks:
        try:
            deliver(sink)
        except Exception:  # one failing sink (store down) must not starve the others
            counters[f"sink_errors_{type(sink).__name__}"] += 1
            _LOGGER.exception("%s failed on a message of %s", type(sink).__name__, topic)
    return True


def _live(cid: str, chunk: SignalChunk, sink: FeedSink) -> None:
    sink.on_live(cid, chunk)


def _pred(cid: str, beats: list[BeatPrediction], events: list[Event], sink: FeedSink) -> None:
    sink.on_predictions(cid, beats, events)


def _status(status: Status, sink: FeedSink) -> None:
    sink.on_status(status)


def _label_ack(ack: LabelAck, sink: FeedSink) -> None:
    sink.on_label_ack(ack)


def _check_owner(topic_id: str, body_id: str) -> None:
    if topic_id != body_id:
        raise ProtocolError(f"payload of client {body_id!r} on the topic of {topic_id!r}")
