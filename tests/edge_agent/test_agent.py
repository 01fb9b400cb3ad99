"""The whole agent over fakes: buffer first, send once, labels, live signal, --out file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from common.payloads import Label, decode_chunk, decode_label_ack, decode_status, encode_label
from common.pred_payloads import decode_predictions
from common.protocol import Channel, client_topic
from common.types import BeatPrediction
from edge_agent.agent import EdgeAgent
from edge_agent.buffer import SqliteBuffer, beat_row_id
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.examples import BufferExampleSource
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.output import JsonlSink
from edge_agent.pipeline import EcgPipeline
from tests.edge_agent.helpers import (
    SPEC,
    FakeUplink,
    ListSource,
    ThresholdDetector,
    build_beat_model,
    chunks_of,
    synthetic_ecg,
)

FS = 360.0
# sinus at 75 bpm with one run of three premature (V) beats
RR = [0.8] * 15 + [0.45, 0.45, 0.45] + [1.0] + [0.8] * 15


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxBeatClassifier:
    return OnnxBeatClassifier(build_beat_model(tmp_path_factory.mktemp("m")))


_OPEN: list[EdgeAgent] = []


@pytest.fixture(autouse=True)
def _close_agents() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def make_agent(
    model: OnnxBeatClassifier,
    tmp: Path,
    uplink: FakeUplink | None,
    labeler: object = None,
    clock: object = None,
) -> EdgeAgent:
    settings = EdgeSettings(
        client_id="dev", flush_interval_s=0.05, pred_batch_max=7, status_interval_s=0.1
    )
    pipe = EcgPipeline("dev", StreamingBeatFeaturizer(SPEC, ThresholdDetector, FS), model)
    agent = EdgeAgent(
        settings,
        pipe,
        BeatEventDetector("dev"),
        SqliteBuffer(tmp / "buf.sqlite", "dev"),
        uplink,
        sink=JsonlSink(tmp / "out.jsonl"),
        labeler=labeler,  # type: ignore[arg-type]
        clock=clock,  # type: ignore[arg-type]
    )
    _OPEN.append(agent)
    return agent


def sent_beats(uplink: FakeUplink) -> list[int]:
    out = []
    for topic, payload in uplink.reliable:
        assert topic == client_topic(Channel.PRED, "dev")
        beats = decode_predictions(payload).beats
        out += [b.t_ns for b in beats]
    return out


def test_offline_agent_buffers_everything_and_writes_jsonl(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    # Prepare
    x, peaks = synthetic_ecg(RR, FS)
    agent = make_agent(model, tmp_path, None)
    # Execute
    stats = asyncio.run(agent.run(ListSource(chunks_of(x, FS, 130))))
    pending = agent.buffer.counts()["pending"]
    agent.close()
    # Assert
    assert stats.beats == peaks.size
    assert stats.events_by_kind == {"vt_run": 1}
    assert pending == peaks.size + 1
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    beats = [r for r in lines if r["type"] == "beat"]
    assert [r["pred"] for r in beats].count("V") == 3
    assert set(beats[0]) >= {"t_ns", "sample", "pred", "probs", "rr_s"}
    (event,) = [r for r in lines if r["type"] == "event"]
    assert event["kind"] == "vt_run" and event["details"]["beats"] == 3


def test_connected_agent_sends_every_row_exactly_once(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    x, peaks = synthetic_ecg(RR, FS)
    up = FakeUplink()
    agent = make_agent(model, tmp_path, up)
    stats = asyncio.run(agent.run(ListSource(chunks_of(x, FS, 360), pause_s=0.01)))
    times = sent_beats(up)
    assert len(times) == len(set(times)) == peaks.size
    counts = agent.buffer.counts()
    assert counts == {
        "pending": 0,
        "inflight": 0,
        "sent": peaks.size + 1,
        "stored": 0,
        "rejected": 0,
    }
    assert stats.pred_payloads == len(up.reliable)
    events = [e for _, p in up.reliable for e in decode_predictions(p).events]
    assert [e.kind for e in events] == ["vt_run"]
    online, detail = up.status[-1]
    status = decode_status(agent.status_payload(online, detail, 7, 2))  # as the link stamps it
    assert status.online and status.model_version == "test-1" and status.stamp == (7, 2)
    detail = json.loads(status.detail)
    assert set(detail) >= {"ecg_hr_bpm", "beats", "backlog"}


def test_broker_down_then_up_loses_nothing(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    # Prepare: the link is down for the first half of the stream
    x, peaks = synthetic_ecg(RR, FS)
    chunks = chunks_of(x, FS, 360)
    up = FakeUplink(connected=False)
    agent = make_agent(model, tmp_path, up)

    class Flaky(ListSource):
        async def chunks(self):  # type: ignore[no-untyped-def]
            for i, c in enumerate(chunks):
                if i == len(chunks) // 2:
                    up.connected = True
                await asyncio.sleep(0.01)
                yield c

    # Execute
    asyncio.run(agent.run(Flaky(chunks)))
    # Assert
    times = sent_beats(up)
    assert len(times) == len(set(times)) == peaks.size
    assert agent.buffer.counts()["pending"] == 0


def test_refused_batches_are_sent_again(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    x, peaks = synthetic_ecg([0.8] * 10, FS)
    up = FakeUplink(refuse=True)
    agent = make_agent(model, tmp_path, up)

    async def main() -> None:
        # the drain ends as soon as nothing is pending: a generous timeout only keeps a slow
        # machine (refusals lifted late in the 0.3 s it had) from leaving rows behind
        task = asyncio.create_task(
            agent.run(ListSource(chunks_of(x, FS, 360)), drain_timeout_s=10.0)
        )
        await asyncio.sleep(0.2)
        up.refuse = False
        await task

    asyncio.run(main())
    assert agent.stats.pred_refused > 0
    assert agent.buffer.counts()["pending"] == 0
    accepted = agent.buffer.counts()["sent"]
    assert accepted == peaks.size


def test_restart_resends_rows_left_in_flight(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    # Prepare: a run whose acks never come (crash before PUBACK)
    x, peaks = synthetic_ecg([0.8] * 10, FS)

    class NoAck(FakeUplink):
        def publish_reliable(self, topic, payload, on_ack):  # type: ignore[no-untyped-def]
            self.reliable.append((topic, payload))
            return True

    agent = make_agent(model, tmp_path, NoAck())
    asyncio.run(agent.run(ListSource(chunks_of(x, FS, 360)), drain_timeout_s=0.1))
    assert agent.buffer.counts()["inflight"] == peaks.size
    agent.buffer.close()
    # Execute: reopen the buffer
    again = SqliteBuffer(tmp_path / "buf.sqlite", "dev")
    # Assert
    counts = again.counts()
    again.close()
    assert counts == {"pending": peaks.size, "inflight": 0, "sent": 0, "stored": 0, "rejected": 0}


def test_labels_from_clinician_and_bad_payloads(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    # Prepare
    x, _ = synthetic_ecg([0.8] * 12, FS)
    up = FakeUplink()
    agent = make_agent(model, tmp_path, up)
    topic = client_topic(Channel.LABEL, "dev")

    async def main() -> None:
        await agent.run(
            ListSource(chunks_of(x, FS, 360)), drain_timeout_s=10.0
        )  # ends once all is sent
        beat_t = agent.buffer.take_pending(1).beats  # all sent: read from the out file instead
        assert beat_t == []
        first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[3])
        good = Label("l1", "dev", first["t_ns"] + 40_000_000, "S", "beat", "dr")
        agent.handle_inbound(topic, encode_label(good))
        agent.handle_inbound(topic, b"\x00garbage")
        agent.handle_inbound(topic, encode_label(Label("l2", "other", first["t_ns"], "S")))
        agent.handle_inbound(topic, encode_label(Label("l3", "dev", first["t_ns"], "AFIB")))
        agent.handle_inbound(topic, encode_label(Label("l4", "dev", 5, "N")))
        agent.handle_inbound("not/a/topic", b"")
        agent.flush_outbox()
        await asyncio.sleep(0.01)  # the fake broker acknowledges on the loop

    # Execute
    asyncio.run(main())
    # Assert
    assert agent.stats.labels_clinician == 1
    assert agent.stats.labels_unmatched == 1
    assert agent.stats.bad_payloads == 4
    receipts = [decode_label_ack(p) for t, p in up.reliable if t == "medchain/v1/labelack/dev"]
    assert [r.label_ids for r in receipts] == [("l1", "l4")]  # checked labels only, one payload
    assert agent.stats.label_receipts == 2
    assert agent.buffer.receipts.counts() == {"pending": 0, "inflight": 0, "sent": 2}
    kept = agent.buffer.labels.beats()
    assert kept.labels == ["S"] and kept.windows.shape == (1, SPEC.window_len)


def test_replay_annotations_become_training_examples(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    # Prepare: annotate every beat of the synthetic record as N except the premature ones
    x, peaks = synthetic_ecg(RR, FS)
    truth = {int(p): ("V" if 15 <= i <= 17 else "N") for i, p in enumerate(peaks)}

    class Annotations:
        def labels_for(self, samples: list[int]) -> list[str | None]:
            return [next((v for p, v in truth.items() if abs(p - s) <= 54), None) for s in samples]

    agent = make_agent(model, tmp_path, None, Annotations())
    # Execute
    asyncio.run(agent.run(ListSource(chunks_of(x, FS, 360))))
    source = BufferExampleSource(agent.buffer.labels.beats, model.classes, model.feeds)
    ex = source.labelled_examples(1000)
    # Assert
    assert len(ex) == peaks.size
    assert ex.inputs["signal"].shape == (peaks.size, 1, SPEC.window_len)
    assert ex.inputs["features"].shape == (peaks.size, len(SPEC.rr_features))
    assert int(np.sum(ex.labels == model.classes.index("V"))) == 3


class SteppingClock:
    """Advances ``step_ns`` per reading: one reading per chunk with live output."""

    def __init__(self, step_ns: int) -> None:
        self.t = 1_700_000_000 * 10**9
        self.step = step_ns

    def now_ns(self) -> int:
        self.t += self.step
        return self.t


def test_live_signal_is_decimated_to_125_hz(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    # Prepare: a clock that moves 0.1 s per 0.1 s chunk (real-time pacing)
    x, _ = synthetic_ecg([0.8] * 5, FS)
    up = FakeUplink()
    agent = make_agent(model, tmp_path, up, clock=SteppingClock(100_000_000))
    # Execute
    asyncio.run(agent.run(ListSource(chunks_of(x, FS, 36))))
    # Assert
    decoded = [decode_chunk(p, "live")[1] for _, p in up.live]
    assert decoded and all(c.fs == 125.0 and c.n_samples == 5 for c in decoded)
    seqs = [c.seq for c in decoded]
    assert seqs == list(range(0, 5 * len(seqs), 5))
    n = sum(c.n_samples for c in decoded)
    assert abs(n - x.size * 125 / 360) <= 10


def test_live_signal_is_throttled_when_replaying_faster_than_real_time(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    # Prepare: 6.5 s of signal replayed while the wall clock moves 1 ms per chunk
    x, _ = synthetic_ecg([0.8] * 5, FS)
    up = FakeUplink()
    agent = make_agent(model, tmp_path, up, clock=SteppingClock(1_000_000))
    # Execute
    asyncio.run(agent.run(ListSource(chunks_of(x, FS, 36))))
    # Assert: at most the bucket (2x real-time rate, 50 msg/s) plus 1 ms of refill per chunk
    assert 0 < len(up.live) <= 50 + 3


def test_model_swap_mid_stream(model: OnnxBeatClassifier, tmp_path: Path) -> None:
    # Prepare: a second model with the same contract and another with a longer window
    from dataclasses import replace

    from edge_agent.app import swap_model

    same = build_beat_model(tmp_path / "v2", version="test-2")
    other = build_beat_model(tmp_path / "v3", replace(SPEC, after_samples=80), version="test-3")
    x, _ = synthetic_ecg([0.8] * 60, FS)
    chunks = chunks_of(x, FS, 360)
    agent = make_agent(model, tmp_path, None)
    # Execute
    for c in chunks[:15]:
        agent.handle_chunk(c)
    swap_model(agent, same)
    for c in chunks[15:30]:
        agent.handle_chunk(c)
    swap_model(agent, other)
    for c in chunks[30:]:
        agent.handle_chunk(c)
    agent.close()
    # Assert: versions change in order, the same-contract swap loses no beat
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    versions = [r["model_version"] for r in lines]
    assert versions == sorted(versions)
    assert set(versions) == {"test-1", "test-2", "test-3"}
    t = np.array([r["t_ns"] for r in lines if r["model_version"] in ("test-1", "test-2")])
    assert np.all(np.diff(t) < 0.9e9)  # no missing beat across the first swap


def test_inbound_round_messages_go_to_the_participant(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    # Prepare
    from common.protocol import round_current_topic

    got: list[tuple[str, bytes]] = []

    class Recorder:
        def subscriptions(self) -> list[str]:
            return [round_current_topic()]

        async def handle(self, topic: str, payload: bytes) -> None:
            got.append((topic, payload))

    up = FakeUplink()
    agent = make_agent(model, tmp_path, up)
    agent.participant = Recorder()
    x, _ = synthetic_ecg([0.8] * 5, FS)

    async def main() -> None:
        up.queue.put_nowait((round_current_topic(), b"r1"))
        up.queue.put_nowait((client_topic(Channel.LABEL, "dev"), b"junk"))
        await agent.run(ListSource(chunks_of(x, FS, 360), pause_s=0.01))

    # Execute
    asyncio.run(main())
    # Assert: the round message reached the participant, the bad label was counted
    assert got == [(round_current_topic(), b"r1")]
    assert agent.stats.bad_payloads == 1


def test_the_status_tells_the_care_team_when_s_in_af_is_reported_n(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    from edge_agent.quality_gate import QualityGate

    agent = make_agent(model, tmp_path, None)
    agent.gate = QualityGate("dev")
    before = json.loads(agent.status_detail())
    agent.gate.set_patient_rule(True)  # the personal head in use decided it
    after = json.loads(agent.status_detail())
    assert "s_in_af_as_n" not in before and after["s_in_af_as_n"] is True


def test_the_status_tells_how_many_rows_were_set_aside(
    model: OnnxBeatClassifier, tmp_path: Path
) -> None:
    # Prepare: a beat the store would refuse (RR over the wire's 60 s), set aside by the pump
    agent = make_agent(model, tmp_path, None)
    bad = BeatPrediction("dev", 10**18, 0, "N", {"N": 1.0}, "v1", 75.0)
    agent.buffer.add([bad], [])
    before = json.loads(agent.status_detail())
    # Execute
    agent.buffer.mark_rejected([beat_row_id(bad)])
    after = json.loads(agent.status_detail())
    # Assert: the care team's page can say that predictions were not sent
    assert "rejected" not in before and after["rejected"] == 1


class _Classes:
    """A classifier stand-in: only its classes and version are read here."""

    def __init__(self, classes: str) -> None:
        self.classes, self.version = tuple(classes), "x"


def test_labels_are_checked_against_the_running_models_classes(tmp_path: Path) -> None:
    # Prepare: the agent starts on a 5-class model, then serves one with a class "A" (a swapped
    # model); the split-out router once kept the classes it was built with
    pipe = EcgPipeline("dev", object(), _Classes("NSVFQ"))  # type: ignore[arg-type]
    buffer = SqliteBuffer(tmp_path / "b.sqlite", "dev")
    agent = EdgeAgent(EdgeSettings(client_id="dev"), pipe, BeatEventDetector("dev"), buffer)
    pipe.set_classifier(_Classes("NA"))  # type: ignore[arg-type]
    # Execute: a clinician labels a beat "A"
    agent.handle_inbound(
        client_topic(Channel.LABEL, "dev"), encode_label(Label("l1", "dev", 10**18, "A"))
    )
    # Assert: checked and queued for a receipt, not refused as an unknown class
    try:
        assert agent.stats.bad_payloads == 0
        assert agent.buffer.receipts.counts()["pending"] == 1
    finally:
        agent.close()
