"""A round's release is the new head written into the model devices serve, or no release: a
head that cannot be written back fails the round instead of shipping the old model under a new
version (devices served the first model for good while the card reported progress)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cloud_aggregator.releases import (
    RELEASE_FORMAT,
    next_release,
    release_from_model_dir,
    stored_blob,
)
from common import fl_protocol as fl
from common import protocol as proto
from common.errors import CorruptInputError
from store import DesiredTraining, RoundState
from tests.cloud_aggregator.fl_support import initial_release
from tests.cloud_aggregator.service_support import (
    CLIENTS,
    drain,
    online,
    service_on,
    update_payload,
)
from tests.store.conftest import Backend

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


def _out_of_step() -> fl.ModelRelease:
    """The tiny release with head tensors its ONNX does not hold."""
    rel = initial_release()
    return fl.ModelRelease(
        "v0", 0, {k: v + 0.5 for k, v in rel.tensors.items()}, rel.files, rel.metrics
    )


def test_a_head_the_model_does_not_hold_is_no_release() -> None:
    with pytest.raises(CorruptInputError, match="head initialisers not found"):
        next_release(_out_of_step(), initial_release().tensors, 1, {})


def test_a_head_file_out_of_step_with_its_model_is_refused_at_load(tmp_path: Path) -> None:
    # Prepare: the shipped beat model with a head file from elsewhere
    for name in ("beat.onnx", "beat.card.json", "beat.head.npz"):
        shutil.copy(PRETRAINED / name, tmp_path / name)
    with np.load(tmp_path / "beat.head.npz") as z:
        np.savez(tmp_path / "beat.head.npz", W=z["W"] * 1.1, b=z["b"])
    # Execute / Assert
    assert release_from_model_dir(PRETRAINED / "beat.onnx").tensors  # the shipped one loads
    with pytest.raises(CorruptInputError, match="head initialisers not found"):
        release_from_model_dir(tmp_path / "beat.onnx")


def test_the_round_fails_with_the_reason_and_the_model_stays(backend: Backend) -> None:
    # Prepare: a stored release whose ONNX lacks its head, a round open, every device answers
    store = backend.open()
    store.put_model(stored_blob(_out_of_step(), {}), format=RELEASE_FORMAT)
    store.set_training_control(desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg",
                               rounds=3, config={"deadline_s": 60.0, "min_clients": 2},
                               updated_by="test")  # fmt: skip
    service, broker = service_on(store, backend)
    online(broker)
    drain(service, broker)
    service.advance()
    rnd = store.active_round("beat")
    assert rnd is not None
    for cid in CLIENTS:
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    # Execute
    drain(service, broker)
    service.advance()
    # Assert: failed with the reason, no new version published
    done = store.get_round(rnd.round_id)
    assert done.state == RoundState.FAILED
    assert "release not built" in (done.failure_reason or "")
    assert [m.version for m in store.list_models()] == [1]
