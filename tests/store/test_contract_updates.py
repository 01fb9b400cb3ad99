"""Contract: client updates are idempotent, one per client per round, rejections logged."""

from __future__ import annotations

import hashlib

import pytest

from store import Store, UpdateStatus
from tests.store.conftest import T0


def _open(store: Store, selected: tuple[str, ...] = ("c1", "c2", "c3")) -> int:
    return store.open_round(
        task="beat",
        strategy="fedavg",
        base_version=None,
        quorum=2,
        deadline=T0 + 60,
        selected_clients=selected,
    ).round_id


def test_accepted_update_is_stored_with_blob_and_metadata(store: Store) -> None:
    # Prepare
    rid = _open(store)
    blob = bytes(range(256)) * 40

    # Execute
    receipt = store.record_update(
        round_id=rid, client_id="c1", update_id="u-1", blob=blob, n_samples=120,
        metrics={"loss": 0.4},
    )  # fmt: skip

    # Assert
    assert receipt.status is UpdateStatus.ACCEPTED and receipt.update is not None
    (stored,) = store.list_updates(rid)
    assert stored.blob == blob
    assert stored.sha256 == hashlib.sha256(blob).hexdigest() == receipt.update.sha256
    assert (stored.client_id, stored.n_samples, stored.size_bytes) == ("c1", 120, len(blob))
    assert stored.metrics == {"loss": 0.4} and stored.received_at == T0
    (meta,) = store.list_updates(rid, include_blobs=False)
    assert meta.blob is None and meta.sha256 == stored.sha256
    assert store.count_updates(rid) == 1
    assert store.update_digests(rid) == {"u-1": stored.sha256}


def test_client_metrics_are_those_of_the_updates_overlaid_by_recorded_ones(store: Store) -> None:
    # Prepare: two accepted updates with their metrics, a refused one, a recorded metric
    rid = _open(store)
    for cid, loss in (("c1", 0.4), ("c2", 0.7)):
        store.record_update(round_id=rid, client_id=cid, update_id=f"u-{cid}", blob=b"x",
                            n_samples=5, metrics={"loss": loss, "note": "text", "ok": True})  # fmt: skip
    store.reject_update(round_id=rid, client_id="c3", update_id="u-c3", reason="late")

    # Execute
    store.record_metrics(rid, {"loss": 0.5, "auc": 0.9}, client_id="c2")

    # Assert: numbers only; a recorded value wins; nothing for the refused client
    assert store.client_metrics(rid) == {"c1": {"loss": 0.4}, "c2": {"loss": 0.5, "auc": 0.9}}


def test_redelivered_update_is_a_duplicate_even_after_the_round_closed(store: Store) -> None:
    # Prepare
    rid = _open(store)
    kwargs = {"round_id": rid, "client_id": "c1", "update_id": "u-1", "n_samples": 5}
    store.record_update(blob=b"abc", **kwargs)  # type: ignore[arg-type]

    # Execute
    again = store.record_update(blob=b"abc", **kwargs)  # type: ignore[arg-type]
    store.claim_round(rid, "w", lease_s=10)
    late = store.record_update(blob=b"abc", **kwargs)  # type: ignore[arg-type]

    # Assert
    assert again.status is UpdateStatus.DUPLICATE and late.status is UpdateStatus.DUPLICATE
    assert again.update is not None and again.update.update_id == "u-1"
    assert store.count_updates(rid) == 1
    assert store.list_rejected_updates(rid) == []


@pytest.mark.parametrize(
    ("client_id", "update_id", "blob", "n_samples", "reason"),
    [
        ("c1", "u-2", b"other", 5, "client already sent an update for this round"),
        ("c9", "u-3", b"x", 5, "client not selected for this round"),
        ("c2", "u-4", b"x", 0, "n_samples must be >= 1, got 0"),
        ("c2", "u-1", b"different bytes", 5, "update_id reused for other content"),
    ],
)
def test_rejected_updates_are_logged_with_reason(
    store: Store, client_id: str, update_id: str, blob: bytes, n_samples: int, reason: str
) -> None:
    # Prepare
    rid = _open(store)
    store.record_update(round_id=rid, client_id="c1", update_id="u-1", blob=b"a", n_samples=5)

    # Execute
    receipt = store.record_update(
        round_id=rid, client_id=client_id, update_id=update_id, blob=blob, n_samples=n_samples
    )

    # Assert
    assert receipt.status is UpdateStatus.REJECTED and receipt.reason == reason
    (rejected,) = store.list_rejected_updates(rid)
    assert (rejected.client_id, rejected.update_id, rejected.reason) == (
        client_id,
        update_id,
        reason,
    )
    assert rejected.sha256 == hashlib.sha256(blob).hexdigest()
    assert [u.update_id for u in store.list_updates(rid)] == ["u-1"]


def test_updates_for_unknown_or_closed_rounds_are_rejected(store: Store) -> None:
    # Prepare
    rid = _open(store)
    store.claim_round(rid, "w", lease_s=10)

    # Execute
    closed = store.record_update(
        round_id=rid, client_id="c1", update_id="u", blob=b"x", n_samples=1
    )
    unknown = store.record_update(
        round_id=77, client_id="c1", update_id="v", blob=b"x", n_samples=1
    )

    # Assert
    assert (closed.status, closed.reason) == (UpdateStatus.REJECTED, "round is aggregating")
    assert (unknown.status, unknown.reason) == (UpdateStatus.REJECTED, "unknown round")
    assert store.count_updates(rid) == 0
    assert [r.reason for r in store.list_rejected_updates(77)] == ["unknown round"]


def test_open_selection_accepts_any_client_and_orders_by_client(store: Store) -> None:
    # Prepare
    rid = _open(store, selected=())

    # Execute
    for cid in ("zeta", "alpha", "mid"):
        store.record_update(
            round_id=rid, client_id=cid, update_id=f"u-{cid}", blob=cid.encode(), n_samples=3
        )

    # Assert
    assert [u.client_id for u in store.list_updates(rid)] == ["alpha", "mid", "zeta"]


def test_aggregator_rejections_are_recorded(store: Store) -> None:
    # Prepare
    rid = _open(store)

    # Execute
    store.reject_update(
        round_id=rid, client_id="c2", update_id="u-9", reason="norm 93.1 above clip 10",
        sha256="ab" * 32, size_bytes=4096,
    )  # fmt: skip

    # Assert
    (r,) = store.list_rejected_updates(rid)
    assert (r.reason, r.size_bytes, r.received_at) == ("norm 93.1 above clip 10", 4096, T0)


def test_per_client_metrics_upsert(store: Store) -> None:
    # Prepare
    rid = _open(store)

    # Execute
    store.record_metrics(rid, {"loss": 1.0, "acc": 0.5}, client_id="c1")
    store.record_metrics(rid, {"loss": 0.5}, client_id="c1")
    store.record_metrics(rid, {"n_updates": 1})

    # Assert
    assert store.client_metrics(rid) == {"c1": {"acc": 0.5, "loss": 0.5}}
    assert store.round_metrics(rid) == {"n_updates": 1.0}
    with pytest.raises(ValueError, match="infinite"):
        store.record_metrics(rid, {"loss": float("-inf")})
