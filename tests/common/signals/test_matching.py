"""EC57-style one-to-one matching of detected and reference peaks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.matching import match_peaks


def test_counts_and_pairs() -> None:
    # Prepare
    det = [1300, 100, 460, 800]
    ref = [102, 455, 1000, 1290]
    # Execute
    m = match_peaks(det, ref, 54)
    # Assert
    assert (m.tp, m.fp, m.fn) == (3, 1, 1)
    pairs = sorted(
        zip(np.asarray(det)[m.matched_detected], np.asarray(ref)[m.matched_reference], strict=True)
    )
    assert pairs == [(100, 102), (460, 455), (1300, 1290)]
    assert m.sensitivity == pytest.approx(0.75) and m.positive_predictivity == pytest.approx(0.75)


def test_one_detection_matches_one_reference() -> None:
    # Execute: two references near one detection, two detections near one reference
    a = match_peaks([100], [90, 110], 20)
    b = match_peaks([90, 110], [100], 20)
    # Assert
    assert (a.tp, a.fp, a.fn) == (1, 0, 1)
    assert (b.tp, b.fp, b.fn) == (1, 1, 0)


def test_empty_inputs() -> None:
    # Execute / Assert
    assert (match_peaks([], [], 10).tp, match_peaks([], [5], 10).fn) == (0, 1)
    assert np.isnan(match_peaks([], [], 10).sensitivity)
    with pytest.raises(ValueError, match="tolerance"):
        match_peaks([1], [1], -1)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 5000), max_size=40),
    st.lists(st.integers(0, 5000), max_size=40),
    st.integers(0, 100),
)
def test_counts_are_consistent(det: list[int], ref: list[int], tol: int) -> None:
    # Execute
    m = match_peaks(det, ref, tol)
    # Assert
    assert m.tp + m.fn == len(ref) and m.tp + m.fp == len(det)
    d = np.asarray(det)[m.matched_detected]
    r = np.asarray(ref)[m.matched_reference]
    assert np.all(np.abs(d - r) <= tol)
    assert len(set(m.matched_detected.tolist())) == m.tp == len(set(m.matched_reference.tolist()))
