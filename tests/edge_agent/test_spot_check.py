"""Spot checks (one verdict per short recording) and the quality gate inside the agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from common.pred_payloads import decode_predictions
from common.protocol import Channel, ProtocolError, client_topic
from common.signals.rhythm_input import FEATURE_NAMES, RhythmInput
from common.spot_payloads import SpotCheckRequest, decode_spot_result, encode_spot_request
from edge_agent.agent import EdgeAgent
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.pipeline import EcgPipeline
from edge_agent.quality_gate import QualityGate
from edge_agent.rhythm import RhythmMonitor
from edge_agent.spot_check import SpotCheckRecorder, SpotCheckService
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
CV = FEATURE_NAMES.index("rr_cv")


class FakeScorer:
    """AF for irregular RR, noisy for a huge QRS scale (noise), else N."""

    classes = ("N", "AF", "O", "noisy")
    version = "fake-2"

    def probabilities(self, inputs: Sequence[RhythmInput]) -> npt.NDArray[np.float32]:
        rows = [
            [0.1, 0.0, 0.1, 0.8] if i.scale_uv > 2500 else
            [0.1, 0.85, 0.05, 0.0] if i.features[CV] > 0.1 else [0.9, 0.05, 0.05, 0.0]
            for i in inputs
        ]  # fmt: skip
        return np.asarray(rows, dtype=np.float32)


def _irregular(seconds: float, seed: int = 1) -> npt.NDArray[np.float64]:
    rr = list(np.random.default_rng(seed).uniform(0.45, 1.1, int(seconds)))
    return synthetic_ecg(rr, FS)[0]


def test_recorder_takes_the_next_seconds_and_a_gap_ends_it() -> None:
    # Prepare
    x = _irregular(45)
    chunks = chunks_of(x, FS, 360)
    full, cut = SpotCheckRecorder(30.0), SpotCheckRecorder(30.0)
    # Execute
    done_at = next(i for i, c in enumerate(chunks) if full.push(c))
    for c in chunks[:12] + chunks[14:]:
        if cut.push(c):
            break
    # Assert
    assert done_at == 29 and full.samples().size == 30 * 360 and full.seconds == 30.0
    assert cut.done and cut.seconds == 12.0
    assert full.t_end_ns - full.t_start_ns == 30 * 10**9
    assert full.verdict(FakeScorer()).label == "AF"
    assert cut.verdict(FakeScorer()).decided


def test_under_nine_seconds_there_is_no_verdict() -> None:
    rec = SpotCheckRecorder(30.0)
    for c in chunks_of(_irregular(20)[: int(8 * FS)], FS, 360):
        rec.push(c)
    verdict = rec.verdict(FakeScorer())
    assert not verdict.decided and verdict.label == "noisy" and verdict.quality == ("too_short",)
    assert verdict.to_json()["probabilities"] == {}


def test_service_records_on_request_and_answers_once() -> None:
    # Prepare
    sent: list[tuple[str, bytes]] = []
    service = SpotCheckService("w1", FakeScorer(), "fake-2", lambda t, p: sent.append((t, p)))
    chunks = chunks_of(_irregular(40), FS, 360)
    # Execute: nothing before the request; a second request while recording is refused
    before = [e for c in chunks[:3] for e in service.process(c)]
    service.request(encode_spot_request(SpotCheckRequest("w1", "q-1", 20.0)))
    with pytest.raises(ProtocolError, match="refused"):
        service.request(encode_spot_request(SpotCheckRequest("w1", "q-2", 20.0)))
    with pytest.raises(ProtocolError, match="w2"):
        service.request(encode_spot_request(SpotCheckRequest("w2", "q-3", 20.0)))
    events = [e for c in chunks[3:] for e in service.process(c)]
    # Assert
    assert before == [] and [e.kind for e in events] == ["spot_check"]
    (event,) = events
    assert event.details["class"] == "AF" and event.details["request_id"] == "q-1"
    assert event.details["rhythm"] == "AF"  # what the live patient view shows
    assert (event.t_end_ns - event.t_start_ns) == 20 * 10**9
    ((topic, payload),) = sent
    result = decode_spot_result(payload)
    assert topic == client_topic(Channel.SPOT, "w1") and result.label == "AF" and result.decided
    assert result.request_id == "q-1" and result.model_version == "fake-2"
    assert service.completed == 1 and service.refused == 1


@pytest.fixture(scope="module")
def beat_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxBeatClassifier:
    return OnnxBeatClassifier(build_beat_model(tmp_path_factory.mktemp("m")))


@pytest.fixture
def agent(beat_model: OnnxBeatClassifier, tmp_path: Path) -> Iterator[tuple[EdgeAgent, FakeUplink]]:
    up = FakeUplink()
    gate = QualityGate("dev")
    settings = EdgeSettings(client_id="dev", flush_interval_s=0.05, status_interval_s=10.0)
    pipe = EcgPipeline("dev", StreamingBeatFeaturizer(SPEC, ThresholdDetector, FS), beat_model)
    monitor = RhythmMonitor("dev", FakeScorer(), gate=gate)
    spot = SpotCheckService("dev", FakeScorer(), "fake-2", lambda t, p: up.reliable.append((t, p)))
    a = EdgeAgent(
        settings,
        pipe,
        BeatEventDetector("dev"),
        SqliteBuffer(tmp_path / "b.sqlite", "dev"),
        up,
        rhythm=monitor,
        gate=gate,
        spot=spot,
    )
    yield a, up
    a.close()


def test_noise_gives_no_v_alarm_and_its_beats_are_q(agent: tuple[EdgeAgent, FakeUplink]) -> None:
    # Prepare: 40 s sinus, then 20 s with runs of premature (V) beats under heavy noise, 40 s sinus
    a, up = agent
    rr = [0.8] * 50 + [0.8, 0.45, 0.45, 0.45, 1.0] * 6 + [0.8] * 50
    x, peaks = synthetic_ecg(rr, FS)
    lo, hi = int(40 * FS), int(60 * FS)
    x[lo:hi] += np.random.default_rng(3).normal(0.0, 3000.0, hi - lo) * (
        np.abs(np.sin(np.arange(hi - lo) / 50.0)) > 0.7
    )
    # Execute
    stats = asyncio.run(a.run(ListSource(chunks_of(x, FS, 360), pause_s=0.0)))
    beats = [
        b
        for _, p in up.reliable
        if _ == client_topic(Channel.PRED, "dev")
        for b in decode_predictions(p).beats
    ]
    # Assert: no vt_run, the beats inside the noise are Q (the web page then says "too noisy")
    assert "vt_run" not in stats.events_by_kind and stats.beats == len(beats) > 0
    # ... but the care team is told: one unreadable stretch, with the V beats it held
    told = [
        e
        for _, p in up.reliable
        if _ == client_topic(Channel.PRED, "dev")
        for e in decode_predictions(p).events
    ]
    (stretch,) = [e for e in told if e.kind == "unreadable_signal"]
    assert int(stretch.details["ventricular_beats"]) > 0 and int(stretch.details["beats"]) >= 20
    assert json.loads(a.status_detail())["signal"] == "ok"  # the stream ends readable
    inside = [b for b in beats if lo <= b.sample < hi]
    assert inside and all(b.label == "Q" and b.rr_s != b.rr_s for b in inside)
    assert all(b.label != "Q" for b in beats if b.sample < lo - 2 * FS)


def test_a_spot_check_requested_over_the_control_topic(agent: tuple[EdgeAgent, FakeUplink]) -> None:
    # Prepare: the device streams 40 s of irregular rhythm; the request arrives first
    a, up = agent
    request = encode_spot_request(SpotCheckRequest("dev", "web-7", 30.0))
    a.handle_inbound(client_topic(Channel.CONTROL, "dev"), request)
    a.handle_inbound(client_topic(Channel.CONTROL, "dev"), b"garbage")
    # Execute
    stats = asyncio.run(a.run(ListSource(chunks_of(_irregular(40), FS, 360))))
    # Assert: one result on spot/dev, one spot_check event through pred; the garbage counted
    results = [
        decode_spot_result(p) for t, p in up.reliable if t == client_topic(Channel.SPOT, "dev")
    ]
    events = [
        e
        for t, p in up.reliable
        if t == client_topic(Channel.PRED, "dev")
        for e in decode_predictions(p).events
    ]
    assert [r.label for r in results] == ["AF"] and results[0].request_id == "web-7"
    assert [e.details["class"] for e in events if e.kind == "spot_check"] == ["AF"]
    assert stats.bad_payloads == 1


def test_medchain_edge_spot_check_prints_one_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 40 s at 250 Hz in a CSV with a time column; a spike train is N for the v1
    # model (RR only), not for v2 (no P or T waves: see the next test)
    from medchain.cli import main

    v1 = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "rhythm_softmax.onnx"
    monkeypatch.setenv("MEDCHAIN_EDGE_RHYTHM_MODEL_PATH", str(v1))

    x, _ = synthetic_ecg([0.8] * 48, 250.0)
    t = np.arange(x.size) / 250.0
    path = tmp_path / "rec.csv"
    np.savetxt(
        path, np.column_stack([t, x]), delimiter=",", header="time,ecg", comments="", fmt="%.5f"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("time,ecg\n0,1\nx,y\n")
    # Execute
    rc = main(
        ["edge", "--source", f"replay:{path}", "--spot-check", "--state-dir", str(tmp_path / "s")]
    )
    out = capsys.readouterr().out
    rc_bad = main(
        ["edge", "--source", f"replay:{bad}", "--spot-check", "--state-dir", str(tmp_path / "s")]
    )
    err = capsys.readouterr().err
    # Assert
    verdict = json.loads(out)
    assert rc == 0 and verdict["class"] == "N" and verdict["decided"] is True
    assert verdict["duration_s"] == 30.0 and verdict["windows"] == 1 and verdict["model"]
    assert set(verdict["probabilities"]) >= {"N", "AF", "O"}
    assert rc_bad == 2 and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.datasets("mitdb")
def test_spot_check_of_real_sinus_rhythm_with_the_default_model_is_n(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare
    from medchain.cli import main
    from tests.support.datasets import dataset_path

    record = dataset_path("mitdb") / "100"
    # Execute
    rc = main(["edge", "--source", f"replay:{record}", "--spot-check",
               "--state-dir", str(tmp_path / "s")])  # fmt: skip
    verdict = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0 and verdict["class"] == "N" and verdict["decided"] is True
    assert "noisy" in verdict["probabilities"]
