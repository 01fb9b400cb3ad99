"""Contract: model versions and the round state machine (both backends)."""

from __future__ import annotations

import hashlib
import math

import pytest

from store import (
    ClaimLostError,
    ConflictError,
    CorruptStoreError,
    NotFoundError,
    RoundState,
    Store,
)
from tests.store.conftest import T0, FakeClock


def _round(store: Store, task: str = "beat", base: int | None = None, quorum: int = 1) -> int:
    return store.open_round(
        task=task,
        strategy="fedavg",
        base_version=base,
        quorum=quorum,
        deadline=T0 + 60,
        selected_clients=["c2", "c1"],
        config={"epochs": 1, "lr": 0.01},
    ).round_id


def test_put_model_assigns_increasing_versions_and_hash(store: Store) -> None:
    # Prepare
    blobs = [b"\x00model-a", b"\x01model-b" * 1000, bytes(range(256))]

    # Execute
    models = [store.put_model(b, format="onnx-int8-qdq", metrics={"f1": 0.9}) for b in blobs]

    # Assert
    assert [m.version for m in models] == sorted({m.version for m in models})
    for blob, m in zip(blobs, models, strict=True):
        assert m.sha256 == hashlib.sha256(blob).hexdigest()
        assert m.size_bytes == len(blob)
        assert store.get_model_bytes(m.version) == blob
        assert store.get_model(m.version) == m
    assert store.latest_model() == models[-1]
    assert store.list_models(limit=2) == [models[2], models[1]]
    assert store.find_model(models[1].sha256) == models[1]
    assert store.find_model("0" * 64) is None


def test_model_parent_card_and_format_filter(store: Store) -> None:
    # Prepare
    base = store.put_model(b"base", format="onnx", card={"task": "beat", "fs_hz": 360})

    # Execute
    head = store.put_model(b"head", format="head-npz", parent=base.version, round_id=None)

    # Assert
    assert head.parent == base.version
    assert store.get_model(base.version).card == {"task": "beat", "fs_hz": 360}
    assert store.latest_model(format="onnx") == base
    assert store.latest_model(format="nope") is None
    with pytest.raises(NotFoundError):
        store.put_model(b"x", format="onnx", parent=999)
    with pytest.raises(NotFoundError):
        store.get_model(999)
    with pytest.raises(NotFoundError):
        store.get_model_bytes(999)


def test_empty_store_has_no_models_or_rounds(store: Store) -> None:
    assert store.latest_model() is None
    assert store.list_models() == []
    assert store.active_round() is None
    assert store.list_rounds() == []


def test_open_round_records_config_and_refuses_a_second_active_round(store: Store) -> None:
    # Prepare
    base = store.put_model(b"m", format="onnx")

    # Execute
    rid = _round(store, base=base.version, quorum=2)
    rnd = store.get_round(rid)

    # Assert
    assert rnd.state is RoundState.OPEN
    assert rnd.selected_clients == ("c1", "c2")
    assert rnd.config == {"epochs": 1, "lr": 0.01}
    assert (rnd.quorum, rnd.base_version, rnd.opened_at, rnd.deadline) == (2, 1, T0, T0 + 60)
    assert store.active_round("beat") == rnd
    with pytest.raises(ConflictError):
        _round(store, base=base.version)
    other = _round(store, task="ptb")  # another task may run at the same time
    assert other > rid
    with pytest.raises(NotFoundError):
        _round(store, task="aft", base=42)
    with pytest.raises(ValueError, match="quorum"):
        _round(store, task="aft", quorum=0)


def test_claim_lease_takeover_and_renewal(store: Store, clock: FakeClock) -> None:
    # Prepare
    rid = _round(store)

    # Execute / Assert: first claim wins, a second worker is refused while the lease is live
    first = store.claim_round(rid, "w1", lease_s=30)
    assert first is not None and first.state is RoundState.AGGREGATING
    assert (first.claimed_by, first.claim_expires_at, first.claim_count) == ("w1", T0 + 30, 1)
    assert store.claim_round(rid, "w2", lease_s=30) is None
    clock.advance(10)
    renewed = store.claim_round(rid, "w1", lease_s=30)  # renewal keeps claimed_at and count
    assert renewed is not None
    assert (renewed.claim_expires_at, renewed.claim_count, renewed.claimed_at) == (T0 + 40, 1, T0)
    clock.advance(31)  # w1 crashed: its lease lapses
    taken = store.claim_round(rid, "w2", lease_s=30)
    assert taken is not None and (taken.claimed_by, taken.claim_count) == ("w2", 2)
    assert store.claim_round(rid, "w1", lease_s=30) is None


def test_finalize_is_one_transaction_and_happens_once(store: Store, clock: FakeClock) -> None:
    # Prepare
    base = store.put_model(b"v1", format="onnx")
    rid = _round(store, base=base.version)
    store.claim_round(rid, "w1", lease_s=30)
    clock.advance(5)

    # Execute
    model = store.finalize_round(
        rid,
        "w1",
        model_blob=b"v2",
        model_format="onnx",
        model_metrics={"macro_f1": 0.8},
        round_metrics={"loss": 0.25, "undefined": math.nan},
        client_metrics={"c1": {"loss": 0.2}, "c2": {"loss": 0.3}},
    )

    # Assert
    rnd = store.get_round(rid)
    assert rnd.state is RoundState.CLOSED and rnd.closed_at == T0 + 5
    assert rnd.result_version == model.version and model.parent == base.version
    assert model.round_id == rid and model.metrics == {"macro_f1": 0.8}
    assert store.get_model_bytes(model.version) == b"v2"
    metrics = store.round_metrics(rid)
    assert metrics["loss"] == 0.25 and math.isnan(metrics["undefined"])
    assert store.client_metrics(rid) == {"c1": {"loss": 0.2}, "c2": {"loss": 0.3}}
    assert store.active_round() is None
    with pytest.raises(ClaimLostError):
        store.finalize_round(rid, "w1", model_blob=b"again", model_format="onnx")
    assert store.claim_round(rid, "w1", lease_s=30) is None
    assert [m.version for m in store.list_models()] == [model.version, base.version]


def test_finalize_by_a_worker_whose_claim_was_taken_over_writes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Prepare
    rid = _round(store)
    store.claim_round(rid, "w1", lease_s=10)
    clock.advance(11)
    store.claim_round(rid, "w2", lease_s=10)

    # Execute
    with pytest.raises(ClaimLostError):
        store.finalize_round(rid, "w1", model_blob=b"stale", model_format="onnx")
    model = store.finalize_round(rid, "w2", model_blob=b"fresh", model_format="onnx")

    # Assert
    assert store.list_models() == [model]
    assert store.get_round(rid).result_version == model.version


def test_failure_inside_finalize_rolls_everything_back(store: Store) -> None:
    # Prepare
    rid = _round(store)
    store.claim_round(rid, "w1", lease_s=10)

    # Execute: an infinite metric fails after the round update and the model insert ran
    with pytest.raises(ValueError, match="infinite"):
        store.finalize_round(
            rid, "w1", model_blob=b"m", model_format="onnx", round_metrics={"x": math.inf}
        )

    # Assert: nothing of the attempt is visible; the claim holder can finalise again
    assert store.get_round(rid).state is RoundState.AGGREGATING
    assert store.list_models() == []
    assert store.finalize_round(rid, "w1", model_blob=b"m", model_format="onnx").version >= 1


def test_fail_round_transitions(store: Store) -> None:
    # Prepare
    r1 = _round(store, task="beat")
    r2 = _round(store, task="ptb")
    store.claim_round(r2, "w1", lease_s=10)

    # Execute / Assert
    assert store.fail_round(r1, "deadline passed with 0 of 1 updates")
    assert not store.fail_round(r1, "again")
    assert not store.fail_round(r2, "not the holder", worker="w2")
    assert not store.fail_round(r2, "aggregating needs the worker")
    assert store.fail_round(r2, "aggregation diverged", worker="w1")
    assert store.get_round(r1).state is RoundState.FAILED
    assert store.get_round(r1).failure_reason == "deadline passed with 0 of 1 updates"
    assert store.get_round(r2).state is RoundState.FAILED
    assert store.claim_round(r1, "w1", lease_s=10) is None
    assert [r.round_id for r in store.list_rounds()] == [r2, r1]
    assert [r.round_id for r in store.list_rounds(task="ptb")] == [r2]
    _round(store, task="beat")  # a failed round frees the task


def test_metric_history_per_task(store: Store) -> None:
    # Prepare
    rounds = []
    for i in range(3):
        rid = _round(store)
        store.claim_round(rid, "w", lease_s=10)
        store.finalize_round(
            rid, "w", model_blob=b"m%d" % i, model_format="onnx", round_metrics={"acc": i / 10}
        )
        rounds.append(rid)

    # Execute
    history = store.metric_history("acc", task="beat", limit=2)

    # Assert
    assert history == [(rounds[1], 0.1), (rounds[2], 0.2)]
    assert store.metric_history("acc", task="ptb") == []
    with pytest.raises(NotFoundError):
        store.record_metrics(999, {"acc": 1.0})


def test_corrupt_model_bytes_are_detected(store: Store) -> None:
    # Prepare: flip the stored bytes behind the store's back
    model = store.put_model(b"good", format="onnx")
    from store.sql_base import SqlStoreBase

    assert isinstance(store, SqlStoreBase)
    with store._tx(write=True) as tx:
        tx.execute("UPDATE model_version SET blob = ? WHERE version = ?", (b"evil", model.version))

    # Execute / Assert
    with pytest.raises(CorruptStoreError):
        store.get_model_bytes(model.version)
