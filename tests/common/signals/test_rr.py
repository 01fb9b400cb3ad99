"""RR features: values in seconds, causality, stream == batch (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.beats import RR_FEATURES, BeatSpec
from common.signals.rr import RRTracker, rr_features

ALL = BeatSpec(rr_features=RR_FEATURES, rr_local_beats=3, rr_long_s=3.0)


def stream(peaks: np.ndarray, fs: float, spec: BeatSpec, splits: list[int]) -> tuple:
    tracker = RRTracker(fs, spec)
    outs = [tracker.push(p) for p in np.split(peaks, splits)] + [tracker.flush()]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def test_values_in_seconds() -> None:
    # Prepare: 1 s, 1 s, 0.5 s (premature), 1.5 s (compensatory) at 360 Hz
    r = np.array([0, 360, 720, 900, 1440])
    # Execute
    f = rr_features(r, 360.0, ALL)
    col = {name: f[:, i] for i, name in enumerate(RR_FEATURES)}
    # Assert
    np.testing.assert_allclose(col["rr_pre"], [1.0, 1.0, 1.0, 0.5, 1.5])
    np.testing.assert_allclose(col["rr_post"], [1.0, 1.0, 0.5, 1.5, 1.5])
    np.testing.assert_allclose(col["rr_local"], [1.0, 1.0, 1.0, 2.5 / 3, 3.0 / 3])
    # long span 3 s: at beat 4 (t=4 s) intervals ending after t=1 s count
    np.testing.assert_allclose(col["rr_long"], [1.0, 1.0, 1.0, 2.5 / 3, 3.0 / 3])
    np.testing.assert_allclose(col["rr_pre_local_ratio"][3], 0.5 / (2.5 / 3))


def test_local_average_is_causal() -> None:
    # Prepare: change only the future beats
    r = np.arange(10) * 360
    r2 = r.copy()
    r2[7:] += 200
    # Execute
    a, b = rr_features(r, 360.0, ALL), rr_features(r2, 360.0, ALL)
    # Assert: beats 0..5 see nothing of it except beat 6's rr_post
    local = RR_FEATURES.index("rr_local")
    np.testing.assert_array_equal(a[:7, local], b[:7, local])
    np.testing.assert_array_equal(a[:6], b[:6])


def test_single_and_no_beat() -> None:
    # Execute / Assert
    assert rr_features([], 360.0, ALL).shape == (0, len(RR_FEATURES))
    assert np.all(np.isnan(rr_features([5], 360.0, ALL)))
    with pytest.raises(ValueError, match="increasing"):
        rr_features([5, 5], 360.0, ALL)


def test_tracker_emits_with_one_beat_delay() -> None:
    # Prepare
    tracker = RRTracker(360.0, ALL)
    # Execute
    first = tracker.push([100])
    second = tracker.push([460, 820])
    # Assert
    assert first[0].size == 0
    assert second[0].tolist() == [100, 460]
    with pytest.raises(ValueError, match="after"):
        tracker.push([500])


@settings(derandomize=True, max_examples=80, deadline=None)
@given(
    st.lists(st.integers(1, 2000), min_size=0, max_size=60),
    st.lists(st.integers(0, 60), max_size=6),
    st.sampled_from([128.0, 250.0, 360.0]),
    st.integers(1, 12),
    st.floats(0.5, 30.0),
)
def test_streaming_equals_batch_bit_for_bit(gaps, cuts, fs, n_local, long_s) -> None:
    # Prepare
    r = np.cumsum(np.array(gaps, dtype=np.int64)) if gaps else np.zeros(0, dtype=np.int64)
    spec = BeatSpec(rr_features=RR_FEATURES, rr_local_beats=n_local, rr_long_s=long_s)
    # Execute
    peaks, feats = stream(r, fs, spec, sorted(c for c in cuts if c <= r.size))
    batch = rr_features(r, fs, spec)
    # Assert
    np.testing.assert_array_equal(peaks, r)
    np.testing.assert_array_equal(feats, batch)
