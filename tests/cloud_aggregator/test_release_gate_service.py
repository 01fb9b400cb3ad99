"""The release gate in the service: a candidate worse than the current model fails its round
with the reason, and the current model stays the published one."""

from __future__ import annotations

from common import fl_protocol as fl
from common import protocol as proto
from store import RoundState
from tests.cloud_aggregator.service_support import CLIENTS, drain, open_round, update_payload
from tests.store.conftest import Backend


def worse_after_training(release: fl.ModelRelease) -> dict[str, float]:
    """A stub validation set on which every trained release scores far below the initial one."""
    good = release.round_no == 0
    return {"macro_f1": 0.8 if good else 0.2, "se_N": 0.9, "se_V": 0.9 if good else 0.1}


def test_worse_candidate_fails_the_round_and_the_old_model_stays(backend: Backend) -> None:
    # Prepare: a round open for three devices, all of which answer
    store, service, broker, rnd = open_round(backend, evaluator=worse_after_training)
    for cid in CLIENTS:
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    published_before = len(broker.published)
    # Execute
    drain(service, broker)
    service.advance()
    # Assert
    done = store.get_round(rnd.round_id)
    assert done.state == RoundState.FAILED
    assert (done.failure_reason or "").startswith("release gate: macro_f1 0.200")
    assert [m.version for m in store.list_models()] == [1]
    new_models = [t for t, _ in broker.published[published_before:] if "/model/" in t and _]
    assert new_models == []
    assert service.history[-1]["state"] == "failed"
