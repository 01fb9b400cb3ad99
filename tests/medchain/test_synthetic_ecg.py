"""Simulated ECG: physical properties and WFDB round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from medchain.synthetic_ecg import simulate_ecg, write_wfdb


def test_heart_rate_and_beat_mix() -> None:
    # Execute
    rec = simulate_ecg(duration_s=300, hr_bpm=70, seed=1)
    # Assert
    rr = np.diff(rec.r_peaks) / rec.fs
    assert 60 / 80 < np.median(rr) < 60 / 60
    counts = {s: rec.symbols.count(s) for s in "NVA"}
    assert counts["V"] > 5 and counts["A"] > 3 and counts["N"] > 250
    # R peaks sit on the local maximum of the QRS (within 20 ms) for sinus beats.
    for p, s in zip(rec.r_peaks[5:50], rec.symbols[5:50], strict=True):
        if s == "N":
            w = rec.signal[p - 7 : p + 8]
            assert abs(int(np.argmax(w)) - 7) <= 7


def test_af_episode_is_irregular() -> None:
    rec = simulate_ecg(duration_s=400, af_fraction=0.3, pvc_rate=0, apc_rate=0, seed=2)
    t = rec.r_peaks / rec.fs
    rr = np.diff(t)
    mid = (t[1:] > 160) & (t[1:] < 240)
    edge = t[1:] < 100
    cv = lambda x: np.std(x) / np.mean(x)  # noqa: E731
    assert cv(rr[mid]) > 3 * cv(rr[edge])


def test_wfdb_round_trip(tmp_path: Path) -> None:
    rec = simulate_ecg(duration_s=60, seed=3)
    path = write_wfdb(rec, tmp_path)
    back = wfdb.rdrecord(str(path))
    ann = wfdb.rdann(str(path), "atr")
    assert back.fs == rec.fs
    assert "SIMULATED" in back.comments[0]
    np.testing.assert_allclose(back.p_signal[:, 0] * 1000, rec.signal, atol=1.0)
    np.testing.assert_array_equal(ann.sample, rec.r_peaks)
