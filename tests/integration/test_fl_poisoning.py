"""One device in three tries to poison the global beat model, over a real broker and store.

The attacks that took over ``main`` at 1bc2645: the device claims 1,000,000 examples (99.98 %
of the FedAvg weight) and sends a delta just under the norm limit, first bias V -7 / N +7
(norm 9.9), then the N and V rows of the head swapped. On MIT-BIH record 119 the devices then
found 23 ventricular beats instead of 445. Here two honest devices (records 119 and 208) train
with it; the aggregator has a validation set (DS1 records of neither device) and its default
robust bounds and release gate. What the devices get must still see record 119's V beats.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.evaluation import HeadEvaluator, validation_evaluator
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.releases import (
    RELEASE_FORMAT,
    load_stored,
    release_from_model_dir,
    stored_blob,
)
from cloud_aggregator.service import AggregatorService, subscriptions
from cloud_aggregator.simulate import write_client_npz
from edge_agent.app import DEFAULT_MODEL
from edge_agent.federated import FederatedParticipant, NpzExamples, run_client
from models.data.mitdb import AAMI_CLASSES
from store import DesiredTraining, RoundState, Store
from tests.integration.fl_harness import wait_for
from tests.support.hostile_device import HostileDevice

pytestmark = [pytest.mark.integration, pytest.mark.datasets("mitdb")]

HONEST = ("119", "208")
VALIDATION = "106,209,223"  # DS1, neither device's record
N_, V_ = AAMI_CLASSES.index("N"), AAMI_CLASSES.index("V")


@pytest.fixture()
def honest_data(data_root: Path, tmp_path: Path) -> Path:
    env = {"MEDCHAIN_DATA": str(data_root)}
    write_client_npz(HONEST, tmp_path / "data", env, tmp_path / "cache")
    return tmp_path / "data"


def record_119(data_root: Path, onnx: bytes, tmp_path: Path) -> HeadEvaluator:
    env = {"MEDCHAIN_DATA": str(data_root)}
    return validation_evaluator("119", onnx, env, tmp_path / "cache")


@pytest.fixture()
def service(pg_store_url: tuple[Store, str], mosquitto: object, data_root: Path,
            tmp_path: Path) -> Iterator[tuple[AggregatorService, Store]]:  # fmt: skip
    store, _ = pg_store_url
    url = mosquitto.url  # type: ignore[attr-defined]
    base = release_from_model_dir(DEFAULT_MODEL)
    store.put_model(stored_blob(base, {}), format=RELEASE_FORMAT)
    s = AggregatorSettings(broker_url=url, worker="agg-poison", poll_s=0.1)
    broker = PahoBroker(url, s.worker_name, subscriptions(s.shared_group))
    broker.start(10.0)
    svc = AggregatorService(store, broker, s)
    env = {"MEDCHAIN_DATA": str(data_root)}
    svc.evaluator = validation_evaluator(VALIDATION, base.files["model.onnx"], env,
                                         tmp_path / "cache")  # fmt: skip
    stop = threading.Event()
    t = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    t.start()
    yield svc, store
    stop.set()
    t.join(10)
    broker.stop()


def test_one_poisoner_in_three_neither_takes_over_nor_stops_training(
    service: tuple[AggregatorService, Store], honest_data: Path, mosquitto: object,
    data_root: Path, tmp_path: Path,
) -> None:  # fmt: skip
    # Prepare: two honest devices and the attacker online; two rounds of all three
    svc, store = service
    url = mosquitto.url  # type: ignore[attr-defined]
    stop = threading.Event()
    devices = [FederatedParticipant(f"mitdb-{r}", NpzExamples(honest_data / f"mitdb-{r}.npz"),
                                    tmp_path / "work" / r) for r in HONEST]  # fmt: skip
    threads = [threading.Thread(target=run_client, args=(url, d, stop), daemon=True)
               for d in devices]  # fmt: skip
    for t in threads:
        t.start()
    attacker = HostileDevice(url)
    wait_for(lambda: sum(svc.online.get(c, False) for c in ("mitdb-119", "mitdb-208", "evil"))
             == 3, 30, "three devices online")  # fmt: skip
    store.set_training_control(desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg",
                               rounds=2, config={"min_clients": 3, "quorum_fraction": 1.0,
                                                 "deadline_s": 60.0}, updated_by="test")  # fmt: skip
    # Execute
    try:
        wait_for(lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
                 240, "the run to end")  # fmt: skip
    finally:
        stop.set()
        attacker.stop()
        for t in threads:
            t.join(10)
    # Assert: the attacker sent both attacks, each round was published without it
    assert len(attacker.poisoned) >= 2
    rounds = store.list_rounds(task="beat", limit=20)
    closed = [r for r in rounds if r.state == RoundState.CLOSED]
    assert len(closed) == 2, [(r.state, r.failure_reason) for r in rounds]
    for r in closed:
        assert store.round_metrics(r.round_id)["excluded"] == 1.0
    # Assert: the model the devices now get still finds record 119's V beats
    versions = sorted(m.version for m in store.list_models())
    assert len(versions) == 3  # the initial model and one per round
    before, _ = load_stored(store.get_model_bytes(versions[0]))
    after, _ = load_stored(store.get_model_bytes(versions[-1]))
    rec = record_119(data_root, before.files["model.onnx"], tmp_path)
    m0, m1 = rec(before), rec(after)
    assert m1["se_V"] >= m0["se_V"] - 0.02, (m0, m1)
    assert m1["se_N"] >= m0["se_N"] - 0.02, (m0, m1)
