"""Live decimation (pure) and replay annotations -> AAMI labels."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.types import SignalChunk, StreamKind
from edge_agent.annotations import AnnotationLabeler
from edge_agent.live import LiveDecimator


def test_decimated_sine_keeps_its_shape_across_chunk_borders() -> None:
    # Prepare: 5 Hz sine at 360 Hz in odd-sized chunks
    fs, n = 360.0, 3600
    t = np.arange(n) / fs
    x = 1000 * np.sin(2 * np.pi * 5 * t)
    dec = LiveDecimator(125.0, 0.04)
    # Execute
    out = []
    for s in range(0, n, 97):
        out += dec.push(SignalChunk(StreamKind.ECG, fs, 0, x[s : s + 97, None], s))
    y = np.concatenate([c.samples[:, 0] for c in out])
    # Assert: 125 Hz, continuous, a low-passed copy (small filter delay allowed)
    ty = np.arange(y.size) / 125.0
    ref = 1000 * np.sin(2 * np.pi * 5 * ty)
    lag = np.argmax([np.dot(y[100:900], ref[100 - k : 900 - k]) for k in range(0, 10)])
    assert np.max(np.abs(y[100:900] - ref[100 - lag : 900 - lag])) < 150
    assert [c.seq for c in out] == list(range(0, 5 * len(out), 5))


def test_low_rate_streams_pass_through() -> None:
    dec = LiveDecimator(125.0, 0.2)
    chunk = SignalChunk(StreamKind.ECG, 100.0, 7, np.ones((50, 1)), 0)
    out = dec.push(chunk)
    assert [(c.fs, c.n_samples, c.seq) for c in out] == [(100.0, 20, 0), (100.0, 20, 20)]


def test_annotation_labels_map_to_aami_within_150_ms() -> None:
    lab = AnnotationLabeler([100, 460, 800, 1200, 1500], ["N", "V", "+", "A", "/"], 360.0)
    assert len(lab) == 4  # '+' is a rhythm annotation, not a beat
    assert lab.labels_for([102, 455, 800, 1150, 1260, 1500]) == ["N", "V", None, "S", None, "Q"]


@settings(derandomize=True, max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 100000), max_size=30), st.lists(st.integers(0, 100000), max_size=30))
def test_annotation_labeler_never_fails(ann: list[int], det: list[int]) -> None:
    lab = AnnotationLabeler(ann, ["N"] * len(ann), 360.0)
    out = lab.labels_for(det)
    assert len(out) == len(det)
    assert all(v in (None, "N") for v in out)
