"""Intake of one whole client update: decode, check against its round, validate, store.

A refused update is data, not an exception: it is counted, logged, and (when its round is
known) recorded with its reason by the store, so the dashboard shows who sent what and why it
did not count. An accepted update is stored idempotently by ``update_id`` before the broker is
acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cloud_aggregator.engine_base import EngineBase
from cloud_aggregator.releases import version_name
from cloud_aggregator.validation import Reject, ValidationPolicy, validate_update
from common import fl_protocol as fl
from common import protocol as proto
from store import NewUpdate, NotFoundError, RefusedUpdate, Round, RoundState, UpdateStatus

_LOGGER = logging.getLogger(__name__)


@dataclass
class Screened:
    """A screened batch: updates to store (by round, with their input index) and refusals."""

    size: int
    accepted: dict[int, list[tuple[int, NewUpdate]]] = field(default_factory=dict)
    refused: list[RefusedUpdate] = field(default_factory=list)


class IntakeMixin(EngineBase):
    """Admits updates into the open round, one at a time or in batches."""

    def admit(self, sender: str, payload: bytes) -> UpdateStatus | None:
        """Validate and store one whole update; the store's verdict (None if refused first).

        ``sender`` is the client id of the topic (the broker binds it to the login).
        """
        return self.admit_many([(sender, payload)])[0]

    def admit_many(self, items: Sequence[tuple[str, bytes]]) -> list[UpdateStatus | None]:
        """Validate a batch of whole updates and store the valid ones in one transaction per
        round (a few round trips for the batch, not per update); verdicts in input order.

        A refused update is data: counted, logged and, when its round is known, recorded with
        its reason (refusals in one batch insert too). The two halves, :meth:`screen_many` and
        :meth:`store_screened`, may run on different threads (the service overlaps them).
        """
        return self.store_screened(self.screen_many(items))

    def screen_many(self, items: Sequence[tuple[str, bytes]]) -> Screened:
        """Decode, check and validate a batch (no store writes; the engine's thread only)."""
        screened = Screened(len(items))
        for i, (sender, payload) in enumerate(items):
            verdict = self._screen(sender, payload)
            if isinstance(verdict, RefusedUpdate):
                screened.refused.append(verdict)
            elif verdict is not None:
                screened.accepted.setdefault(verdict[0], []).append((i, verdict[1]))
        for rid, group in screened.accepted.items():
            if rid in self._open:
                if self._screened_in[0] != rid:
                    self._screened_in = (rid, set())
                self._screened_in[1].update(u.client_id for _, u in group)
        return screened

    def completes_round(self, pending: int, senders: Callable[[], Iterable[str]]) -> bool:
        """True when the ``pending`` updates not yet screened (their ``senders``, asked only
        near the end) are the last the open round waits for: with the clients screened in
        here, every invited one has answered. The service then stores them and looks at the
        round at once instead of waiting out its poll. A hint only, given once per round (the
        round's tally in the store decides; should it not close, the poll takes over). A round
        that over-selected closes at its target by the tick as before."""
        if len(self._open) != 1:
            return False
        ((rid, rnd),) = self._open.items()
        target = len(rnd.selected_clients)
        seen = self._screened_in[1] if self._screened_in[0] == rid else set()
        if target == 0 or self._hinted == rid or len(seen) + pending < target:
            return False
        invited = self._selected(rnd)
        if len(seen.union(s for s in senders() if s in invited)) < target:
            return False
        self._hinted = rid
        return True

    def store_screened(self, screened: Screened) -> list[UpdateStatus | None]:
        """Store a screened batch: its refusals and its updates, one transaction per round.

        Touches only the store, the reject counts and the log, so it may run on a writer
        thread while the engine's thread screens the next batch.
        """
        verdicts: list[UpdateStatus | None] = [None] * screened.size
        self.store.reject_updates(screened.refused)
        for rid, group in screened.accepted.items():
            receipts = self.store.record_updates(rid, [u for _, u in group])
            for (i, u), receipt in zip(group, receipts, strict=True):
                verdicts[i] = receipt.status
                if receipt.status == UpdateStatus.REJECTED:
                    self.rejects.add(receipt.reason or "store")
                    _LOGGER.warning(
                        "round %d: store refused update of %s: %s", rid, u.client_id, receipt.reason
                    )
        return verdicts

    def _screen(self, sender: str, payload: bytes) -> tuple[int, NewUpdate] | RefusedUpdate | None:
        """An update to store, one to log as refused, or None (not even its round is known)."""
        try:
            u = fl.decode_update(payload)
        except proto.ProtocolError as exc:
            self.rejects.add(Reject.SCHEMA)
            _LOGGER.warning("undecodable update from %s (%d bytes): %s", sender, len(payload), exc)
            return None
        if u.client_id != sender:
            self.rejects.add(Reject.SCHEMA)
            _LOGGER.warning("update on update/%s claims client %s", sender, u.client_id)
            return None
        rid = int(u.round_id)
        try:
            rnd = self._open.get(rid) or self.store.get_round(rid)
        except NotFoundError:
            self.rejects.add(Reject.WRONG_ROUND)
            _LOGGER.warning("update from %s for unknown round %s", sender, rid)
            return None
        reason = self._check(u, rnd, sender)
        if reason is not None:
            self.rejects.add(reason)
            _LOGGER.warning("round %d: %s update from %s rejected", rid, reason, sender)
            return RefusedUpdate(rid, sender, u.update_id, str(reason), len(payload))
        metrics = dict(u.metrics, bytes=float(len(payload)), compression_error=u.compression_error)
        self._decoded.put(rid, payload, u, metrics)  # the round's aggregation reuses it
        return rid, NewUpdate(sender, u.update_id, payload, u.n_examples, metrics)

    def _check(self, u: fl.ClientUpdate, rnd: Round, sender: str) -> Reject | None:
        if rnd.state != RoundState.OPEN or self.clock() > rnd.deadline:
            return Reject.LATE
        if rnd.selected_clients and sender not in self._selected(rnd):
            return Reject.NOT_SELECTED
        base = int(rnd.base_version or 0)
        shapes = {k: tuple(v.shape) for k, v in self.release(base)[0].tensors.items()}
        policy = ValidationPolicy(
            self.s.norm_bound, max_compression_error=self.s.max_compression_error
        )
        return validate_update(u, shapes, version_name(base), policy)

    def _selected(self, rnd: Round) -> frozenset[str]:
        """The round's invited clients as a set, built once per round (a round may invite
        100,000 devices: a scan of the tuple per update would cost as much as the update)."""
        cached = self._selected_sets.get(rnd.round_id)
        if cached is None:
            cached = frozenset(rnd.selected_clients)
            self._selected_sets = {rnd.round_id: cached}  # only the open round's is needed
        return cached
