"""The RR track: each interval's log ratio to the median, aligned with the ECG's samples."""

from __future__ import annotations

import doctest

import numpy as np

from common.signals import rr_track as module
from common.signals.rr_track import TRACK_CLIP, rr_track


def test_doctests() -> None:
    assert doctest.testmod(module).failed == 0


def test_a_premature_beat_dips_then_its_pause_rises() -> None:
    # Prepare: 1 s beats at 128 Hz with one premature beat (0.6 s) and its pause (1.4 s)
    rr = [1.0] * 5 + [0.6, 1.4] + [1.0] * 5
    peaks = np.round(np.concatenate([[0.5], 0.5 + np.cumsum(rr)]) * 128).astype(int)
    # Execute
    t = rr_track(peaks, int(peaks[-1]) + 64, 128.0)
    # Assert: 0 where the RR is the median, log(0.6) then log(1.4) on the premature pair
    assert t[: peaks[0]].tolist() == [0.0] * int(peaks[0]) and t[peaks[-1] :].max() == 0.0
    np.testing.assert_allclose(t[peaks[5] : peaks[6]], np.log(0.6), atol=0.01)  # peaks on samples
    np.testing.assert_allclose(t[peaks[6] : peaks[7]], np.log(1.4), atol=0.01)
    assert np.abs(t[peaks[0] : peaks[5]]).max() < 0.01


def test_detector_errors_and_too_few_beats_give_nothing_out_of_bounds() -> None:
    # a doubled peak (RR 0.05 s) and a 5 s pause are left at 0; a huge ratio is clipped
    t = rr_track([10, 16, 138, 266, 394, 1034, 1162, 1290], 1400, 128.0)
    assert t[10:16].max() == 0.0 and t[394:1034].max() == 0.0
    assert np.abs(t).max() <= TRACK_CLIP
    assert not rr_track([10, 138], 300, 128.0).any()  # one interval
    assert not rr_track([], 300, 128.0).any()
    assert rr_track([-5, 10, 138, 266, 394, 9999], 400, 128.0).shape == (400,)  # out of range
