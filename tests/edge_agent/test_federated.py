"""Device-side round participation without a network (pure state machine + onnxruntime)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from common import fl_protocol as fl
from common import protocol as proto
from edge_agent.federated import FederatedParticipant, NpzExamples
from edge_agent.trainer import load_personal_head
from tests.cloud_aggregator.fl_support import initial_release, write_client_data
from tests.support.invitations import invite

ROUND = proto.round_current_topic()


def _participant(tmp_path: Path, cid: str = "sim-000") -> FederatedParticipant:
    write_client_data(tmp_path / "data", 1, n=200)
    return FederatedParticipant(
        cid, NpzExamples(tmp_path / "data" / "sim-000.npz"), tmp_path / "work", chunk_bytes=300
    )


def _announce(selected: tuple[str, ...], sha: str, deadline_s: float = 60.0) -> bytes:
    now = time.time_ns()
    return fl.encode_round(
        fl.RoundAnnouncement(
            "12",
            "g1",
            1,
            5,
            0,
            "v3",
            sha,
            now + int(deadline_s * 1e9),
            now,
            invite(selected, ["sim-000", "other"]),
            fl.RoundConfig(local_epochs=1, lr=0.05),
        )
    )


def _model() -> tuple[bytes, str]:
    import dataclasses
    import hashlib

    payload = fl.encode_model(dataclasses.replace(initial_release(), version="v3"))
    return payload, hashlib.sha256(payload).hexdigest()


def test_selected_device_trains_once_and_sends_a_chunked_update(tmp_path: Path) -> None:
    # Prepare: the model arrives in reversed chunks, then the announcement
    p = _participant(tmp_path)
    model, sha = _model()
    chunks = fl.split_message(model, "m", 500)
    for i, part in reversed(list(enumerate(chunks))):
        p.on_message(f"{proto.model_topic('v3')}/{i}", part)
    p.on_message(ROUND, _announce(("sim-000", "other"), sha))
    # Execute
    out = p.poll()
    again = p.poll()
    # Assert
    r = fl.Reassembler()
    whole = [w for _, part in out if (w := r.feed(part, 0.0)) is not None]
    u = fl.decode_update(whole[0])
    # chunks travel on their own sub-topic (every aggregator replica receives them all)
    assert {t for t, _ in out} == {proto.chunk_topic(proto.Channel.UPDATE, "sim-000")}
    assert len(out) > 1 and again == []
    assert (u.round_id, u.client_id, u.base_version, u.n_examples) == ("12", "sim-000", "v3", 200)
    assert u.compression == "int8" and u.compression_error <= 0.02
    assert load_personal_head(tmp_path / "work") is not None


@pytest.mark.parametrize("case", ["not_selected", "expired", "wrong_sha", "no_model", "cleared"])
def test_device_does_not_train_when_it_should_not(tmp_path: Path, case: str) -> None:
    p = _participant(tmp_path)
    model, sha = _model()
    if case != "no_model":
        p.on_message(proto.model_topic("v3"), model)
    selected = ("other",) if case == "not_selected" else ("sim-000",)
    p.on_message(
        ROUND,
        _announce(
            selected, "00" * 32 if case == "wrong_sha" else sha, -1.0 if case == "expired" else 60.0
        ),
    )
    if case == "cleared":
        p.on_message(ROUND, b"")  # the aggregator cleared the retained announcement
    assert p.poll() == []
    assert p.stats.rounds_trained == 0


def test_malformed_messages_are_counted_not_raised(tmp_path: Path) -> None:
    p = _participant(tmp_path)
    p.on_message(ROUND, b"\x00\x01junk")
    p.on_message(proto.model_topic("v3"), b"MC\x01junk")
    p.on_message("not/a/medchain/topic", b"x")
    assert p.stats.bad_messages == 3 and p.announcement is None


def test_npz_examples_respect_the_limit(tmp_path: Path) -> None:
    write_client_data(tmp_path, 1, n=50)
    ex = NpzExamples(tmp_path / "sim-000.npz").labelled_examples(20)
    assert len(ex) == 20 and set(ex.inputs) == {"beat", "rr"} and ex.labels.dtype == np.int64


class FakeUplink:
    """Records publishes; refuses while 'offline'."""

    def __init__(self) -> None:
        self.online = False
        self.sent: list[tuple[str, bytes]] = []

    def publish_reliable(self, topic: str, payload: bytes, on_ack: object) -> bool:
        if not self.online:
            return False
        self.sent.append((topic, payload))
        on_ack(True)  # type: ignore[operator]
        return True


def test_agent_adapter_trains_off_the_loop_and_retries_when_offline(tmp_path: Path) -> None:
    # Prepare
    import asyncio

    from edge_agent.federated import AgentParticipant

    uplink = FakeUplink()
    releases: list[str] = []
    adapter = AgentParticipant(
        _participant(tmp_path), uplink, on_release=lambda r: releases.append(r.version)
    )
    model, sha = _model()

    async def scenario() -> None:
        await adapter.handle(proto.model_topic("v3"), model)
        await adapter.handle(ROUND, _announce(("sim-000",), sha))  # trains; uplink offline
        uplink.online = True
        await adapter.handle(ROUND, _announce(("sim-000",), sha))  # redelivery: only flushes

    # Execute
    asyncio.run(scenario())
    # Assert
    assert releases == ["v3"] and adapter.participant.stats.rounds_trained == 1
    r = fl.Reassembler()
    whole = [w for _, part in uplink.sent if (w := r.feed(part, 0.0)) is not None]
    assert len(whole) == 1 and adapter.acked == len(uplink.sent) > 1  # chunks of one update
    assert fl.decode_update(whole[0]).client_id == "sim-000"
    assert adapter.subscriptions() == adapter.participant.subscriptions()


class _GrowingExamples:
    """Labelled beats that arrive between rounds, as on a device replaying annotations."""

    def __init__(self, full: NpzExamples) -> None:
        self.full = full
        self.available = 0

    def labelled_examples(self, limit: int) -> object:
        data = self.full.labelled_examples(limit)
        n = min(self.available, len(data))
        return type(data)({k: v[:n] for k, v in data.inputs.items()}, data.labels[:n])


def test_device_with_no_labels_in_one_round_trains_in_the_next(tmp_path: Path) -> None:
    # Prepare: round 12 comes before any beat is labelled; round 13 after 200 are.
    write_client_data(tmp_path / "data", 1, n=200)
    examples = _GrowingExamples(NpzExamples(tmp_path / "data" / "sim-000.npz"))
    p = FederatedParticipant("sim-000", examples, tmp_path / "work")  # type: ignore[arg-type]
    model, sha = _model()
    p.on_message(proto.model_topic("v3"), model)
    p.on_message(ROUND, _announce(("sim-000",), sha))
    # Execute
    first = p.poll()
    examples.available = 200
    later = fl.decode_round(_announce(("sim-000",), sha))
    p.on_message(ROUND, fl.encode_round(dataclasses.replace(later, round_id="13")))
    second = p.poll()
    # Assert
    assert first == [] and p.stats.rounds_skipped == 1
    (update,) = [fl.decode_update(payload) for _, payload in second]
    assert (update.round_id, update.n_examples) == ("13", 200)


def test_a_stale_release_of_the_announced_version_gives_way_to_the_real_one(
    tmp_path: Path,
) -> None:
    # Prepare: a stale v3 (another deployment's, other content) arrives first, chunked under
    # the same message id as the real one; then the announcement and the real v3
    p = _participant(tmp_path)
    model, sha = _model()
    stale = fl.encode_model(dataclasses.replace(fl.decode_model(model), metrics={"deployment": 1}))
    for i, part in enumerate(fl.split_message(stale, "model-3", 500)):
        p.on_message(f"{proto.model_topic('v3')}/{i}", part)

    # Execute
    p.on_message(ROUND, _announce(("sim-000",), sha))
    before = p.poll()
    for i, part in enumerate(fl.split_message(model, "model-3", 500)):
        p.on_message(f"{proto.model_topic('v3')}/{i}", part)
    after = p.poll()

    # Assert: nothing trained on the stale release; the real one was used once it arrived
    assert before == [] and after and p.stats.rounds_trained == 1
    assert p.stats.releases_unannounced == 1


def test_an_announced_release_that_is_missing_is_asked_for_again(tmp_path: Path) -> None:
    # Prepare: an uplink that can re-subscribe (the broker then resends retained messages)
    import asyncio

    from edge_agent.federated import AgentParticipant

    class ResubscribingUplink(FakeUplink):
        def __init__(self) -> None:
            super().__init__()
            self.resubscribed: list[str] = []

        def resubscribe(self, topic_filter: str) -> None:
            self.resubscribed.append(topic_filter)

    uplink = ResubscribingUplink()
    adapter = AgentParticipant(_participant(tmp_path), uplink)
    stale = fl.encode_model(dataclasses.replace(fl.decode_model(_model()[0]), metrics={"x": 1}))
    _, sha = _model()

    async def scenario() -> None:
        await adapter.handle(proto.model_topic("v3"), stale)
        await adapter.handle(ROUND, _announce(("sim-000",), sha))
        await adapter.handle(ROUND, _announce(("sim-000",), sha))  # retained, delivered again

    # Execute
    asyncio.run(scenario())

    # Assert: asked once for the announced version's topics
    assert uplink.resubscribed == [f"{proto.model_topic('v3')}/#"]


def test_only_releases_no_announcement_named_are_counted_when_dropped(tmp_path: Path) -> None:
    # Prepare: v3 announced and used; then more releases than a device keeps arrive, none
    # announced (as in the fleet, which never installs)
    p = _participant(tmp_path)
    model, sha = _model()
    p.on_message(proto.model_topic("v3"), model)
    p.on_message(ROUND, _announce(("sim-000",), sha))
    p.poll()
    p.on_message(ROUND, b"")  # the run ended

    # Execute
    for i in range(6):
        other = fl.encode_model(dataclasses.replace(fl.decode_model(model), version=f"w{i}"))
        p.on_message(proto.model_topic(f"w{i}"), other)

    # Assert: v3 and two unannounced ones were pushed out; only those two are counted
    assert p.stats.rounds_trained == 1
    assert p.stats.releases_unannounced == 2


def test_the_fleet_writes_its_stats_into_a_folder_nobody_created(tmp_path: Path) -> None:
    # Prepare: no device data (whole-model devices never write a personal head, so nothing
    # else creates the work folder), a stop after 0.2 s
    from edge_agent.federated import main

    (tmp_path / "data").mkdir()
    stats = tmp_path / "work" / "fleet-0.json"
    # Execute
    rc = main(["--broker", "mqtt://127.0.0.1:9", "--data", str(tmp_path / "data"),
               "--work", str(tmp_path / "work" / "work"), "--seconds", "0.2",
               "--stats", str(stats)])  # fmt: skip
    # Assert
    assert rc == 0 and stats.read_text() == "{}"
