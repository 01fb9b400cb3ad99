"""ECG pipeline: streaming featurizer + batched classification on synthetic ECG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.signals.ecg import ecg_beats
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.pipeline import EcgPipeline
from tests.edge_agent.helpers import (
    SPEC,
    ThresholdDetector,
    build_beat_model,
    chunks_of,
    synthetic_ecg,
)

FS = 360.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxBeatClassifier:
    return OnnxBeatClassifier(build_beat_model(tmp_path_factory.mktemp("m")))


def make_pipeline(model: OnnxBeatClassifier) -> EcgPipeline:
    return EcgPipeline("dev", StreamingBeatFeaturizer(SPEC, ThresholdDetector, FS), model)


def run(pipe: EcgPipeline, chunks: list) -> tuple[list, list]:
    beats, windows = [], []
    for c in chunks:
        res = pipe.process(c)
        beats += res.beats
        windows.append(res.batch.windows)
    res = pipe.flush()
    beats += res.beats
    windows.append(res.batch.windows)
    return beats, [w for w in windows if len(w)]


def test_streaming_windows_equal_whole_record_windows(model: OnnxBeatClassifier) -> None:
    # Prepare
    rr = [0.8, 0.82, 0.78, 0.5, 1.1, 0.8] * 5
    x, peaks = synthetic_ecg(rr, FS)
    # Execute: odd chunk size so chunk borders fall everywhere
    beats, windows = run(make_pipeline(model), chunks_of(x, FS, 97))
    # Assert: every beat found, at the right sample, with the training-side windows
    detected = np.array([b.sample for b in beats])
    assert detected.size == peaks.size
    assert np.max(np.abs(detected - peaks)) <= 2
    ref = ecg_beats(x, FS, detected, SPEC)
    np.testing.assert_allclose(np.vstack(windows), ref.windows, rtol=1e-4, atol=1e-4)


def test_premature_beats_are_classified_v_and_rr_is_reported(model: OnnxBeatClassifier) -> None:
    # Prepare: the test model calls a beat V when rr_pre / rr_local < 0.8
    rr = [0.8] * 12 + [0.45] + [1.15] + [0.8] * 10
    x, _ = synthetic_ecg(rr, FS)
    # Execute
    beats, _ = run(make_pipeline(model), chunks_of(x, FS, 360))
    # Assert
    labels = "".join(b.label for b in beats)
    assert labels.count("V") == 1
    v = next(b for b in beats if b.label == "V")
    assert v.rr_s == pytest.approx(0.45, abs=0.01)
    assert np.isnan(beats[0].rr_s)
    assert sum(v.probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert v.model_version == "test-1"


def test_times_follow_the_stream_clock(model: OnnxBeatClassifier) -> None:
    x, peaks = synthetic_ecg([0.8] * 10, FS)
    t0 = 1_800_000_000_000_000_000
    beats, _ = run(make_pipeline(model), chunks_of(x, FS, 180, t0_ns=t0, seq0=5000))
    assert beats[0].sample == pytest.approx(5000 + peaks[0], abs=2)
    # chunks_of stamps seq 0 at t0: the first chunk (seq 5000) starts 5000 / FS s later
    assert abs(beats[0].t_ns - (t0 + round(beats[0].sample * 1e9 / FS))) <= 1


def test_duplicate_chunks_are_dropped(model: OnnxBeatClassifier) -> None:
    x, peaks = synthetic_ecg([0.8] * 10, FS)
    chunks = chunks_of(x, FS, 200)
    doubled = [c for c in chunks for _ in range(2)]
    pipe = make_pipeline(model)
    beats, _ = run(pipe, doubled)
    assert len(beats) == peaks.size
    assert pipe.duplicates == sum(c.n_samples for c in chunks)


def test_gap_resets_and_keeps_beats_before_it(model: OnnxBeatClassifier) -> None:
    # Prepare: drop 3 s of signal in the middle
    x, peaks = synthetic_ecg([0.8] * 30, FS)
    chunks = chunks_of(x, FS, 360)
    kept = chunks[:10] + chunks[13:]
    pipe = make_pipeline(model)
    # Execute
    beats, _ = run(pipe, kept)
    # Assert: one gap; no beat is invented in the hole, no RR spans it
    assert pipe.gaps == 1
    samples = np.array([b.sample for b in beats])
    assert not np.any((samples >= 10 * 360) & (samples < 13 * 360))
    after = [b for b in beats if b.sample >= 13 * 360]
    assert np.isnan(after[0].rr_s)
    assert all(b.rr_s < 1.0 for b in after[1:])
    expected = [p for p in peaks if not 10 * 360 <= p < 13 * 360]
    assert len(beats) >= len(expected) - 2


def test_card_without_alignment_means_no_alignment(tmp_path: Path) -> None:
    # Prepare: a card written before BeatSpec had align_window_s
    import json

    from edge_agent.app import beat_spec_from_card

    path = build_beat_model(tmp_path)
    card_file = tmp_path / "beat.card.json"
    raw = json.loads(card_file.read_text())
    raw["input_contract"]["parameters"]["beat_spec"].pop("align_window_s", None)
    card_file.write_text(json.dumps(raw))
    # Execute
    spec = beat_spec_from_card(OnnxBeatClassifier(path).card)
    # Assert
    assert spec.align_window_s == 0.0
    assert spec.before_samples == SPEC.before_samples


def test_no_rr_is_reported_across_a_minute_without_beats(model: OnnxBeatClassifier) -> None:
    # Prepare: beats, 70 s of flat line (a strap off while the sensor streams), beats again
    x1, _ = synthetic_ecg([0.8] * 10, FS)
    x2, _ = synthetic_ecg([0.8] * 10, FS)
    x = np.concatenate([x1, np.zeros(int(70 * FS)), x2])
    # Execute
    beats, _ = run(make_pipeline(model), chunks_of(x, FS, 360))
    # Assert: the wire bounds RR at 60 s: the first beat after the pause has no RR
    gap = [b for a, b in zip(beats, beats[1:], strict=False) if b.sample - a.sample > 60 * FS]
    assert len(gap) == 1 and np.isnan(gap[0].rr_s)
    assert all(np.isnan(b.rr_s) or b.rr_s <= 60.0 for b in beats)


def test_a_model_version_too_long_for_the_wire_is_shortened_uniquely() -> None:
    # Prepare
    from common.payloads import MAX_MODEL_VERSION
    from edge_agent.inference import wire_version

    long_a = "beat-024ca2b17c8b@" + "release-of-clinic-a-" * 3 + "+personal-x"
    long_b = long_a.replace("+personal-x", "+personal-y")
    # Execute
    a, b = wire_version(long_a), wire_version(long_b)
    # Assert: within the wire's 64 characters, distinct, readable start; short ones untouched
    assert len(a) == len(b) == MAX_MODEL_VERSION and a != b and a.startswith("beat-024ca2b17c8b@")
    assert wire_version("beat-024ca2b17c8b@v3+personal-v3") == "beat-024ca2b17c8b@v3+personal-v3"
