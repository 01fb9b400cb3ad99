"""Intake of one whole client update: decode, check against its round, validate, store.

A refused update is data, not an exception: it is counted, logged, and (when its round is
known) recorded with its reason by the store, so the dashboard shows who sent what and why it
did not count. An accepted update is stored idempotently by ``update_id`` before the broker is
acknowledged.
"""

from __future__ import annotations

import logging

from cloud_aggregator.engine_base import EngineBase
from cloud_aggregator.releases import version_name
from cloud_aggregator.validation import Reject, ValidationPolicy, validate_update
from common import fl_protocol as fl
from common import protocol as proto
from store import NotFoundError, Round, RoundState, UpdateStatus

_LOGGER = logging.getLogger(__name__)


class IntakeMixin(EngineBase):
    """Admits updates into the open round."""

    def admit(self, sender: str, payload: bytes) -> UpdateStatus | None:
        """Validate and store one whole update; the store's verdict (None if refused first).

        A refused update is data: counted, logged and, when its round is known, recorded with
        its reason. ``sender`` is the client id of the topic (the broker binds it to the login).
        """
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
            self.store.reject_update(
                round_id=rid,
                client_id=sender,
                update_id=u.update_id,
                reason=str(reason),
                size_bytes=len(payload),
            )
            _LOGGER.warning("round %d: %s update from %s rejected", rid, reason, sender)
            return None
        metrics = dict(u.metrics, bytes=float(len(payload)), compression_error=u.compression_error)
        receipt = self.store.record_update(
            round_id=rid,
            client_id=sender,
            update_id=u.update_id,
            blob=payload,
            n_samples=u.n_examples,
            metrics=metrics,
        )
        if receipt.status == UpdateStatus.REJECTED:
            self.rejects.add(receipt.reason or "store")
            _LOGGER.warning("round %d: store refused update of %s: %s", rid, sender, receipt.reason)
        return receipt.status

    def _check(self, u: fl.ClientUpdate, rnd: Round, sender: str) -> Reject | None:
        if rnd.state != RoundState.OPEN or self.clock() > rnd.deadline:
            return Reject.LATE
        if rnd.selected_clients and sender not in rnd.selected_clients:
            return Reject.NOT_SELECTED
        base = int(rnd.base_version or 0)
        shapes = {k: tuple(v.shape) for k, v in self.release(base)[0].tensors.items()}
        policy = ValidationPolicy(
            self.s.norm_bound, max_compression_error=self.s.max_compression_error
        )
        return validate_update(u, shapes, version_name(base), policy)
