"""The detector and the beat pipeline on real MIT-BIH records (first 5 minutes, read in place)."""

from __future__ import annotations

import numpy as np
import pytest

from common.signals.beats import BeatSpec
from common.signals.ecg import ecg_beats
from common.signals.matching import match_peaks
from common.signals.peaks import ecg_findpeaks
from tests.support.datasets import dataset_path

BEATS = set("NLRBAaJSVrFejnE/fQ?")
FIVE_MIN = 5 * 60 * 360


def read(record: str) -> tuple[np.ndarray, np.ndarray]:
    import wfdb  # a dev dependency: a missing one must fail, not skip

    folder = dataset_path("mitdb")
    rec = wfdb.rdrecord(str(folder / record), channels=[0], sampto=FIVE_MIN)
    ann = wfdb.rdann(str(folder / record), "atr", sampto=FIVE_MIN)
    beats = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEATS])
    return rec.p_signal[:, 0] * 1000.0, beats


@pytest.mark.parametrize(("record", "floor"), [("100", 99.9), ("105", 98.5), ("208", 99.0)])
def test_detector_on_real_records(record: str, floor: float) -> None:
    # Prepare
    x, ref = read(record)
    # Execute
    peaks = ecg_findpeaks(x, 360.0)
    # Assert: EC57 scoring, 150 ms, skipping the first and last second
    m = match_peaks(peaks, ref, 54)
    keep_ref = (ref >= 360) & (ref < x.size - 360)
    matched = np.zeros(ref.size, dtype=bool)
    matched[m.matched_reference] = True
    det_ok = np.zeros(peaks.size, dtype=bool)
    det_ok[m.matched_detected] = True
    keep_det = (peaks >= 360) & (peaks < x.size - 360)
    se = 100 * (matched & keep_ref).sum() / keep_ref.sum()
    ppv = 100 * (det_ok & keep_det).sum() / keep_det.sum()
    assert se >= floor and ppv >= floor, (se, ppv)


def test_beat_inputs_from_detected_peaks_match_annotated_ones() -> None:
    # Prepare: record 100, model at 128 Hz
    x, ref = read("100")
    spec = BeatSpec(sampling_rate_hz=128.0, before_samples=32, after_samples=64)
    peaks = ecg_findpeaks(x, 360.0)
    m = match_peaks(peaks, ref, 54)
    # Execute
    from_ann = ecg_beats(x, 360.0, ref[m.matched_reference], spec)
    from_det = ecg_beats(x, 360.0, peaks[m.matched_detected], spec)
    # Assert: the edge sees (nearly) the windows training saw
    ok = from_ann.in_bounds & from_det.in_bounds
    diff = np.abs(from_ann.windows[ok] - from_det.windows[ok]).mean(axis=1)
    assert np.median(diff) < 0.05
    assert np.all(np.isfinite(from_det.rr[1:]))
