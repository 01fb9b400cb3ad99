"""Contract: a batch of one round's updates is stored in one transaction with the rules of a
single update (idempotent, one per client, only selected clients of an open round), and refused
updates are logged in a batch (both backends)."""

from __future__ import annotations

from store import NewUpdate, RefusedUpdate, Store, UpdateStatus
from tests.store.test_contract_updates import _open


def test_a_batch_follows_the_single_update_rules(store: Store) -> None:
    # Prepare: c1 already sent u-1 alone; the batch repeats it and has every other case
    rid = _open(store, ("c1", "c2", "c3", "c4"))
    store.record_update(round_id=rid, client_id="c1", update_id="u-1", blob=b"a", n_samples=3)
    batch = [
        NewUpdate("c1", "u-1", b"a", 3),  # redelivery: duplicate
        NewUpdate("c2", "u-2", b"b", 4, {"loss": 0.1}),  # new
        NewUpdate("c2", "u-2b", b"c", 4),  # the same client again in the batch
        NewUpdate("zz", "u-z", b"d", 4),  # not selected
        NewUpdate("c3", "u-3", b"e", 0),  # no examples
        NewUpdate("c4", "u-1", b"other", 2),  # an id reused for other content
        NewUpdate("c4", "u-4", b"f", 2),  # new
    ]
    # Execute
    receipts = store.record_updates(rid, batch)
    # Assert: receipts in input order
    assert [r.status for r in receipts] == [
        UpdateStatus.DUPLICATE, UpdateStatus.ACCEPTED, UpdateStatus.REJECTED,
        UpdateStatus.REJECTED, UpdateStatus.REJECTED, UpdateStatus.REJECTED, UpdateStatus.ACCEPTED,
    ]  # fmt: skip
    assert sorted(u.client_id for u in store.list_updates(rid)) == ["c1", "c2", "c4"]
    assert store.list_updates(rid)[1].metrics == {"loss": 0.1}
    reasons = sorted(r.reason for r in store.list_rejected_updates(rid))
    assert reasons == sorted(["client already sent an update for this round",
                              "client not selected for this round", "n_samples must be >= 1, got 0",
                              "update_id reused for other content"])  # fmt: skip
    # Execute / Assert: the whole batch again changes nothing
    again = store.record_updates(rid, [batch[1], batch[6]])
    assert [r.status for r in again] == [UpdateStatus.DUPLICATE, UpdateStatus.DUPLICATE]
    assert store.count_updates(rid) == 3


def test_a_batch_for_a_closed_or_unknown_round_is_refused(store: Store) -> None:
    rid = _open(store)
    store.claim_round(rid, "w", lease_s=10)
    closed = store.record_updates(rid, [NewUpdate("c1", "u-1", b"a", 3)])
    unknown = store.record_updates(rid + 99, [NewUpdate("c1", "u-9", b"a", 3)])
    assert closed[0].status is UpdateStatus.REJECTED and "round is" in closed[0].reason
    assert unknown[0].reason == "unknown round"
    assert store.count_updates(rid) == 0


def test_refused_updates_are_logged_in_a_batch(store: Store) -> None:
    rid = _open(store)
    store.reject_updates([RefusedUpdate(rid, "c1", "u-1", "norm", 120),
                          RefusedUpdate(rid, "c2", "u-2", "late", 80)])  # fmt: skip
    rows = store.list_rejected_updates(rid)
    assert [(r.client_id, r.reason) for r in rows] == [("c1", "norm"), ("c2", "late")]
    store.reject_updates([])


def test_a_message_repeated_within_one_batch_is_a_duplicate(store: Store) -> None:
    # Prepare: QoS 1 redelivers; both copies can land in one batch (before: the second copy
    # was refused as "client already sent an update" and logged as a rejection)
    rid = _open(store, ("c1", "c2"))
    batch = [
        NewUpdate("c1", "u-1", b"a", 3),
        NewUpdate("c1", "u-1", b"a", 3),  # the same message again
        NewUpdate("c2", "u-2", b"b", 3),
        NewUpdate("c2", "u-2", b"tampered", 3),  # the same id, other content
    ]
    # Execute
    receipts = store.record_updates(rid, batch)
    # Assert
    assert [r.status for r in receipts] == [
        UpdateStatus.ACCEPTED, UpdateStatus.DUPLICATE, UpdateStatus.ACCEPTED, UpdateStatus.REJECTED,
    ]  # fmt: skip
    assert [r.reason for r in store.list_rejected_updates(rid)] == [
        "update_id reused for other content"
    ]
    assert store.count_updates(rid) == 2


def test_stored_updates_in_a_batch_are_judged_against_the_stored_copy(store: Store) -> None:
    # Prepare: c1 and c2 stored; their redeliveries come mixed with new ids of the same clients
    rid = _open(store, ("c1", "c2", "c3"))
    store.record_updates(rid, [NewUpdate("c1", "u-1", b"a", 3), NewUpdate("c2", "u-2", b"b", 3)])
    batch = [
        NewUpdate("c1", "u-1", b"a", 3),  # redelivery first, then a new id of the same client
        NewUpdate("c1", "u-1b", b"c", 3),
        NewUpdate("c2", "u-2b", b"d", 3),  # a new id first, then the redelivery
        NewUpdate("c2", "u-2", b"b", 3),
        NewUpdate("c2", "u-2", b"b", 3),  # and again in the same batch
        NewUpdate("c3", "u-1", b"e", 3),  # a stored id for other content
        NewUpdate("c3", "u-3", b"f", 3),  # new
    ]
    # Execute
    receipts = store.record_updates(rid, batch)
    # Assert
    assert [r.status for r in receipts] == [
        UpdateStatus.DUPLICATE, UpdateStatus.REJECTED, UpdateStatus.REJECTED,
        UpdateStatus.DUPLICATE, UpdateStatus.DUPLICATE, UpdateStatus.REJECTED,
        UpdateStatus.ACCEPTED,
    ]  # fmt: skip
    assert (
        receipts[1].reason == receipts[2].reason == "client already sent an update for this round"
    )
    assert receipts[5].reason == "update_id reused for other content"
    assert sorted(u.update_id for u in store.list_updates(rid)) == ["u-1", "u-2", "u-3"]


def test_a_redelivery_after_the_round_closed_is_a_duplicate_in_a_batch(store: Store) -> None:
    # Prepare
    rid = _open(store, ("c1", "c2"))
    store.record_updates(rid, [NewUpdate("c1", "u-1", b"a", 3)])
    store.claim_round(rid, "w", lease_s=10)
    # Execute: the stored one again, and a late new one
    receipts = store.record_updates(rid, [NewUpdate("c1", "u-1", b"a", 3),
                                          NewUpdate("c2", "u-2", b"b", 3)])  # fmt: skip
    # Assert
    assert [r.status for r in receipts] == [UpdateStatus.DUPLICATE, UpdateStatus.REJECTED]
    assert receipts[1].reason == "round is aggregating"
    assert [r.update_id for r in store.list_rejected_updates(rid)] == ["u-2"]
