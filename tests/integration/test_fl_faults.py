"""Fault tests against a private mosquitto and real PostgreSQL: every one ends with correct
rounds and nothing lost or counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_aggregator.releases import load_stored
from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Status, encode_status
from store import DesiredTraining, RoundState, Store
from tests.integration.fl_harness import aggregator, fleet, seed_store, wait_for
from tests.support.services import Mosquitto, run_mosquitto

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _raw_client(url: str, cid: str, will: bool = True) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    topic = proto.client_topic(proto.Channel.STATUS, cid)
    if will:
        c.will_set(topic, encode_status(Status(cid, False, time.time_ns())), qos=1, retain=True)
    host, port = url.split("://")[1].split(":")
    c.connect(host, int(port))
    c.loop_start()
    c.publish(
        topic, encode_status(Status(cid, True, time.time_ns())), qos=1, retain=True
    ).wait_for_publish(5)
    return c


def _announcement(store: Store, round_no: int) -> fl.RoundAnnouncement:
    rnd = store.active_round("beat")
    assert rnd is not None and rnd.config["round_no"] == round_no
    return fl.RoundAnnouncement(
        str(rnd.round_id),
        "g",
        round_no,
        1,
        0,
        f"v{rnd.base_version}",
        "",
        0,
        0,
        fl.Invitation.from_dict(rnd.config["invitation"]),
    )


def test_poisoned_duplicated_reordered_and_late_updates(
    pg_store_url: tuple[Store, str], mosquitto: Mosquitto
) -> None:
    # Prepare: five devices online; every one is selected (fraction 1); quorum 2 of 5
    store, _ = pg_store_url
    seed_store(store, rounds=1, deadline_s=4.0, min_clients=5, quorum_fraction=0.4)
    ids = [f"dev-{i}" for i in range(5)]
    clients = {cid: _raw_client(mosquitto.url, cid) for cid in ids}
    base, _ = load_stored(store.get_model_bytes(1))
    rng = np.random.default_rng(0)
    good = {
        cid: {k: rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in base.tensors.items()}
        for cid in ids[:2]
    }
    with aggregator(store, mosquitto.url) as service:
        wait_for(lambda: store.active_round("beat") is not None, 15, "round 1 to open")
        ann = _announcement(store, 1)
        topic = lambda cid: proto.client_topic(proto.Channel.UPDATE, cid)  # noqa: E731

        def update(cid: str, delta: dict[str, np.ndarray], compression: str = "int8") -> bytes:
            return fl.encode_update(
                fl.ClientUpdate(ann.round_id, cid, ann.model_version, 100, delta, compression)
            )

        # Execute: a duplicated update, a chunked one delivered reversed with a repeated chunk,
        # and three poisoned ones (NaN, huge norm, wrong shape)
        p0 = update("dev-0", good["dev-0"])
        for _ in range(2):
            clients["dev-0"].publish(topic("dev-0"), p0, qos=1).wait_for_publish(5)
        chunks = fl.split_message(update("dev-1", good["dev-1"], "none"), "u1", 40)
        for part in [*reversed(chunks), chunks[0]]:
            clients["dev-1"].publish(topic("dev-1"), part, qos=1).wait_for_publish(5)
        nan = {k: np.full(v.shape, np.nan, np.float32) for k, v in base.tensors.items()}
        huge = {k: np.full(v.shape, 1e3, np.float32) for k, v in base.tensors.items()}
        wrong = {
            k: np.zeros((v.shape[0] + 1, *v.shape[1:]), np.float32) for k, v in base.tensors.items()
        }
        clients["dev-2"].publish(
            topic("dev-2"), update("dev-2", nan, "none"), qos=1
        ).wait_for_publish(5)
        clients["dev-3"].publish(topic("dev-3"), update("dev-3", huge), qos=1).wait_for_publish(5)
        clients["dev-4"].publish(topic("dev-4"), update("dev-4", wrong), qos=1).wait_for_publish(5)
        clients["dev-4"].publish(topic("dev-4"), b"\x00garbage", qos=1).wait_for_publish(5)
        wait_for(
            lambda: store.get_round(int(ann.round_id)).state == RoundState.CLOSED,
            20,
            "round 1 to close",
        )
        clients["dev-0"].publish(
            topic("dev-0"), update("dev-0", good["dev-0"]), qos=1
        ).wait_for_publish(5)  # late
        wait_for(
            lambda: len(store.list_rejected_updates(int(ann.round_id))) == 4, 10, "late reject"
        )
        # Assert
        rid = int(ann.round_id)
        assert sorted(u.client_id for u in store.list_updates(rid, include_blobs=False)) == [
            "dev-0",
            "dev-1",
        ]
        assert sorted(r.reason for r in store.list_rejected_updates(rid)) == [
            "late",
            "non_finite",
            "norm",
            "shape",
        ]
        assert service.rejects.counts["schema"] == 1
        new, _ = load_stored(store.get_model_bytes(int(store.get_round(rid).result_version or 0)))
        sent = [
            fl.decode_update(update(c, good[c], comp)).delta
            for c, comp in (("dev-0", "int8"), ("dev-1", "none"))
        ]
        for k in base.tensors:  # the mean of the two, sent as int8 (common/fl_patch.py)
            mean = (sent[0][k] + sent[1][k]) / 2
            step = float(np.max(np.abs(mean))) / 127
            np.testing.assert_allclose(new.tensors[k], base.tensors[k] + mean, atol=step / 2 + 1e-6)
    for c in clients.values():
        c.loop_stop()
        c.disconnect()


def test_client_disconnecting_after_announcement_is_a_counted_failure(
    pg_store_url: tuple[Store, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: three simulated clients plus one that will vanish (Last Will) once selected
    store, _ = pg_store_url
    seed_store(store, rounds=1, deadline_s=60.0, min_clients=4, quorum_fraction=0.5)
    script = textwrap.dedent(f"""
        import time, paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from common.payloads import Status, encode_status
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ghost", protocol=mqtt.MQTTv5)
        c.will_set("medchain/v1/status/ghost", encode_status(Status("ghost", False, time.time_ns())), qos=1, retain=True)
        c.connect("127.0.0.1", {mosquitto.port}, keepalive=5)
        c.loop_start()
        c.publish("medchain/v1/status/ghost", encode_status(Status("ghost", True, time.time_ns())), qos=1, retain=True)
        time.sleep(120)
    """)
    ghost = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        with aggregator(store, mosquitto.url), fleet(mosquitto.url, tmp_path, 3):
            wait_for(
                lambda: (
                    (r := store.active_round("beat")) is not None and "ghost" in r.selected_clients
                ),
                20,
                "ghost selected",
            )
            t_open = time.monotonic()
            ghost.send_signal(
                signal.SIGKILL
            )  # vanishes without DISCONNECT: the broker sends its Will
            wait_for(
                lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
                40,
                "round to close",
            )
            # Assert: closed long before the 60 s deadline, the ghost counted as a failure
            assert time.monotonic() - t_open < 30
            (rnd,) = store.list_rounds(task="beat")
            assert rnd.state == RoundState.CLOSED and store.count_updates(rnd.round_id) == 3
            assert store.round_metrics(rnd.round_id)["failures"] == 1
    finally:
        ghost.kill()
        ghost.wait(5)


def test_broker_restart_mid_round(pg_store_url: tuple[Store, str], tmp_path: Path) -> None:
    # Prepare: slow clients so the restart lands inside round 1
    from tests.support.services import free_port

    store, _ = pg_store_url
    seed_store(store, rounds=2, deadline_s=30.0, min_clients=3, quorum_fraction=1.0)
    port = free_port()
    broker = run_mosquitto(port=port)
    mosq = broker.__enter__()
    try:
        with aggregator(store, mosq.url), fleet(mosq.url, tmp_path, 3, slow_prob=1.0, slow_s=3.0):
            wait_for(lambda: store.active_round("beat") is not None, 20, "round 1")
            # Execute: the broker dies and comes back (no persistence: retained state is gone)
            broker.__exit__(None, None, None)
            time.sleep(1.0)
            broker = run_mosquitto(port=port)
            broker.__enter__()
            wait_for(
                lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
                90,
                "2 rounds after restart",
            )
        # Assert: both rounds closed with every client exactly once
        rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
        closed = [r for r in rounds if r.state == RoundState.CLOSED]
        assert [r.config["round_no"] for r in closed] == [1, 2]
        assert all(store.count_updates(r.round_id) == 3 for r in closed)
    finally:
        broker.__exit__(None, None, None)


def test_aggregator_kill9_mid_round_resumes_without_double_counting(
    pg_store_url: tuple[Store, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: the aggregator as a real process; one client always 2 s late makes every round
    # last a few seconds with some updates in (a round closes as soon as all have answered)
    store, url = pg_store_url
    seed_store(store, rounds=3, deadline_s=30.0, min_clients=3, quorum_fraction=1.0)
    cmd = [
        sys.executable,
        "-m",
        "medchain",
        "aggregator",
        "--broker",
        mosquitto.url,
        "--store",
        url,
    ]
    env = {**os.environ, "MEDCHAIN_AGG_WORKER": "agg-kill", "MEDCHAIN_AGG_POLL_S": "0.1"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)]
    try:
        with fleet(mosquitto.url, tmp_path, 3, slow_prob=(0.0, 0.0, 1.0), slow_s=2.0):
            wait_for(
                lambda: (
                    (r := store.active_round("beat")) is not None
                    and r.config["round_no"] == 2
                    and store.count_updates(r.round_id) >= 1
                ),
                60,
                "round 2 half-way",
            )
            # Execute: kill -9 mid-round, restart
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
            wait_for(
                lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
                90,
                "3 rounds",
            )
        # Assert: rounds 1-3 closed once each, every client counted once per round, models 2-4
        rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
        assert [(r.config["round_no"], r.state) for r in rounds] == [
            (1, RoundState.CLOSED),
            (2, RoundState.CLOSED),
            (3, RoundState.CLOSED),
        ]
        assert [store.count_updates(r.round_id) for r in rounds] == [3, 3, 3]
        assert [m.version for m in store.list_models()] == [4, 3, 2, 1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)


def test_round_left_aggregating_by_a_crashed_replica_is_finalised_once(
    pg_store_url: tuple[Store, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: the first aggregator "dies" inside aggregation, after claiming the round
    store, _ = pg_store_url
    seed_store(store, rounds=1, deadline_s=20.0, min_clients=3, quorum_fraction=1.0)

    class Crash(BaseException):
        pass

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash  # like kill -9 between claim_round and finalize_round

    class CrashingStore:
        """The real store, except that finalising "kills" the process."""

        def __getattr__(self, name: str) -> object:
            return crash if name == "finalize_round" else getattr(store, name)

    with fleet(mosquitto.url, tmp_path, 3):
        with aggregator(store, mosquitto.url, lease_s=2.0) as first:
            first.engine.store = CrashingStore()  # type: ignore[assignment]
            wait_for(
                lambda: any(
                    r.state == RoundState.AGGREGATING for r in store.list_rounds(task="beat")
                ),
                30,
                "claim by the first replica",
            )
        models_before = len(store.list_models())
        # Execute: another replica (different worker name) takes over once the lease lapses
        import tests.integration.fl_harness as h

        with h.aggregator(store, mosquitto.url, lease_s=2.0, worker_override="agg-other"):
            wait_for(
                lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
                30,
                "takeover",
            )
    # Assert
    (rnd,) = store.list_rounds(task="beat")
    assert rnd.state == RoundState.CLOSED and rnd.claimed_by == "agg-other" and rnd.claim_count == 2
    assert store.count_updates(rnd.round_id) == 3
    assert len(store.list_models()) == models_before + 1


def test_aggregator_killed_between_chunks_of_an_update_loses_none(
    pg_store_url: tuple[Store, str], mosquitto: Mosquitto
) -> None:
    # Prepare: a real aggregator process; two devices, both needed (quorum 2 of 2)
    store, url = pg_store_url
    seed_store(store, rounds=1, deadline_s=60.0, min_clients=2, quorum_fraction=1.0)
    clients = {cid: _raw_client(mosquitto.url, cid) for cid in ("dev-0", "dev-1")}
    cmd = [sys.executable, "-m", "medchain", "aggregator", "--broker", mosquitto.url]
    cmd += ["--store", url]
    env = {**os.environ, "MEDCHAIN_AGG_WORKER": "agg-chunks", "MEDCHAIN_AGG_POLL_S": "0.1"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)]
    try:
        wait_for(lambda: store.active_round("beat") is not None, 30, "round 1 to open")
        ann = _announcement(store, 1)
        base, _ = load_stored(store.get_model_bytes(1))
        rng = np.random.default_rng(1)
        payloads = {
            cid: fl.encode_update(
                fl.ClientUpdate(
                    ann.round_id,
                    cid,
                    ann.model_version,
                    100,
                    {
                        k: rng.normal(0, 0.01, v.shape).astype(np.float32)
                        for k, v in base.tensors.items()
                    },
                    "none",
                )
            )
            for cid in clients
        }
        chunks = fl.split_message(payloads["dev-0"], "u0", 64)
        assert len(chunks) >= 3
        chunk_topic = proto.chunk_topic(proto.Channel.UPDATE, "dev-0")
        for part in chunks[:-1]:
            clients["dev-0"].publish(chunk_topic, part, qos=1).wait_for_publish(5)
        wait_for(
            lambda: len(store.update_chunk_blobs("dev-0/u0")) == len(chunks) - 1,
            20,
            "all but the last chunk stored",
        )
        # Execute: kill -9 with a partial update acknowledged, restart, send the rest
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        clients["dev-0"].publish(chunk_topic, chunks[-1], qos=1).wait_for_publish(5)
        topic1 = proto.client_topic(proto.Channel.UPDATE, "dev-1")
        clients["dev-1"].publish(topic1, payloads["dev-1"], qos=1).wait_for_publish(5)
        rid = int(ann.round_id)
        wait_for(lambda: store.get_round(rid).state == RoundState.CLOSED, 60, "round 1 to close")
        # Assert: both updates counted once, the chunk rows are gone
        assert sorted(u.client_id for u in store.list_updates(rid, include_blobs=False)) == [
            "dev-0",
            "dev-1",
        ]
        assert store.update_chunk_blobs("dev-0/u0") == []
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
        for c in clients.values():
            c.loop_stop()
            c.disconnect()
