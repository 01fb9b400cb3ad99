"""Intake of one whole client update: decode, check against its round, validate, store.

A refused update is data, not an exception: it is counted in a
:class:`~cloud_aggregator.validation.RejectCounter`, logged, and (when its round is known)
recorded with its reason by the store, so the dashboard shows who sent what and why it did not
count. An accepted update is stored idempotently by ``update_id`` before the broker is acked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.releases import version_name
from cloud_aggregator.validation import Reject, RejectCounter, ValidationPolicy, validate_update
from common import fl_protocol as fl
from common import protocol as proto
from store import NotFoundError, Round, RoundState, Store, UpdateStatus

_LOGGER = logging.getLogger(__name__)


def admit_update(
    store: Store,
    settings: AggregatorSettings,
    sender: str,
    payload: bytes,
    *,
    open_rounds: Mapping[int, Round],
    release: Callable[[int], tuple[fl.ModelRelease, fl.Tensors]],
    rejects: RejectCounter,
    clock: Callable[[], float],
) -> UpdateStatus | None:
    """Validate and store one whole update.

    Parameters
    ----------
    store : Store
        Where rounds live and the update (or its rejection) is recorded.
    settings : AggregatorSettings
        Validation bounds (``norm_bound``, ``max_compression_error``).
    sender : str
        Client id from the topic ``update/{sender}`` (the broker's ACL binds it to the login).
    payload : bytes
        The reassembled, still untrusted update message.
    open_rounds : mapping of int to Round
        The open round as last seen (saves a store query per update).
    release : callable
        ``version -> (release, state)`` of the round's base model (tensor names and shapes).
    rejects : RejectCounter
        Counter of refusals by reason.
    clock : callable
        Unix seconds (the round deadline is compared with it).

    Returns
    -------
    UpdateStatus or None
        The store's verdict; None when the update was refused before reaching the store.
    """
    try:
        u = fl.decode_update(payload)
    except proto.ProtocolError as exc:
        rejects.add(Reject.SCHEMA)
        _LOGGER.warning("undecodable update from %s (%d bytes): %s", sender, len(payload), exc)
        return None
    if u.client_id != sender or not u.round_id.isdigit():
        rejects.add(Reject.SCHEMA)
        _LOGGER.warning(
            "update on update/%s claims client %s round %s", sender, u.client_id, u.round_id
        )
        return None
    rid = int(u.round_id)
    try:
        rnd = open_rounds.get(rid) or store.get_round(rid)
    except NotFoundError:
        rejects.add(Reject.WRONG_ROUND)
        _LOGGER.warning("update from %s for unknown round %s", sender, rid)
        return None
    reason: Reject | None = None
    if rnd.state != RoundState.OPEN or clock() > rnd.deadline:
        reason = Reject.LATE
    elif rnd.selected_clients and sender not in rnd.selected_clients:
        reason = Reject.NOT_SELECTED
    else:
        rel, _ = release(int(rnd.base_version or 0))
        shapes = {k: tuple(v.shape) for k, v in rel.tensors.items()}
        policy = ValidationPolicy(
            settings.norm_bound, max_compression_error=settings.max_compression_error
        )
        reason = validate_update(u, shapes, version_name(int(rnd.base_version or 0)), policy)
    if reason is not None:
        rejects.add(reason)
        store.reject_update(
            round_id=rid,
            client_id=sender,
            update_id=u.update_id,
            reason=str(reason),
            size_bytes=len(payload),
        )
        _LOGGER.warning("round %d: %s update from %s rejected", rid, reason, sender)
        return None
    metrics = dict(u.metrics, bytes=float(len(payload)), compression_error=u.compression_error)
    receipt = store.record_update(
        round_id=rid,
        client_id=sender,
        update_id=u.update_id,
        blob=payload,
        n_samples=u.n_examples,
        metrics=metrics,
    )
    if receipt.status == UpdateStatus.REJECTED:
        rejects.add(receipt.reason or "store")
        _LOGGER.warning("round %d: store refused update of %s: %s", rid, sender, receipt.reason)
    return receipt.status
