"""Contract: a round's metrics and every client's are upserted in one batched statement (both
backends): any number of rows, NaN kept as NaN, values replaced on a second write."""

from __future__ import annotations

import math

import pytest

from store import Store
from tests.store.conftest import T0


def _claimed_round(store: Store, clients: list[str]) -> int:
    base = store.put_model(b"v1", format="onnx")
    rid = store.open_round(
        task="beat", strategy="fedavg", base_version=base.version, quorum=1, deadline=T0 + 60,
        selected_clients=clients,
    ).round_id  # fmt: skip
    store.claim_round(rid, "w1", lease_s=30)
    return rid


def test_finalize_stores_the_metrics_of_many_clients(store: Store) -> None:
    # Prepare: 1,201 clients x 3 metrics = 3,603 rows, more than one SQLite part of 500 rows
    clients = [f"c{i:04d}" for i in range(1201)]
    per_client = {c: {"loss": i / 1000, "n": float(i), "auc": math.nan}
                  for i, c in enumerate(clients)}  # fmt: skip
    rid = _claimed_round(store, clients)

    # Execute
    store.finalize_round(
        rid, "w1", model_blob=b"v2", model_format="onnx",
        round_metrics={"loss": 0.5}, client_metrics=per_client,
    )  # fmt: skip

    # Assert
    stored = store.client_metrics(rid)
    assert sorted(stored) == clients
    assert stored["c0007"]["loss"] == 0.007 and stored["c1200"]["n"] == 1200.0
    assert all(math.isnan(m["auc"]) for m in stored.values())
    assert store.round_metrics(rid) == {"loss": 0.5}


def test_metrics_written_again_replace_the_old_values(store: Store) -> None:
    # Prepare
    rid = _claimed_round(store, ["c1", "c2"])
    store.record_metrics(rid, {"loss": 1.0, "f1": 0.2})

    # Execute: the refused-round path writes first, a later write replaces (upsert)
    store.record_metrics(rid, {"loss": 0.4, "acc": math.nan})
    store.record_metrics(rid, {"loss": 0.3}, client_id="c1")
    store.record_metrics(rid, {"loss": 0.1}, client_id="c1")

    # Assert
    metrics = store.round_metrics(rid)
    assert metrics["loss"] == 0.4 and metrics["f1"] == 0.2 and math.isnan(metrics["acc"])
    assert store.client_metrics(rid) == {"c1": {"loss": 0.1}}


def test_an_infinite_metric_writes_nothing(store: Store) -> None:
    # Prepare
    rid = _claimed_round(store, ["c1"])

    # Execute / Assert: the whole batch is refused before any row is written
    with pytest.raises(ValueError, match="infinite"):
        store.finalize_round(
            rid, "w1", model_blob=b"v2", model_format="onnx",
            client_metrics={"c1": {"loss": 0.1}, "c2": {"loss": math.inf}},
        )  # fmt: skip
    assert store.client_metrics(rid) == {}
    assert store.active_round() is not None
