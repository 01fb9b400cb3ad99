"""Durable ingestion of what devices report: predictions, events, statuses and label receipts.

The aggregator's MQTT session is persistent (fixed client id, shared subscription between
replicas, manual acknowledgement), so whatever a device publishes while the service is down or
the database is stopped waits on the broker. Each message is written to the store first and
acknowledged to the broker afterwards; then, for a batch of predictions, the service publishes
the store's receipt (``predack/{client_id}``) and only then does the device forget the batch.
A device that gets no receipt sends the batch again; every write here is idempotent (beats by
``(client, t_ns)``, events by id, label receipts by id), so a batch stored twice is stored once.

Decoding is bounded (:mod:`common.payloads`); a payload whose body names another device than
its topic is refused (the broker's ACL binds the topic to the login, this binds the body). A
beat or event that breaks its bounds costs that row only: it is counted and logged, the rest of
its batch is stored and receipted (sending it again could not mend it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common import protocol as proto
from common.payloads import Status, decode_label_ack, decode_status, supersedes
from common.pred_payloads import PredAck, decode_predictions, encode_pred_ack, refused_summary
from store import StatusReport, Store

_LOGGER = logging.getLogger(__name__)

CHANNELS = (proto.Channel.PRED, proto.Channel.LABEL_ACK, proto.Channel.STATUS)


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message to publish (QoS 1) once the inbound one is stored."""

    topic: str
    payload: bytes


class Ingestor:
    """Writes device reports into the store; returns the receipts to publish.

    Parameters
    ----------
    store : Store
        Where predictions, events, statuses and label receipts go.
    clock_ns : callable
        Nanoseconds since the epoch (the receipts' time).

    Attributes
    ----------
    online : dict of str to bool
        Last status seen per device in this process (round selection reads it).
    beats, events : int
        Rows written (including idempotent repeats).
    refused_rows : int
        Beats and events left out of their batch for breaking the wire's bounds (logged).
    stale_statuses : int
        Statuses ignored because a later one of the same device was already applied (a
        connection's Last Will that a clustered broker delivers after the device's next
        connection announced itself online).
    """

    def __init__(self, store: Store, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.clock_ns = clock_ns
        self.online: dict[str, bool] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # last applied (session, seq) per device
        self.stale_statuses = 0
        self.beats = 0
        self.events = 0
        self.refused_rows = 0

    def handle(self, topic: proto.Topic, payload: bytes) -> Outbound | None:
        """Store one report (raises ProtocolError when malformed; StoreUnavailableError when
        the store is down, so the caller keeps the message unacknowledged)."""
        if topic.channel == proto.Channel.PRED:
            return self._predictions(topic.ident, payload)
        if topic.channel == proto.Channel.LABEL_ACK:
            ack = decode_label_ack(payload)
            _check_owner(topic.ident, ack.client_id)
            self.store.acknowledge_labels(ack.client_id, list(ack.label_ids))
            return None
        if topic.channel == proto.Channel.STATUS:
            error = self.statuses([(topic.ident, payload)])[0]
            if error is not None:
                raise error
            return None
        raise proto.ProtocolError(f"channel {topic.channel} is not ingested")

    def _predictions(self, sender: str, payload: bytes) -> Outbound | None:
        batch = decode_predictions(payload, keep_valid_rows=True)
        _check_owner(sender, batch.client_id)
        if batch.refused:  # the good rows are stored and the batch receipted all the same
            self.refused_rows += len(batch.refused)
            _LOGGER.warning(
                "batch %r of %s: %s, the rest stored",
                batch.batch_id, sender, refused_summary(batch.refused),
            )  # fmt: skip
        if batch.beats:
            self.store.insert_predictions(batch.beats)
        if batch.events:
            self.store.insert_events(batch.events)
        self.beats += len(batch.beats)
        self.events += len(batch.events)
        if not batch.batch_id:
            return None
        receipt = PredAck(sender, (batch.batch_id,), self.clock_ns())
        return Outbound(
            proto.client_topic(proto.Channel.PRED_ACK, sender), encode_pred_ack(receipt)
        )

    def statuses(self, items: Sequence[tuple[str, bytes]]) -> list[proto.ProtocolError | None]:
        """Store ``(sender, payload)`` status reports in order, in one transaction.

        Returns, per item, why it was refused (None: stored, or an empty retained payload,
        which only clears the topic). ``online`` follows once the store has them.
        """
        errors: list[proto.ProtocolError | None] = []
        reports: list[StatusReport] = []
        stamps: dict[str, tuple[int, int]] = {}
        for sender, payload in items:
            try:
                if payload:
                    st = decode_status(payload)
                    _check_owner(sender, st.client_id)
                    if self._is_stale(st, stamps):
                        errors.append(None)
                        continue
                    version = st.model_version or None
                    reports.append(StatusReport(sender, st.online, st.t_ns / 1e9, version))
                errors.append(None)
            except proto.ProtocolError as exc:
                errors.append(exc)
        self.store.set_client_statuses(reports)
        self._stamps.update(stamps)  # only once stored: a failed write leaves them as they were
        for r in reports:
            self.online[r.client_id] = r.online
        return errors

    def _is_stale(self, st: Status, stamps: dict[str, tuple[int, int]]) -> bool:
        """True (and counted, logged) when a later status of ``st``'s device was applied;
        otherwise notes ``st``'s stamp in ``stamps``."""
        last = stamps.get(st.client_id) or self._stamps.get(st.client_id)
        if not supersedes(st, last):
            self.stale_statuses += 1
            _LOGGER.info("stale status of %s ignored (%s before %s)", st.client_id, st.stamp, last)
            return True
        if st.stamp is not None:
            stamps[st.client_id] = st.stamp
        return False


def _check_owner(topic_id: str, body_id: str) -> None:
    if topic_id != body_id:
        raise proto.ProtocolError(f"payload of client {body_id!r} on the topic of {topic_id!r}")
