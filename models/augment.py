"""Record-level augmentation of the beat task: what another device, lead or wearer records.

A :class:`RecordView` alters one raw MIT-BIH lead before the task's preprocessing (so the
filter, R-peak snapping, windows, template channel and RR features are computed on it exactly as
the edge would): resampling to another rate (128-500 Hz, R peaks mapped to the new rate),
polarity, amplitude, baseline wander (a few slow sinusoids) and real noise at an SNR
(``models.noise``: QRS-stripped noisy CinC 2017 recordings, NSTDB SNR definition, continuous or
on the NSTDB schedule). The same views serve as training augmentation (random draws,
:func:`training_views`, noise pool ``train``) and as evaluation conditions in cross-validation
(fixed views, noise pool ``test``). ``lead`` reads another signal of the record (``"second"``:
its first non-MLII signal), for the unseen-lead check only: training uses MLII.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

from common.signals.resample import map_indices, resample_signal
from models.data.mitdb import MitdbRecord
from models.noise import noise_signal, nstdb_mask, qrs_power, scaled_noise

RATE_RANGE_HZ = (128.0, 500.0)
SNRS_DB = (24.0, 18.0, 12.0, 6.0, 0.0)  # the MIT-BIH noise stress test levels


@dataclass(frozen=True)
class RecordView:
    """One altered copy of a record (defaults: the record as it is).

    Attributes
    ----------
    rate_hz : float, optional
        Resample the lead to this rate (Hz).
    polarity : int
        1 or -1 (the lead inverted).
    gain : float
        Amplitude factor.
    wander_uv : float
        Peak amplitude of the baseline wander (µV; 0 = none).
    snr_db : float, optional
        Real noise at this SNR (dB); None = no noise.
    noise_pool : str
        ``train`` or ``test`` half of the noise recordings.
    nstdb : bool
        Noise only on the NSTDB schedule (clean 5 min, then 2 min noisy / 2 min clean).
    lead : str
        Signal to read (``MLII``; ``second`` = the first non-MLII signal).
    seed : int
        Seeds the wander and the choice of noise recordings.
    """

    rate_hz: float | None = None
    polarity: int = 1
    gain: float = 1.0
    wander_uv: float = 0.0
    snr_db: float | None = None
    noise_pool: str = "train"
    nstdb: bool = False
    lead: str = "MLII"
    seed: int = 0

    def key(self) -> str:
        """A short stable id (cache file names)."""
        raw = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:10]

    @property
    def is_identity(self) -> bool:
        """True if the view changes nothing."""
        return self == RecordView()


def baseline_wander(n: int, fs: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of three sinusoids of 0.05-0.5 Hz with random phases, peak about ``amplitude`` µV."""
    t = np.arange(n) / fs
    out = np.zeros(n)
    for _ in range(3):
        f = rng.uniform(0.05, 0.5)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 3.0


def apply_view(rec: MitdbRecord, view: RecordView, env: Mapping[str, str]) -> MitdbRecord:
    """The record as ``view`` would have recorded it (beats and labels follow the rate)."""
    if view.is_identity:
        return rec
    rng = np.random.default_rng([view.seed, int(rec.name) if rec.name.isdigit() else 0])
    signal, fs, beats = rec.signal_uv, rec.fs, rec.beat_samples
    if view.rate_hz is not None and view.rate_hz != fs:
        signal = resample_signal(signal, fs, view.rate_hz)
        beats = map_indices(beats, fs, view.rate_hz)
        fs = float(view.rate_hz)
    keep = (beats >= 0) & (beats < signal.size) & np.concatenate([[True], np.diff(beats) > 0])
    beats, labels = beats[keep], rec.beat_labels[keep]
    signal = signal * view.gain * view.polarity
    if view.wander_uv > 0:
        signal = signal + baseline_wander(signal.size, fs, view.wander_uv, rng)
    if view.snr_db is not None:
        noise = noise_signal(env, view.noise_pool, signal.size, fs, rng)
        noise = scaled_noise(noise, qrs_power(signal, fs, beats), view.snr_db)
        if view.nstdb:
            noise = noise * nstdb_mask(signal.size, fs)
        signal = signal + noise
    return replace(rec, fs=fs, signal_uv=signal, beat_samples=beats, beat_labels=labels)


def training_views(
    n_views: int,
    seed: int,
    record: str = "",
    noise: bool = True,
    rate: bool = True,
    polarity: bool = True,
) -> list[RecordView]:
    """``n_views`` random views of ``record`` for training augmentation: (``rate``) log-uniform
    rate in :data:`RATE_RANGE_HZ`, (``polarity``) polarity flipped half the time, gain 0.5-2,
    wander up to 500 µV, and (``noise``) train-pool noise at an SNR drawn from :data:`SNRS_DB`
    (or none, 1 in 6). Each record gets its own draws (seeded by ``seed`` and the record's
    name); turning a part off leaves the other parts' draws unchanged."""
    salt = int(hashlib.sha256(record.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, 7919, salt])
    views = []
    for _ in range(n_views):
        lo, hi = np.log(RATE_RANGE_HZ[0]), np.log(RATE_RANGE_HZ[1])
        snr_choice = int(rng.integers(0, len(SNRS_DB) + 1))
        rate_hz = float(round(np.exp(rng.uniform(lo, hi))))
        sign = int(rng.choice([1, -1]))
        views.append(
            RecordView(
                rate_hz=rate_hz if rate else None,
                polarity=sign if polarity else 1,
                gain=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
                wander_uv=float(rng.uniform(0.0, 500.0)),
                snr_db=SNRS_DB[snr_choice] if noise and snr_choice < len(SNRS_DB) else None,
                noise_pool="train",
                seed=int(rng.integers(0, 2**31)),
            )
        )
    return views
