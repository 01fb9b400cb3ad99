"""The aggregator service's batches: whole updates and status reports stored together.

Whole updates and status reports are gathered by :meth:`AggregatorService.step` into batches,
each stored in one transaction, then acknowledged (never before the commit). Inside
:meth:`AggregatorService.run` an update batch is stored on a writer thread
(:mod:`cloud_aggregator.update_writer`) while the service's thread screens the next one
(decoding and validation); :meth:`AggregatorService.step` called alone stores it in line, so it
returns with everything stored (simulations and tests rely on that).
"""

from __future__ import annotations

import functools
import logging

from cloud_aggregator.engine import RoundEngine
from cloud_aggregator.engine_intake import Screened
from cloud_aggregator.grid import Grid, Inbound
from cloud_aggregator.ingest import Ingestor
from cloud_aggregator.update_writer import BatchWriter
from cloud_aggregator.validation import Reject
from common import protocol as proto
from store import StoreUnavailableError

_LOGGER = logging.getLogger(__name__)


class BatchesMixin:
    """Batch handling of :class:`~cloud_aggregator.service.AggregatorService`."""

    engine: RoundEngine
    broker: Grid
    ingest: Ingestor
    _writer: BatchWriter[Inbound] | None  # set while run() runs
    _in_hand: list[Inbound]  # messages to handle first on the next step (after an outage)

    def handle(self, msg: Inbound) -> None:
        """Handle one message, then acknowledge it (the service's)."""
        raise NotImplementedError

    def _handle_batch(self, kind: str, batch: list[Inbound]) -> None:
        """Store a batch of whole updates (admitted together) or of status reports, then
        acknowledge every message of it.

        A store outage propagates (nothing acknowledged); any other failure of the batch falls
        back to one message at a time, so one bad message costs only itself.
        """
        if not batch:
            return
        items = [(proto.parse_topic(m.topic).ident, m.payload) for m in batch]
        try:
            if kind == "update" and self._writer is not None:
                screened = self.engine.screen_many(items)  # while the previous batch commits
                self._settle()
                self._writer.submit(functools.partial(self._store_batch, screened, batch), batch)
                return
            if kind == "update":
                self.engine.admit_many(items)
            else:
                for msg, error in zip(batch, self.ingest.statuses(items), strict=True):
                    if error is not None:
                        self.engine.rejects.add(Reject.SCHEMA)
                        _LOGGER.warning("rejected status on %s: %s", msg.topic[:200], error)
        except StoreUnavailableError:
            raise
        except Exception:  # a message the batch path cannot take: isolate it
            _LOGGER.warning("a batch of %d %ss failed: handling them one by one", len(batch), kind)
            for msg in batch:
                self.handle(msg)
            return
        for msg in batch:
            self.broker.ack(msg)

    def _store_batch(self, screened: Screened, batch: list[Inbound]) -> None:
        """The writer thread's work: store a screened batch, then acknowledge it."""
        self.engine.store_screened(screened)
        for k, msg in enumerate(batch):
            try:
                self.broker.ack(msg)
            except Exception as exc:
                raise PartlyAcknowledged(batch[k:]) from exc

    def _settle(self) -> None:
        """Wait for the batch in flight on the writer (if any) and take a failed one back.

        After a store outage its messages are kept in hand, unacknowledged, and the outage
        raised (StoreUnavailableError); after any other failure they are handled one by one.
        """
        failed = None if self._writer is None else self._writer.wait()
        if failed is None:
            return
        if isinstance(failed.error, StoreUnavailableError):
            self._in_hand = [*failed.messages, *self._in_hand]
            raise failed.error
        # acknowledged ones are not handed back: a second ack of an MQTT packet id can
        # acknowledge a newer message sent under the same id, before it is stored
        error = failed.error
        messages = error.unacked if isinstance(error, PartlyAcknowledged) else failed.messages
        _LOGGER.warning("storing a batch of %d updates failed (%s): %d one by one",
                        len(failed.messages), error.__cause__ or error,
                        len(messages))  # fmt: skip
        for k, msg in enumerate(messages):
            try:
                self.handle(msg)
            except StoreUnavailableError:
                self._in_hand = [*messages[k:], *self._in_hand]
                raise


class PartlyAcknowledged(Exception):
    """A stored batch whose acknowledgements failed at ``unacked[0]`` (the cause chained):
    those are handled again (stored once: updates are idempotent), the others left alone."""

    def __init__(self, unacked: list[Inbound]) -> None:
        super().__init__(f"{len(unacked)} message(s) of a stored batch not acknowledged")
        self.unacked = unacked


def batch_kind(msg: Inbound) -> str | None:
    """``update`` for a whole update on ``update/{client}``, ``status`` for a status report on
    ``status/{client}``, else None (handled alone: chunks, predictions, bad topics)."""
    try:
        t = proto.parse_topic(msg.topic)
    except proto.ProtocolError:
        return None
    if t.rest:
        return None
    if t.channel == proto.Channel.STATUS:
        return "status"
    if t.channel != proto.Channel.UPDATE:
        return None
    # The screening parses an update's header: here a peek is enough. A chunk (rare) is
    # parsed to be sure, so a malformed one is refused by the screening as before.
    kind = proto.peek_kind(msg.payload)
    if kind is None or kind == "chunk":
        kind = proto.kind_of(msg.payload)
    return None if kind == "chunk" else "update"
