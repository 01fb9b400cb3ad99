"""The aggregator service: rounds over MQTT with all state in the store.

One loop (``step``) drains inbound messages and advances the active round. Everything needed to
continue lives in the store, so ``kill -9`` at any moment and a restart resume the round:

- an update, or each chunk of a split one, is acknowledged to the broker only after the
  store has it (idempotent by ``update_id``; chunks in ``update_chunk``, see
  :mod:`cloud_aggregator.update_chunks`), so nothing acknowledged is lost;
- an open round keeps collecting after a restart (its announcement is re-published);
- a round killed while aggregating is re-claimed (same worker at once, others after the lease)
  and aggregated again from the stored updates; ``finalize_round`` is one conditional
  transaction, so a round is committed exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cloud_aggregator import rounds as rl
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.ingest import CHANNELS as INGESTED
from cloud_aggregator.ingest import Ingestor
from cloud_aggregator.mqtt_io import Inbound, PahoBroker
from cloud_aggregator.publisher import RetainedState, announcement_for
from cloud_aggregator.releases import (
    RELEASE_FORMAT,
    load_stored,
    release_from_model_dir,
    stored_blob,
    version_name,
    wire_release,
)
from cloud_aggregator.round_closing import Distiller, Evaluator, close_round, log_round, run_info
from cloud_aggregator.round_progression import open_next_round, round_progress
from cloud_aggregator.update_chunks import DurableReassembler
from cloud_aggregator.update_intake import admit_update
from cloud_aggregator.validation import Reject, RejectCounter
from common import fl_protocol as fl
from common import protocol as proto
from common.errors import ConfigError
from store import (
    DesiredTraining,
    Round,
    RoundState,
    Store,
    StoreUnavailableError,
    TrainingControl,
    UpdateStatus,
)
from store.retry import Backoff

_LOGGER = logging.getLogger(__name__)

__all__ = ["ADVANCE_EVERY_S", "AggregatorService", "Distiller", "Evaluator", "subscriptions"]

ADVANCE_EVERY_S = 0.5
STORE_BACKOFF_MAX_S = 15.0


class AggregatorService:
    """Runs federated rounds for one task.

    Parameters
    ----------
    store : Store
        Source of truth for rounds, updates and models.
    broker : PahoBroker
        Connected MQTT adapter (subscribed to updates and statuses).
    settings : AggregatorSettings
        Service settings.
    evaluator : callable, optional
        ``release -> metrics`` run on each new global model (server-held evaluation set).
    distiller : callable, optional
        ``release -> release`` (``cloud_aggregator.distillation.distill_release`` bound to a
        transfer set), run every ``settings.distill_every`` rounds.
    clock : callable
        Unix seconds (tests inject a fake).
    """

    def __init__(
        self,
        store: Store,
        broker: PahoBroker,
        settings: AggregatorSettings,
        *,
        evaluator: Evaluator | None = None,
        distiller: Distiller | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.broker, self.s = store, broker, settings
        self.evaluator = evaluator
        self.distiller = distiller
        self.clock = clock
        self.worker = settings.worker_name
        self.ingest = Ingestor(store)
        self.online = self.ingest.online  # last status per device (round selection)
        self.rejects = RejectCounter()
        self.chunks = DurableReassembler(store, max_size=settings.max_update_bytes)
        self.republish = threading.Event()
        self.republish.set()
        self.history: list[dict[str, Any]] = []  # closed/failed rounds of this process (simulate)
        self._release_cache: dict[int, tuple[fl.ModelRelease, fl.Tensors]] = {}
        self.retained = RetainedState(broker, settings.chunk_bytes)
        self._rng = np.random.default_rng(settings.seed)
        self._open_rounds: dict[int, Round] = {}  # the store still refuses updates to closed rounds
        self._next_advance = 0.0
        self._in_hand: Inbound | None = None  # a message whose handling met a store outage
        self._backoff = Backoff(base_s=0.5, max_s=STORE_BACKOFF_MAX_S)

    # ------------------------------------------------------------------ setup
    def ensure_initial_model(self) -> int:
        """The latest release version, seeding ``initial_model`` into an empty store."""
        latest = self.store.latest_model(format=RELEASE_FORMAT)
        if latest is not None:
            return latest.version
        if self.s.initial_model is None:
            raise ConfigError(
                "the store holds no model: pass --initial-model path/to/beat_int8.onnx"
            )
        rel = release_from_model_dir(self.s.initial_model)
        mv = self.store.put_model(
            stored_blob(rel, {}),
            format=RELEASE_FORMAT,
            metrics={"source": str(self.s.initial_model)},
        )
        _LOGGER.info("seeded model %s from %s", version_name(mv.version), self.s.initial_model)
        return mv.version

    def release(self, version: int) -> tuple[fl.ModelRelease, fl.Tensors]:
        """Decoded release and server state of a stored version (cached)."""
        if version not in self._release_cache:
            self._release_cache[version] = load_stored(self.store.get_model_bytes(version))
            while len(self._release_cache) > 4:
                self._release_cache.pop(next(iter(self._release_cache)))
        return self._release_cache[version]

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event, max_seconds: float | None = None) -> None:
        """Step until ``stop`` is set (or ``max_seconds`` passed).

        A store outage never ends the service: the step is retried with exponential back-off
        (full jitter, at most :data:`STORE_BACKOFF_MAX_S`), the message in hand kept unacknowledged.
        """
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            try:
                self.step()
                self._backoff.reset()
            except StoreUnavailableError as exc:
                delay = self._backoff.next_delay()
                _LOGGER.warning("store unavailable (%s): retrying in %.1f s", exc.cause, delay)
                stop.wait(delay)

    def step(self) -> None:
        """Drain inbound messages for up to ``poll_s``, then advance the round.

        While updates stream in, the round is re-examined at most every
        :data:`ADVANCE_EVERY_S` (each look is a few store queries over the round's updates).
        Raises StoreUnavailableError when the store is down; the message being handled is kept
        and handled first on the next step.
        """
        deadline = time.monotonic() + self.s.poll_s
        busy = False
        while True:
            msg = self._in_hand or self.broker.get(max(0.0, deadline - time.monotonic()))
            if msg is None:
                break
            busy = True
            self._in_hand = msg
            self.handle(msg)
            self._in_hand = None
            if time.monotonic() >= deadline:
                break
        if not busy or time.monotonic() >= self._next_advance:
            self._next_advance = time.monotonic() + ADVANCE_EVERY_S
            try:
                self.advance()
            except StoreUnavailableError:
                raise
            except Exception:  # keep ingesting; the round is looked at again next tick
                _LOGGER.exception("advancing the %s round failed", self.s.task)

    # ------------------------------------------------------------------ inbound
    def handle(self, msg: Inbound) -> None:
        """Handle one message, then acknowledge it (after it is stored).

        Whatever a message holds, it costs the service at most this message: a malformed one
        is counted and logged with its sender and acknowledged (a redelivery would fail the
        same way). Only a store outage propagates (StoreUnavailableError), unacknowledged, so
        the message is handled again once the store is back.
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
        """Validate and store one whole update; returns the store's verdict (None if refused)."""
        return admit_update(
            self.store,
            self.s,
            sender,
            payload,
            open_rounds=self._open_rounds,
            release=self.release,
            rejects=self.rejects,
            clock=self.clock,
        )

    # ------------------------------------------------------------------ round progression
    def advance(self) -> None:
        """Open, close, fail or keep waiting on the active round, as the control says."""
        control = self.store.get_training_control()
        active = self.store.active_round(self.s.task)
        self._open_rounds = (
            {} if active is None or active.state != RoundState.OPEN else {active.round_id: active}
        )
        if control.desired != DesiredTraining.RUNNING or control.task not in ("", self.s.task):
            if active is not None and active.state == RoundState.OPEN:
                self.store.fail_round(active.round_id, "training stopped")
                self.retained.clear_announcement()
            return
        if active is None:
            self._open_next(control)
            return
        if self.republish.is_set() or self.retained.announced != active.round_id:
            self._announce(active)
        if active.state == RoundState.AGGREGATING:
            self._close(active, control)
            return
        progress = round_progress(self.store, active, self.online)
        decision = rl.decide(progress, self.clock())
        if decision == rl.Decision.CLOSE:
            self._close(active, control)
        elif decision == rl.Decision.FAIL:
            reported = len(progress.reported)
            why = f"quorum not reached: {reported} of {active.quorum} needed, {progress.failures} dropped out"
            self._open_rounds.pop(active.round_id, None)
            if self.store.fail_round(active.round_id, why):
                log_round(active, reported, progress.failures, extra=f"FAILED ({why})")
                failed = {"round_id": active.round_id, "state": "failed", "reason": why}
                self.history.append({**failed, **run_info(active)})

    def _open_next(self, control: TrainingControl) -> None:
        rnd = open_next_round(
            self.store,
            self.s,
            control,
            worker=self.worker,
            online=self.online,
            retained=self.retained,
            release=self.release,
            base_version=self.ensure_initial_model,
            clock=self.clock,
        )
        if rnd is not None:
            self._announce(rnd)

    # ------------------------------------------------------------------ publishing
    def _announce(self, rnd: Round) -> None:
        base = int(rnd.base_version or 0)
        rel, _ = self.release(base)
        payload, sha = wire_release(rel, base)
        if base not in self.retained.models or self.republish.is_set():
            self.retained.publish_model(base, payload)
        now = self.clock()
        ann = announcement_for(
            rnd.round_id, rnd.config, base, sha, rnd.deadline, now, rnd.selected_clients
        )
        self.republish.clear()
        if not self.retained.announce(ann, rnd.deadline - now):
            self.republish.set()  # retried on the next step

    # ------------------------------------------------------------------ closing
    def _close(self, rnd: Round, control: TrainingControl) -> None:
        self._open_rounds.pop(rnd.round_id, None)  # from now on its updates are late
        closed = close_round(
            self.store,
            self.s,
            rnd,
            control,
            worker=self.worker,
            release=self.release,
            rng=self._rng,
            evaluator=self.evaluator,
            distiller=self.distiller,
        )
        if closed is None:
            return
        self.history.append(closed.record)
        if closed.release is None or closed.version is None:
            return  # refused by the release gate: the current model stays published
        payload, _ = wire_release(closed.release, closed.version)
        self.retained.publish_model(closed.version, payload)


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
