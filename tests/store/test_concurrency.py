"""Concurrency: replicas (threads and processes with their own connections) racing on one
database. Exactly one claim and one finalisation win; no update is lost or duplicated; a worker
killed in the middle of finalising leaves nothing behind and its round can be taken over."""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from store import ClaimLostError, RoundState, Store, UpdateStatus, open_store
from tests.store.conftest import Backend

N_WORKERS = 6
N_UPDATES = 20


def _updates() -> list[tuple[str, str, bytes]]:
    """(client_id, update_id, blob) of one round."""
    return [(f"c{i:02d}", f"u-{i:02d}", bytes([i]) * (100 + i)) for i in range(N_UPDATES)]


def _open_round(backend: Backend) -> int:
    store = backend.open()
    return store.open_round(
        task="beat",
        strategy="fedavg",
        base_version=None,
        quorum=N_UPDATES,
        deadline=time.time() + 600,
    ).round_id


def _send_with(store: Store, round_id: int, seed: int) -> list[tuple[str, str]]:
    """Record every update in a seeded order; returns (update_id, status)."""
    todo = _updates()
    random.Random(seed).shuffle(todo)
    out = []
    for cid, uid, blob in todo:
        receipt = store.record_update(
            round_id=round_id, client_id=cid, update_id=uid, blob=blob, n_samples=10
        )
        out.append((uid, str(receipt.status)))
    return out


def _send_all(url: str, round_id: int, seed: int) -> list[tuple[str, str]]:
    """``_send_with`` on a store of its own (for worker processes)."""
    store = open_store(url)
    try:
        return _send_with(store, round_id, seed)
    finally:
        store.close()


def _claim_and_finalize(url: str, round_id: int, worker: str) -> str:
    """Try to claim and finalise; returns 'won', 'no-claim' or 'claim-lost'."""
    store = open_store(url)
    try:
        if store.claim_round(round_id, worker, lease_s=60) is None:
            return "no-claim"
        try:
            store.finalize_round(
                round_id, worker, model_blob=worker.encode(), model_format="onnx",
                round_metrics={"n": 1.0},
            )  # fmt: skip
        except ClaimLostError:
            return "claim-lost"
        return "won"
    finally:
        store.close()


def _crash_while_finalizing(url: str, round_id: int) -> None:
    """Claim with a short lease, then die (os._exit) inside the finalise transaction, after the
    round update and the model insert ran but before commit."""
    store = open_store(url)
    assert store.claim_round(round_id, "doomed", lease_s=0.5) is not None

    def die(*args: object, **kwargs: object) -> None:
        os._exit(3)

    store._upsert_metrics_of = die  # type: ignore[attr-defined]
    store.finalize_round(round_id, "doomed", model_blob=b"half", model_format="onnx")


def _check_updates(backend: Backend, round_id: int, results: list[list[tuple[str, str]]]) -> None:
    statuses = Counter(s for res in results for _, s in res)
    accepted = Counter(uid for res in results for uid, s in res if s == UpdateStatus.ACCEPTED)
    assert statuses[UpdateStatus.REJECTED] == 0
    assert set(accepted) == {uid for _, uid, _ in _updates()} and set(accepted.values()) == {1}
    stored = backend.open().list_updates(round_id)
    assert [(u.client_id, u.update_id, u.blob) for u in stored] == _updates()


def test_threads_inserting_the_same_updates_store_each_once(backend: Backend) -> None:
    # Prepare
    rid = _open_round(backend)
    stores = [open_store(backend.url) for _ in range(N_WORKERS)]
    backend.opened.extend(stores)
    barrier = threading.Barrier(N_WORKERS)

    def send(i: int) -> list[tuple[str, str]]:
        barrier.wait(timeout=30)
        return _send_with(stores[i], rid, i)

    # Execute
    with ThreadPoolExecutor(N_WORKERS) as pool:
        results = list(pool.map(send, range(N_WORKERS)))

    # Assert
    _check_updates(backend, rid, results)


def test_threads_racing_to_claim_and_finalize_one_winner(backend: Backend) -> None:
    # Prepare: every replica has its connection ready before the start signal
    rid = _open_round(backend)
    stores = [open_store(backend.url) for _ in range(N_WORKERS)]
    backend.opened.extend(stores)
    barrier = threading.Barrier(N_WORKERS)

    def race(i: int) -> tuple[bool, str]:
        barrier.wait(timeout=30)
        claimed = stores[i].claim_round(rid, f"w{i}", lease_s=60) is not None
        barrier.wait(timeout=30)  # every claim attempt is over; now all try to finalise
        try:
            stores[i].finalize_round(rid, f"w{i}", model_blob=b"w%d" % i, model_format="onnx")
        except ClaimLostError:
            return claimed, "claim-lost"
        return claimed, "won"

    # Execute
    with ThreadPoolExecutor(N_WORKERS) as pool:
        outcomes = list(pool.map(race, range(N_WORKERS)))

    # Assert
    assert [claimed for claimed, _ in outcomes].count(True) == 1
    assert sorted(o for _, o in outcomes) == ["claim-lost"] * (N_WORKERS - 1) + ["won"]
    winner = outcomes.index((True, "won"))
    rnd = stores[0].get_round(rid)
    assert rnd.state is RoundState.CLOSED and rnd.claimed_by == f"w{winner}"
    assert rnd.claim_count == 1
    (model,) = stores[0].list_models()
    assert rnd.result_version == model.version
    assert stores[0].get_model_bytes(model.version) == b"w%d" % winner


def test_processes_race_on_updates_and_claims(backend: Backend) -> None:
    # Prepare
    rid = _open_round(backend)
    ctx = multiprocessing.get_context("spawn")

    # Execute
    with ProcessPoolExecutor(3, mp_context=ctx) as pool:
        sends = [pool.submit(_send_all, backend.url, rid, seed) for seed in range(3)]
        results = [f.result(timeout=120) for f in sends]
        claims = [pool.submit(_claim_and_finalize, backend.url, rid, f"p{i}") for i in range(3)]
        outcomes = [f.result(timeout=120) for f in claims]

    # Assert
    _check_updates(backend, rid, results)
    assert outcomes.count("won") == 1
    assert len(backend.open().list_models()) == 1


def test_worker_killed_inside_finalize_leaves_nothing_and_round_is_taken_over(
    backend: Backend,
) -> None:
    # Prepare
    rid = _open_round(backend)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_crash_while_finalizing, args=(backend.url, rid))

    # Execute
    child.start()
    child.join(timeout=120)
    store = open_store(backend.url)  # real clock: the 0.5 s lease must lapse
    backend.opened.append(store)
    after_crash = store.get_round(rid)
    models_after_crash = store.list_models()
    deadline = time.monotonic() + 10
    claim = None
    while claim is None and time.monotonic() < deadline:
        claim = store.claim_round(rid, "rescuer", lease_s=60)
        if claim is None:
            time.sleep(0.1)
    model = store.finalize_round(rid, "rescuer", model_blob=b"whole", model_format="onnx")

    # Assert
    assert child.exitcode == 3
    assert after_crash.state is RoundState.AGGREGATING and after_crash.claimed_by == "doomed"
    assert models_after_crash == []
    assert claim is not None and claim.claim_count == 2
    assert store.list_models() == [model]
    assert store.get_round(rid).result_version == model.version


@pytest.mark.parametrize("n_threads", [4])
def test_open_round_race_allows_one_active_round(backend: Backend, n_threads: int) -> None:
    # Prepare
    barrier = threading.Barrier(n_threads)

    def try_open(i: int) -> str:
        store = open_store(backend.url)
        try:
            barrier.wait(timeout=30)
            store.open_round(
                task="beat", strategy="fedavg", base_version=None, quorum=1, deadline=1e10
            )
            return "opened"
        except Exception as exc:  # noqa: BLE001 - the loser's error type is what we assert
            return type(exc).__name__
        finally:
            store.close()

    # Execute
    with ThreadPoolExecutor(n_threads) as pool:
        outcomes = list(pool.map(try_open, range(n_threads)))

    # Assert
    assert sorted(outcomes) == ["ConflictError"] * (n_threads - 1) + ["opened"]


def test_updates_racing_a_claim_never_slip_in_after_it(backend: Backend) -> None:
    # Prepare: 4 senders stream distinct updates while a 5th replica claims the round
    rid = _open_round(backend)
    senders = [open_store(backend.url) for _ in range(4)]
    claimer = open_store(backend.url)
    backend.opened.extend([*senders, claimer])
    barrier = threading.Barrier(5)

    def send(i: int) -> int:
        barrier.wait(timeout=30)
        accepted = 0
        for j in range(40):
            receipt = senders[i].record_update(
                round_id=rid, client_id=f"s{i}-{j}", update_id=f"s{i}-{j}", blob=b"x", n_samples=1
            )
            accepted += receipt.status is UpdateStatus.ACCEPTED
        return accepted

    # Execute
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, i) for i in range(4)]
        barrier.wait(timeout=30)
        time.sleep(0.02)  # let some updates in first
        assert claimer.claim_round(rid, "agg", lease_s=60) is not None
        seen_by_aggregator = len(claimer.list_updates(rid, include_blobs=False))
        accepted = sum(f.result(timeout=60) for f in futures)

    # Assert: what the aggregator read right after claiming is final
    assert claimer.count_updates(rid) == seen_by_aggregator == accepted
    rejected = claimer.list_rejected_updates(rid)
    assert {r.reason for r in rejected} <= {"round is aggregating"}
    assert accepted + len(rejected) == 4 * 40
