"""The rhythm monitor on a stream: AF episodes, decisions from 9 s, unreadable signal gated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from common.signals.rhythm_input import FEATURE_NAMES, RhythmInput
from common.types import BeatPrediction, SignalChunk, StreamKind
from edge_agent.pipeline import empty_batch
from edge_agent.quality_gate import QualityGate
from edge_agent.rhythm import OnnxRhythmScorer, RhythmMonitor
from tests.edge_agent.helpers import synthetic_ecg

NS = 1_000_000_000
CV = FEATURE_NAMES.index("rr_cv")
PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


class ByIrregularity:
    """AF when the RR coefficient of variation exceeds 0.1; noisy when the QRS scale is huge."""

    classes = ("N", "AF", "O", "noisy")
    version = "fake-1"

    def probabilities(self, inputs: Sequence[RhythmInput]) -> npt.NDArray[np.float32]:
        out = []
        for i in inputs:
            if i.scale_uv > 2500.0:
                out.append([0.1, 0.0, 0.1, 0.8])
            elif i.features[CV] > 0.1:
                out.append([0.1, 0.9, 0.0, 0.0])
            else:
                out.append([0.9, 0.05, 0.05, 0.0])
        return np.asarray(out, dtype=np.float32)


def _stream(mon: RhythmMonitor, x: npt.NDArray[np.float64], fs: float) -> list:
    events = []
    for s in range(0, x.size, int(fs)):
        chunk = SignalChunk(
            StreamKind.ECG, fs, 1000 * NS + round(s * NS / fs), x[s : s + int(fs), None], s
        )
        events += mon.process(chunk, [])
    return events + mon.flush()


def test_rhythm_monitor_reports_one_af_episode() -> None:
    # Prepare: 2 min sinus, 3 min irregular, 2 min sinus at 250 Hz
    fs = 250.0
    rng = np.random.default_rng(5)
    rr = [0.8] * 150 + list(rng.uniform(0.45, 1.1, 235)) + [0.8] * 150
    x, peaks = synthetic_ecg(rr, fs)
    mon = RhythmMonitor("d", ByIrregularity(), 30.0)
    # Execute
    events = _stream(mon, x, fs)
    # Assert
    assert [e.kind for e in events] == ["af_episode"]
    (e,) = events
    assert abs(e.t_start_ns - (1000 * NS + round(peaks[150] / fs * NS))) <= 31 * NS
    assert abs(e.t_end_ns - (1000 * NS + round(peaks[385] / fs * NS))) <= 61 * NS
    assert e.details["source"] == "rhythm" and int(e.details["windows"]) >= 4


def test_signal_quality_follows_the_latest_segment() -> None:
    # Prepare: 20 s sinus then 15 s of noise
    fs = 250.0
    x, _ = synthetic_ecg([0.8] * 44, fs)
    x[int(20 * fs) :] += np.random.default_rng(1).normal(0.0, 3000.0, x.size - int(20 * fs))
    mon = RhythmMonitor("d", ByIrregularity())
    # Execute
    before = mon.signal_quality
    _stream(mon, x[: int(20 * fs)], fs)
    mid = mon.signal_quality
    _stream(mon, x, fs)
    # Assert
    assert (before, mid, mon.signal_quality) == ("", "ok", "too noisy")


def test_a_recording_shorter_than_a_window_is_decided_from_9_s() -> None:
    # Prepare: 20 s of irregular rhythm (less than one 30 s window), and 8 s of it
    fs = 300.0
    rr = list(np.random.default_rng(2).uniform(0.45, 1.1, 30))
    x, _ = synthetic_ecg(rr, fs)
    x = x[: int(20 * fs)]
    # Execute
    long_mon, short_mon = RhythmMonitor("d", ByIrregularity()), RhythmMonitor("d", ByIrregularity())
    long_events = _stream(long_mon, x, fs)
    short_events = _stream(short_mon, x[: int(8 * fs)], fs)
    # Assert
    assert long_mon.windows == 1 and [e.kind for e in long_events] == ["af_episode"]
    assert short_mon.windows == 0 and short_events == []


def test_unreadable_signal_turns_beats_to_q_and_gives_no_af() -> None:
    # Prepare: 60 s sinus, 30 s of sinus under heavy noise, 60 s sinus; the gate holds V beats
    fs = 250.0
    x, peaks = synthetic_ecg([0.8] * 190, fs)
    rng = np.random.default_rng(0)
    noisy = slice(int(60 * fs), int(90 * fs))
    x[noisy] += rng.normal(0.0, 3000.0, x[noisy].size)
    gate = QualityGate()
    mon = RhythmMonitor("d", ByIrregularity(), gate=gate)
    beats = [
        BeatPrediction("d", int(p) * 4_000_000, int(p), "V", {"V": 1.0}, "m", 0.8) for p in peaks
    ]
    # Execute
    events = _stream(mon, x, fs)
    held = gate.hold(beats, empty_batch())[0] + gate.flush()[0]
    # Assert: the three 10 s segments of noise are unreadable, their beats Q, no AF
    assert events == [] and mon.unreadable_segments == 3 and mon.noisy_windows == 1
    assert mon.signal_quality == "ok"
    q = [b.sample for b in held if b.label == "Q"]
    assert q and min(q) >= 60 * fs and max(q) < 90 * fs
    assert sum(b.label == "V" for b in held) == len(peaks) - len(q)


@pytest.mark.parametrize("model", ["rhythm_softmax.onnx", "rhythm.onnx"])
def test_shipped_rhythm_models_load_and_score(model: str) -> None:
    # Prepare
    path = PRETRAINED / model  # both are shipped: a missing one fails
    x, _ = synthetic_ecg([0.8] * 40, 250.0)
    scorer = OnnxRhythmScorer(path)
    from common.signals.rhythm_input import prepare_rhythm_input

    # Execute
    probs = scorer.probabilities(
        [prepare_rhythm_input(x[: 250 * 30], 250.0), prepare_rhythm_input(x[: 250 * 12], 250.0)]
    )
    # Assert
    assert probs.shape == (2, len(scorer.classes)) and "AF" in scorer.classes
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    if "noisy" not in scorer.classes:  # v1 reads RR only: a regular spike train is N; v2
        # reads the waveform, and spikes without P or T waves are not sinus rhythm (below)
        assert scorer.classes[int(probs[0].argmax())] == "N"


@pytest.mark.datasets("mitdb", "aftdb")
def test_v2_calls_sinus_rhythm_n_and_atrial_fibrillation_af() -> None:
    # Prepare: 30 s of MIT-BIH 100 (sinus, 360 Hz) and of AFTDB n01 (AF, 128 Hz), real ECG
    import wfdb

    from common.signals.rhythm_input import prepare_rhythm_input
    from tests.support.datasets import dataset_path

    scorer = OnnxRhythmScorer(PRETRAINED / "rhythm.onnx")  # shipped: its absence is a failure
    sinus = wfdb.rdrecord(str(dataset_path("mitdb") / "100"), channel_names=["MLII"], sampto=10800)
    af = wfdb.rdrecord(
        str(dataset_path("aftdb") / "learning-set" / "n01"), channels=[0], sampto=3840
    )
    # Execute
    probs = scorer.probabilities(
        [prepare_rhythm_input(r.p_signal[:, 0] * 1000.0, float(r.fs)) for r in (sinus, af)]
    )
    # Assert
    assert [scorer.classes[int(i)] for i in probs.argmax(axis=1)] == ["N", "AF"]


def test_a_rhythm_model_reading_two_channels_is_refused_at_load(tmp_path: Path) -> None:
    # Prepare: a development RR-track model (ecg (N, 2, L)) beside the shipped card; the
    # edge gives one channel, so it would have failed at its first window
    import shutil

    import torch

    from common.errors import CorruptInputError
    from models.rhythm_export import export_rhythm_onnx
    from models.rhythm_net import RhythmNet
    from models.tasks.rhythm import TASK

    torch.manual_seed(0)
    net = RhythmNet(TASK.student, np.zeros(len(FEATURE_NAMES)), np.ones(len(FEATURE_NAMES)), 4, 2)
    path = export_rhythm_onnx(net, tmp_path / "rhythm.onnx")
    shutil.copy(PRETRAINED / "rhythm.card.json", tmp_path / "rhythm.card.json")
    # Execute / Assert
    with pytest.raises(CorruptInputError, match="the edge gives"):
        OnnxRhythmScorer(path)
