"""Record views (other rate, polarity, wander, real noise) and the noise they add."""

from __future__ import annotations

import os

import numpy as np
import pytest

from models.augment import RecordView, apply_view, baseline_wander, training_views
from models.data.mitdb import MitdbRecord
from models.noise import nstdb_mask, qrs_power, scaled_noise, strip_qrs


def _record(fs: float = 360.0, seconds: float = 60.0) -> MitdbRecord:
    """A spike train at 72 bpm (R peaks of 1 mV) on a flat baseline."""
    n = round(fs * seconds)
    beats = np.arange(round(0.5 * fs), n - round(0.5 * fs), round(fs / 1.2)).astype(np.int64)
    x = np.zeros(n)
    width = max(1, round(0.01 * fs))
    for b in beats:
        x[b - width : b + width + 1] = 1000.0 * np.hanning(2 * width + 1)
    return MitdbRecord("100", fs, x, "MLII", beats, np.zeros(beats.size, np.int64))


def test_nstdb_schedule() -> None:
    m = nstdb_mask(round(15 * 60 * 10), 10.0)
    t = np.arange(m.size) / 10.0
    assert not m[t < 300].any()
    assert m[(t >= 300) & (t < 420)].all() and not m[(t >= 420) & (t < 540)].any()
    assert m[(t >= 540) & (t < 660)].all()


def test_scaled_noise_has_the_asked_snr() -> None:
    noise = np.random.default_rng(0).normal(0, 7, 10_000)
    out = scaled_noise(noise, 1e4, 6.0)
    assert 10 * np.log10(1e4 / np.mean(out**2)) == pytest.approx(6.0)
    assert not scaled_noise(np.zeros(10), 1.0, 0.0).any()


def test_qrs_power_is_the_nstdb_definition() -> None:
    rec = _record()
    power = qrs_power(rec.signal_uv, rec.fs, rec.beat_samples)
    # the band-passed spike's peak-to-peak, squared over 8: same order as 1 mV
    assert 1e4 < power < 1e6


def test_strip_qrs_removes_a_donors_beats() -> None:
    rec = _record(fs=300.0)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 20, rec.signal_uv.size)
    out = strip_qrs(rec.signal_uv + noise, rec.fs)
    assert np.abs(out).max() < 0.3 * np.abs(rec.signal_uv).max()


def test_identity_view_is_the_record() -> None:
    rec = _record()
    assert apply_view(rec, RecordView(), {}) is rec


def test_rate_view_moves_the_beats_with_the_signal() -> None:
    rec = _record()
    out = apply_view(rec, RecordView(rate_hz=128.0), {})
    assert out.fs == 128.0 and out.signal_uv.size == round(rec.signal_uv.size * 128 / 360)
    assert out.beat_samples.size == rec.beat_samples.size
    peaks = [int(np.argmax(out.signal_uv[b - 3 : b + 4])) - 3 for b in out.beat_samples]
    assert max(map(abs, peaks)) <= 1  # each mapped R peak on its resampled spike


def test_polarity_gain_and_wander() -> None:
    rec = _record()
    out = apply_view(rec, RecordView(polarity=-1, gain=2.0), {})
    np.testing.assert_allclose(out.signal_uv, -2.0 * rec.signal_uv)
    w = baseline_wander(36_000, 360.0, 300.0, np.random.default_rng(0))
    assert np.abs(w).max() <= 300.0 + 1e-9 and np.abs(w).max() > 50.0
    spectrum = np.abs(np.fft.rfft(w))
    freqs = np.fft.rfftfreq(w.size, 1 / 360.0)
    assert freqs[np.argmax(spectrum)] <= 0.5


def test_training_views_are_seeded_per_record() -> None:
    a, b = training_views(4, 0, "101"), training_views(4, 0, "101")
    assert a == b and a != training_views(4, 0, "106") and a != training_views(4, 1, "101")
    assert all(128 <= v.rate_hz <= 500 for v in a if v.rate_hz is not None)
    assert all(v.snr_db is None for v in training_views(6, 0, "101", noise=False))
    assert training_views(2, 0, "101") == a[:2]
    near = training_views(4, 0, "101", noise=False, rate=False, polarity=False)
    assert all(v.rate_hz is None and v.polarity == 1 and v.snr_db is None for v in near)
    assert [v.gain for v in near] == [v.gain for v in a]  # the other draws are unchanged


@pytest.mark.datasets("cinc2017_training")
def test_noise_view_adds_real_noise_at_the_snr(data_root: object) -> None:
    from models.noise import noise_records

    env = dict(os.environ)
    train, test = noise_records(env, "train"), noise_records(env, "test")
    assert not set(train) & set(test) and len(train) + len(test) == 239
    rec = _record()
    out = apply_view(rec, RecordView(snr_db=6.0, noise_pool="test", seed=2), env)
    added = out.signal_uv - rec.signal_uv
    power = qrs_power(rec.signal_uv, rec.fs, rec.beat_samples)
    assert 10 * np.log10(power / np.mean(added**2)) == pytest.approx(6.0, abs=1e-6)
    again = apply_view(rec, RecordView(snr_db=6.0, noise_pool="test", seed=2), env)
    np.testing.assert_array_equal(out.signal_uv, again.signal_uv)
