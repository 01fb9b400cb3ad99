"""The aggregator service: the message loop around the round engine and ingestion.

One loop (:meth:`AggregatorService.step`) drains inbound messages from the grid and ticks the
:class:`~cloud_aggregator.engine.RoundEngine`. Everything needed to continue lives in the
store, so ``kill -9`` at any moment and a restart resume:

- an update, or each chunk of a split one, is acknowledged to the broker only after the store
  has it (idempotent by ``update_id``; chunks in ``update_chunk``, see
  :mod:`cloud_aggregator.update_chunks`), so nothing acknowledged is lost;
- device reports (predictions, label receipts, statuses) likewise (:mod:`cloud_aggregator.ingest`);
- an open round keeps collecting after a restart (its announcement is re-published);
- a round killed while aggregating is re-claimed and finalised exactly once (the engine).

Whatever a message holds, it costs at most itself; a store outage is waited out.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cloud_aggregator.closing import Builder, Distiller, Evaluator
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.engine import RoundEngine
from cloud_aggregator.grid import Grid, Inbound
from cloud_aggregator.ingest import CHANNELS as INGESTED
from cloud_aggregator.ingest import Ingestor
from cloud_aggregator.service_batches import BatchesMixin, batch_kind
from cloud_aggregator.update_chunks import DurableReassembler
from cloud_aggregator.update_writer import BatchWriter
from cloud_aggregator.validation import Reject
from common import fl_protocol as fl
from common import protocol as proto
from store import Store, StoreUnavailableError, UpdateStatus
from store.retry import Backoff

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "ADVANCE_EVERY_S",
    "AggregatorService",
    "Distiller",
    "Evaluator",
    "settle_heap",
    "subscriptions",
]

ADVANCE_EVERY_S = 0.5
STORE_BACKOFF_MAX_S = 15.0
BATCH_MAX = 500  # whole updates validated together and stored in one transaction


class AggregatorService(BatchesMixin):
    """Runs federated rounds for one task and ingests device reports.

    Parameters
    ----------
    store : Store
        Source of truth for rounds, updates, models and device reports.
    broker : Grid
        Connected transport (subscribed to updates, reports and statuses).
    settings : AggregatorSettings
        Service settings.
    evaluator, distiller, builder : callable, optional
        See :class:`~cloud_aggregator.engine.RoundEngine`.
    clock : callable
        Unix seconds (tests inject a fake).
    """

    def __init__(
        self,
        store: Store,
        broker: Grid,
        settings: AggregatorSettings,
        *,
        evaluator: Evaluator | None = None,
        distiller: Distiller | None = None,
        builder: Builder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.broker, self.s = store, broker, settings
        self.engine = RoundEngine(
            store,
            broker,
            settings,
            evaluator=evaluator,
            distiller=distiller,
            builder=builder,
            clock=clock,
        )
        self.ingest = Ingestor(store)
        self.ingest.online = self.engine.online  # one view of who is online
        self.chunks = DurableReassembler(store, max_size=settings.max_update_bytes)
        self._next_advance = 0.0
        self._in_hand: list[Inbound] = []  # messages whose handling met a store outage
        self._backoff = Backoff(base_s=0.5, max_s=STORE_BACKOFF_MAX_S)
        self._writer: BatchWriter[Inbound] | None = None  # run() only; step() stores in line

    # The engine's state, as callers (CLI, simulations, tests) read and set it.
    @property
    def online(self) -> dict[str, bool]:
        return self.engine.online

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.engine.history

    @property
    def rejects(self) -> Any:
        return self.engine.rejects

    @property
    def republish(self) -> threading.Event:
        return self.engine.republish

    @property
    def evaluator(self) -> Evaluator | None:
        return self.engine.evaluator

    @evaluator.setter
    def evaluator(self, value: Evaluator | None) -> None:
        self.engine.evaluator = value

    def ensure_initial_model(self) -> int:
        """See :meth:`RoundEngine.ensure_initial_model`."""
        return self.engine.ensure_initial_model()

    def release(self, version: int) -> tuple[fl.ModelRelease, fl.Tensors]:
        """See :meth:`RoundEngine.release`."""
        return self.engine.release(version)

    def advance(self) -> None:
        """Tick the round engine once."""
        self.engine.tick()

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event, max_seconds: float | None = None) -> None:
        """Step until ``stop`` is set (or ``max_seconds`` passed).

        A store outage never ends the service: the step is retried with exponential back-off
        (full jitter, at most :data:`STORE_BACKOFF_MAX_S`), the message in hand kept
        unacknowledged. Here batches of updates are stored on a writer thread while the next
        one is screened (:mod:`cloud_aggregator.service_batches`); the batch in flight is
        stored (or left unacknowledged) before this returns.
        """
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        self._writer = BatchWriter()  # batches stored while the next one is screened
        try:
            while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
                try:
                    self.step()
                    self._backoff.reset()
                except StoreUnavailableError as exc:
                    delay = self._backoff.next_delay()
                    _LOGGER.warning("store unavailable (%s): retrying in %.1f s", exc.cause, delay)
                    stop.wait(delay)
        finally:
            writer, self._writer = self._writer, None
            failed = writer.close()
            if failed is not None:  # unacknowledged: the broker delivers them again
                _LOGGER.warning("%d updates not stored at stop: %s", len(failed.messages),
                                failed.error)  # fmt: skip

    def step(self) -> None:
        """Drain inbound messages for up to ``poll_s``, then tick the engine.

        Whole updates and status reports are gathered into batches of up to :data:`BATCH_MAX`
        each, stored in one transaction per batch (updates validated together), then
        acknowledged; other messages (chunks too, also those an older device sends on the
        whole-update topic) are handled one by one. Inside :meth:`run` the last update batch
        may still be committing on the writer thread when this returns; the round is ticked
        only once it is stored.
        While messages stream in, the round is re-examined at most every
        :data:`ADVANCE_EVERY_S` (each look is a few store queries over the round's updates), and
        at once when an update batch brings the open round to its target
        (:meth:`RoundEngine.completes_round`): the round closes without waiting out the poll.
        Raises StoreUnavailableError when the store is down; the messages in hand are kept and
        handled first on the next step.
        """
        deadline = time.monotonic() + self.s.poll_s
        backlog, self._in_hand = self._in_hand, []
        busy = bool(backlog)
        batches: dict[str, list[Inbound]] = {"status": [], "update": []}
        try:
            while True:
                msg = backlog.pop(0) if backlog else None
                msg = msg or self.broker.get(max(0.0, deadline - time.monotonic()))
                if msg is None:
                    break
                busy = True
                kind = batch_kind(msg)
                if kind is not None:
                    batches[kind].append(msg)
                    last = kind == "update" and self.engine.completes_round(
                        len(batches[kind]), functools.partial(_senders, batches[kind])
                    )
                    if last or len(batches[kind]) >= BATCH_MAX:
                        self._handle_batch(kind, batches[kind])
                        batches[kind] = []
                    if last and not backlog:  # the round's last expected update: look now
                        self._next_advance = 0.0
                        break
                else:
                    self._in_hand = [msg]
                    self.handle(msg)
                    self._in_hand = []
                if time.monotonic() >= deadline and not backlog:
                    break
            for kind in batches:
                self._handle_batch(kind, batches[kind])
                batches[kind] = []
        except StoreUnavailableError:
            self._in_hand = [*self._in_hand, *batches["status"], *batches["update"], *backlog]
            raise
        if not busy or time.monotonic() >= self._next_advance:
            self._settle()  # the round is looked at with every screened update stored
            self._next_advance = time.monotonic() + ADVANCE_EVERY_S
            try:
                self.engine.tick()
            except StoreUnavailableError:
                raise
            except Exception:  # keep ingesting; the round is looked at again next tick
                _LOGGER.exception("advancing the %s round failed", self.s.task)

    # ------------------------------------------------------------------ inbound
    def handle(self, msg: Inbound) -> None:
        """Handle one message, then acknowledge it (after it is stored).

        A malformed message is counted and logged with its topic and acknowledged (a
        redelivery would fail the same way); a bug costs that one message. Only a store outage
        propagates (StoreUnavailableError), unacknowledged, so the message is handled again
        once the store is back.
        """
        try:
            self._dispatch(msg)
        except StoreUnavailableError:
            raise
        except proto.ProtocolError as exc:
            self.rejects.add(Reject.SCHEMA)
            _LOGGER.warning(
                "rejected message on %s (%d bytes): %s", msg.topic[:200], len(msg.payload), exc
            )
        except Exception:  # a bug must cost one message, not a crash loop on redelivery
            self.rejects.add(Reject.INTERNAL)
            _LOGGER.exception(
                "message on %s (%d bytes) failed; dropped", msg.topic[:200], len(msg.payload)
            )
        self.broker.ack(msg)

    def _dispatch(self, msg: Inbound) -> None:
        topic = proto.parse_topic(msg.topic)
        if topic.channel in INGESTED:
            receipt = self.ingest.handle(topic, msg.payload)
            if receipt is not None:  # not awaited: a lost receipt only makes the device resend
                self.broker.publish(receipt.topic, receipt.payload, timeout_s=0.0)
        elif topic.channel == proto.Channel.UPDATE:
            whole = self.chunks.feed(topic.ident, msg.payload, self.s.chunk_bytes)
            if whole is not None:
                self.handle_update(topic.ident, whole.payload)
                if whole.key is not None:
                    self.chunks.done(whole.key)

    def handle_update(self, sender: str, payload: bytes) -> UpdateStatus | None:
        """Validate and store one whole update (see :meth:`RoundEngine.admit`)."""
        return self.engine.admit(sender, payload)


def subscriptions(shared_group: str) -> list[str]:
    """What the aggregator subscribes: whole updates, predictions and label receipts (shared
    between replicas: each message to one of them), the chunks of split updates (every replica:
    see :func:`common.protocol.chunk_subscription`), statuses (every replica: each keeps its
    own view of who is online)."""
    shared = shared_group or None
    return [
        proto.client_subscription(proto.Channel.UPDATE, shared),
        proto.chunk_subscription(proto.Channel.UPDATE),
        proto.client_subscription(proto.Channel.PRED, shared),
        proto.client_subscription(proto.Channel.LABEL_ACK, shared),
        proto.subscription(proto.Channel.STATUS),
    ]


def _senders(batch: list[Inbound]) -> list[str]:
    """The client ids of a batch's topics (:func:`batch_kind` parsed them already)."""
    return [proto.parse_topic(m.topic).ident for m in batch]


def settle_heap(gen0: int = 10_000) -> None:
    """Prepare the process's garbage collector for serving (call once, after start-up).

    ``gc.freeze`` moves every object alive now (modules, numpy, the store pool, the release)
    out of the collector's sight, and a larger first generation makes collections rarer: a
    round of 5,000 updates allocates millions of short-lived objects, and full collections
    walking the start-up heap cost 0.45 s in 25,000 updates with pauses of up to 61 ms inside
    a round (0.09 s with it; ``bench/fl_throughput.py``). Nothing frozen is ever collected,
    so it is done once, by the process's entry point, not by a library call.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, max(gen1, 20), max(gen2, 20))
