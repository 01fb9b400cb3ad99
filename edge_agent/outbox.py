"""Outbox -> broker: pending predictions and label receipts handed to the uplink, acks handled.

A batch of rows is marked in flight when the uplink takes it, sent when the broker acknowledges
it and pending again when the broker refuses it, so nothing is lost across disconnects or
restarts (the buffer is durable). At most :data:`MAX_INFLIGHT_BATCHES` payloads are
unacknowledged at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from common.payloads import MAX_ACK_IDS, LabelAck, encode_label_ack, encode_predictions
from common.protocol import Channel, client_topic
from edge_agent.agent_ports import AgentStats
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.ports import Uplink

_LOGGER = logging.getLogger(__name__)

__all__ = ["MAX_INFLIGHT_BATCHES", "OutboxPump"]

MAX_INFLIGHT_BATCHES = 10  # pred payloads handed to MQTT and not yet acknowledged


class OutboxPump:
    """Moves pending rows of ``buffer`` to the broker through ``uplink``.

    Parameters
    ----------
    settings : EdgeSettings
        ``client_id`` (pred topic, payload source) and ``pred_batch_max`` (rows per payload).
    buffer : SqliteBuffer
        The durable outbox.
    uplink : Uplink, optional
        MQTT connection; None keeps everything buffered.
    stats : AgentStats
        Gets ``pred_payloads`` / ``pred_refused`` / ``label_receipts`` incremented.
    wake : asyncio.Event
        Set on every ack, so the agent's uplink loop hands over the next batch at once.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        buffer: SqliteBuffer,
        uplink: Uplink | None,
        stats: AgentStats,
        wake: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.buffer = buffer
        self.uplink = uplink
        self.stats = stats
        self._wake = wake
        self._cid = settings.client_id
        self._pred_topic = client_topic(Channel.PRED, self._cid)
        self._ack_topic = client_topic(Channel.LABEL_ACK, self._cid)
        self.inflight = 0

    def flush(self) -> int:
        """Hand pending rows to the uplink (if connected); returns the payloads handed over."""
        if self.uplink is None or not self.uplink.connected:
            return 0
        handed = self._flush_receipts()
        while self.inflight < MAX_INFLIGHT_BATCHES:
            batch = self.buffer.take_pending(self.settings.pred_batch_max)
            if not batch.ids:
                break
            payload = encode_predictions(self._cid, batch.beats, batch.events)
            if not self.uplink.publish_reliable(
                self._pred_topic, payload, partial(self._on_ack, batch.ids)
            ):
                break
            self.buffer.mark_inflight(batch.ids)
            self.inflight += 1
            handed += 1
        return handed

    def _flush_receipts(self) -> int:
        """Hand pending label receipts over (they are few and small: one payload per flush)."""
        assert self.uplink is not None
        ids = self.buffer.receipts.take(MAX_ACK_IDS)
        if not ids:
            return 0
        payload = encode_label_ack(LabelAck(self._cid, tuple(ids), time.time_ns()))
        if not self.uplink.publish_reliable(
            self._ack_topic, payload, partial(self._on_receipt_ack, ids)
        ):
            self.buffer.receipts.done(ids, ok=False)
            return 0
        return 1

    def _on_receipt_ack(self, ids: list[str], ok: bool) -> None:
        self.buffer.receipts.done(ids, ok)
        if ok:
            self.stats.label_receipts += len(ids)
        self._wake.set()

    def _on_ack(self, ids: list[str], ok: bool) -> None:
        self.inflight -= 1
        if ok:
            self.buffer.mark_sent(ids)
            self.stats.pred_payloads += 1
        else:
            self.buffer.mark_pending(ids)
            self.stats.pred_refused += 1
        self._wake.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until the outbox is empty (nothing pending or in flight) or the timeout (s)."""
        if self.uplink is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts, receipts = self.buffer.counts(), self.buffer.receipts.counts()
            if (
                counts["pending"] + counts["inflight"] + receipts["pending"] + receipts["inflight"]
                == 0
            ):
                return
            self.flush()
            await asyncio.sleep(0.05)
        _LOGGER.warning(
            "outbox not drained before stopping: %s (kept for the next run)", self.buffer.counts()
        )
