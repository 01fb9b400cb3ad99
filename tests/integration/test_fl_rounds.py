"""End-to-end federated rounds: aggregator + clients over a private mosquitto, real stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from store import DesiredTraining, RoundState, Store, open_store
from tests.integration.fl_harness import aggregator, fleet, seed_store, wait_for
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'fl.db'}")
        yield s
        s.close()
        return
    yield request.getfixturevalue("pg_store")


def test_three_rounds_complete_and_publish_models(
    store: Store, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare
    seed_store(store, rounds=3)
    # Execute
    with aggregator(store, mosquitto.url) as service, fleet(mosquitto.url, tmp_path, 4) as f:
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED, 60, "3 rounds"
        )
    # Assert
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert [r.state for r in rounds] == [RoundState.CLOSED] * 3
    assert [store.count_updates(r.round_id) for r in rounds] == [4, 4, 4]
    assert [r.result_version for r in rounds] == [2, 3, 4]
    assert all(p.stats.rounds_trained == 3 for p in f.participants)
    assert all(
        (tmp_path / "work" / p.client_id / "personal_head.npz").is_file() for p in f.participants
    )
    assert store.round_metrics(rounds[-1].round_id)["received"] == 4
    assert len(service.history) == 3


def test_distillation_round_publishes_a_new_int8_backbone_and_training_continues(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: distil after every round on a server-held transfer set of tiny beats
    import dataclasses

    from cloud_aggregator.distillation import DistillSettings, distill_release
    from cloud_aggregator.releases import load_stored
    from models.tasks import get_task
    from models.tasks.base import NetSpec, TaskData
    from tests.cloud_aggregator.fl_support import tiny_dataset

    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    seed_store(store, rounds=2)
    x, y = tiny_dataset(400, 7)
    transfer = TaskData(x["beat"], x["rr"], y, np.full(len(y), "t").astype(np.str_))
    task = dataclasses.replace(
        get_task("beat"),
        classes=("N", "S", "V"),
        metric_extras=None,
        student=NetSpec("cnn", (4, 4), 3, 8, dropout=0.0, feature_dim=2),
    )
    calls: list[int] = []

    def distiller(rel):  # type: ignore[no-untyped-def]
        calls.append(rel.round_no)
        return distill_release(
            rel,
            transfer,
            task,
            DistillSettings(epochs=2, steps_per_epoch=10, calibration_per_class=30),
        )

    # Execute
    with (
        aggregator(store, mosquitto.url, distill_every=1) as service,
        fleet(mosquitto.url, tmp_path, 3) as f,
    ):
        service.engine.distiller = distiller
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED, 90, "2 rounds"
        )
    # Assert: both rounds distilled; the second trained on the first one's new backbone
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert [r.state for r in rounds] == [RoundState.CLOSED] * 2 and calls == [1, 2]
    assert [store.count_updates(r.round_id) for r in rounds] == [3, 3]
    v2, _ = load_stored(store.get_model_bytes(2))
    v3, _ = load_stored(store.get_model_bytes(3))
    assert v2.metrics["backbone_sha256"] != v3.metrics["backbone_sha256"]
    assert "QuantizeLinear" in {
        n.op_type for n in __import__("onnx").load_from_string(v3.files["model.onnx"]).graph.node
    }
    assert all(p.stats.rounds_trained == 2 and p.stats.last_error == "" for p in f.participants)
    store.close()


def test_dp_rounds_report_a_growing_epsilon(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # Prepare: client-level DP with clipping 0.5 and noise multiplier 1.0
    store = open_store(f"sqlite:///{tmp_path / 'dp.db'}")
    seed_store(store, rounds=2, strategy="fedadam")
    # Execute
    with (
        aggregator(store, mosquitto.url, dp_clip=0.5, dp_noise=1.0),
        fleet(mosquitto.url, tmp_path, 3),
    ):
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED,
            60,
            "2 DP rounds",
        )
    # Assert
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    eps = [store.round_metrics(r.round_id)["dp_epsilon"] for r in rounds]
    assert [r.state for r in rounds] == [RoundState.CLOSED] * 2 and rounds[0].strategy == "fedadam"
    assert 0 < eps[0] < eps[1] < float("inf")
    assert all(r.config["dp_z"] == 1.0 and 0 < r.config["dp_q"] <= 1 for r in rounds)
    store.close()


def test_rounds_are_paced_by_the_round_interval(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # Prepare
    store = open_store(f"sqlite:///{tmp_path / 'paced.db'}")
    seed_store(store, rounds=2)
    interval = 3.0
    # Execute
    with (
        aggregator(store, mosquitto.url, round_interval_s=interval),
        fleet(mosquitto.url, tmp_path, 2),
    ):
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED, 60, "2 rounds"
        )
    # Assert: the second round opened no sooner than the interval after the first closed
    first, second = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert first.state == second.state == RoundState.CLOSED
    assert first.closed_at is not None and second.opened_at is not None
    assert second.opened_at - first.closed_at >= interval
    store.close()
