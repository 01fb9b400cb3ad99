"""Outbox -> broker: pending predictions and label receipts handed to the uplink, acks handled.

A batch of rows gets an id and is marked in flight when the uplink takes it, sent when the
broker acknowledges it (pending again when the broker refuses it) and stored when the store's
receipt for the batch arrives on ``predack/{client_id}`` (:meth:`OutboxPump.on_receipt`). A
batch the broker acknowledged but the store never confirmed (broker restart, ingestion down) is
sent again after :data:`RESEND_AFTER_S`; the store's writes are idempotent. So nothing is lost
across disconnects, outages or restarts (the buffer is durable). At most
:data:`MAX_INFLIGHT_BATCHES` payloads are unacknowledged at a time.

The store refuses a row that breaks the wire's bounds (an RR over 60 s across a signal gap, a
NaN probability, an over-long model version) and keeps the rest of its batch; a NaN does not
even encode. So every payload is decoded here as the store decodes it before it goes out, and
rows it would refuse are set aside in the buffer (``rejected``: kept on the device, counted in
``pred_rejected``, logged, never sent) instead of vanishing upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from functools import partial

from common.payloads import MAX_ACK_IDS, LabelAck, encode_label_ack
from common.pred_payloads import decode_pred_ack, decode_predictions, encode_predictions
from common.protocol import Channel, ProtocolError, client_topic
from common.types import BeatPrediction, Event
from edge_agent.agent_ports import AgentStats
from edge_agent.buffer import OutboxBatch, SqliteBuffer, beat_row_id
from edge_agent.config import EdgeSettings
from edge_agent.ports import Uplink

_LOGGER = logging.getLogger(__name__)

__all__ = ["MAX_INFLIGHT_BATCHES", "RESEND_AFTER_S", "OutboxPump"]

MAX_INFLIGHT_BATCHES = 10  # pred payloads handed to MQTT and not yet acknowledged
RESEND_AFTER_S = 60.0  # a batch the broker acknowledged but the store did not confirm, s


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
    resend_after_s : float
        Seconds after the broker's acknowledgement when a batch without the store's receipt
        is sent again.
    clock : callable
        Unix seconds.
    """

    def __init__(
        self,
        settings: EdgeSettings,
        buffer: SqliteBuffer,
        uplink: Uplink | None,
        stats: AgentStats,
        wake: asyncio.Event,
        resend_after_s: float = RESEND_AFTER_S,
        clock: Callable[[], float] = time.time,
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
        self.resend_after_s = resend_after_s
        self.clock = clock
        self._next_requeue = 0.0
        self.failures = 0  # flushes failed in a row (flush_or_log)

    async def run(self, status_detail: Callable[[], str]) -> None:
        """The uplink loop: flush every ``flush_interval_s`` s or as soon as woken (an ack, a
        stored beat), and publish the status every ``status_interval_s`` s.

        A failing buffer (a full disk) neither ends the loop nor holds back the status that
        tells the care team about it; the flush then backs off (2, 4, ... times the interval,
        at most a minute).
        """
        s = self.settings
        next_status = time.monotonic() + min(5.0, s.status_interval_s)
        while True:
            ok = self.flush_or_log()
            if self.uplink is not None and time.monotonic() >= next_status:
                next_status = time.monotonic() + s.status_interval_s
                self.uplink.publish_status(True, status_detail())
            self._wake.clear()
            wait_s = s.flush_interval_s
            if not ok:
                wait_s = min(60.0, wait_s * 2.0 ** min(self.failures, 10))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races its timeout, and the loop would outlive the agent
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()

    def flush_or_log(self) -> bool:
        """:meth:`flush`; a buffer that cannot be read or written (a full or failing disk) is
        counted in ``uplink_errors`` and logged when it starts failing and when it recovers,
        not at every try. True when the flush worked."""
        try:
            self.flush()
        except sqlite3.Error as exc:
            self.stats.uplink_errors += 1
            if not self.failures:
                _LOGGER.error("outbox flush failing (%s): trying again, backing off", exc)
            self.failures += 1
            return False
        if self.failures:
            _LOGGER.warning("outbox flush works again after %d failed tries", self.failures)
            self.failures = 0
        return True

    def flush(self) -> int:
        """Hand pending rows to the uplink (if connected); returns the payloads handed over."""
        if self.uplink is None or not self.uplink.connected:
            return 0
        self._requeue_unconfirmed()
        handed = self._flush_receipts()
        limit = self.settings.pred_batch_max
        while self.inflight < MAX_INFLIGHT_BATCHES:
            batch = self.buffer.take_pending(limit)
            if not batch.ids:
                break
            batch_id = uuid.uuid4().hex[:16]
            payload, _ = _accepted(self._cid, batch.beats, batch.events, batch_id)
            if payload is None:  # set the refused rows aside, or halve a payload too large
                if not self._set_aside(batch):
                    limit = max(1, len(batch.ids) // 2)
                continue
            # in flight before it is handed over: a buffer that cannot record it (full disk)
            # stops here, instead of the same rows going out again under a new batch id
            self.buffer.mark_inflight(batch.ids, batch_id)
            if not self.uplink.publish_reliable(
                self._pred_topic, payload, partial(self._on_ack, batch.ids)
            ):
                self.buffer.mark_pending(batch.ids)
                break
            self.inflight += 1
            handed += 1
        return handed

    def on_receipt(self, payload: bytes) -> int:
        """The store's receipt (``predack/{client_id}``): its batches are done. Returns the rows.

        Raises ProtocolError for a malformed receipt or one naming another device.
        """
        ack = decode_pred_ack(payload)
        if ack.client_id != self._cid:
            raise ProtocolError(f"receipt for {ack.client_id} reached {self._cid}")
        rows = self.buffer.mark_stored(ack.batch_ids)
        self.stats.pred_stored += rows
        return rows

    def _set_aside(self, batch: OutboxBatch) -> int:
        """Rows of ``batch`` the store would refuse on their own: marked ``rejected`` in the
        buffer, counted and logged. Returns how many."""
        rows: list[tuple[str, list[BeatPrediction], list[Event]]] = [
            (beat_row_id(b), [b], []) for b in batch.beats
        ]
        rows += [(e.event_id, [], [e]) for e in batch.events]
        refused = []
        for row_id, beats, events in rows:
            _, why = _accepted(self._cid, beats, events, "")
            if why:
                refused.append(row_id)
                _LOGGER.warning(
                    "outbox row %s set aside, the store would refuse it: %s", row_id, why
                )
        self.buffer.mark_rejected(refused)
        self.stats.pred_rejected += len(refused)
        return len(refused)

    def _requeue_unconfirmed(self) -> None:
        """At most every tenth of the timeout: batches without a receipt go out again."""
        now = self.clock()
        if now < self._next_requeue:
            return
        self._next_requeue = now + self.resend_after_s / 10
        n = self.buffer.requeue_unconfirmed(self.resend_after_s, now)
        if n:
            self.stats.pred_resent += n
            _LOGGER.info("%d predictions without the store's receipt will be sent again", n)

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
            self.buffer.mark_sent(ids, self.clock())
            self.stats.pred_payloads += 1
        else:
            self.buffer.mark_pending(ids)
            self.stats.pred_refused += 1
        self._wake.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until the outbox is empty or the timeout (s): nothing pending or in flight and,
        when the store's receipts arrive at all in this run, nothing awaiting one (rows left
        unconfirmed are sent again by the next run)."""
        if self.uplink is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts, receipts = self.buffer.counts(), self.buffer.receipts.counts()
            waiting = counts["pending"] + counts["inflight"]
            waiting += receipts["pending"] + receipts["inflight"]
            if self.stats.pred_stored > 0:
                waiting += counts["sent"]
            if waiting == 0:
                return
            self.flush()
            await asyncio.sleep(0.05)
        _LOGGER.warning(
            "outbox not drained before stopping: %s (kept for the next run)", self.buffer.counts()
        )


def _accepted(
    client_id: str, beats: list[BeatPrediction], events: list[Event], batch_id: str
) -> tuple[bytes | None, str]:
    """The ``pred`` payload of these rows if the store's decoder accepts it, else None and why."""
    try:
        payload = encode_predictions(client_id, beats, events, batch_id)
        decode_predictions(payload)
    except (ProtocolError, ValueError) as exc:  # ValueError: NaN/inf where JSON has none
        return None, str(exc)
    return payload, ""
