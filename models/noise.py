"""Real recording noise for the beat model: from the noisy CinC 2017 recordings, at a given SNR.

There is no MIT-BIH Noise Stress Test Database here; its role is taken by the 239 AliveCor
recordings labelled "too noisy to classify" (``~`` in ``cinc2017_training/REFERENCE-v3.csv``):
handheld electrode motion, muscle and contact noise at 300 Hz. They also hold the donor's own
QRS complexes, which would add beats to a host record, so :func:`strip_qrs` subtracts the
donor's median beat at every R peak the detector finds (what it cannot find is noise anyway).

The recordings are split in two fixed pools by their order in the reference file: ``train``
(even positions) for training augmentation and ``test`` (odd) for stress tests, so a model is
never scored on the noise it was trained with.

SNR follows the MIT-BIH noise stress test (``nstdbgen``): signal power ``S = pp^2 / 8`` with
``pp`` the median QRS peak-to-peak amplitude (here of the 0.5-40 Hz band-passed lead within
50 ms of each reference R peak), noise power ``N`` its mean square, ``SNR = 10 log10(S / N)``;
:func:`nstdb_mask` gives the protocol's schedule (clean for 5 min, then noise in alternating
2-min segments).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import CorruptInputError
from common.signals import FilterSpec, ecg_clean
from common.signals.peaks import ecg_findpeaks
from common.signals.resample import resample_signal

_LOGGER = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
NOISE_FS = 300.0  # Hz, CinC 2017
POOLS = ("train", "test")
QRS_HALF_S = 0.05  # peak-to-peak measured within +-50 ms of the R peak
DONOR_HALF_S = 0.12  # donor beat cancelled within +-120 ms of its R peak
FADE_S = 0.25  # cross-fade between concatenated noise recordings
_BAND = FilterSpec(method="bandpass", lowcut_hz=0.5, highcut_hz=40.0, order=2)


def noise_records(env: Mapping[str, str], pool: str) -> list[str]:
    """Names of the noisy CinC 2017 recordings of one pool (``train`` or ``test``)."""
    if pool not in POOLS:
        raise ValueError(f"noise pool must be one of {POOLS}, got {pool!r}")
    ref = dataset_dir("cinc2017_training", env) / "REFERENCE-v3.csv"
    with ref.open(newline="") as f:
        noisy = [row[0] for row in csv.reader(f) if len(row) >= 2 and row[1].strip() == "~"]
    return noisy[POOLS.index(pool) :: 2]


def strip_qrs(x: F64, fs: float) -> F64:
    """``x`` minus the donor's median beat (``+-DONOR_HALF_S``) at each detected R peak."""
    peaks = ecg_findpeaks(x, fs)
    half = round(DONOR_HALF_S * fs)
    peaks = peaks[(peaks >= half) & (peaks < x.size - half)]
    if peaks.size < 3:
        return x - np.median(x)
    idx = peaks[:, None] + np.arange(-half, half + 1)[None, :]
    seg = np.asarray(x, np.float64)[idx]
    ramp = np.linspace(0.0, 1.0, seg.shape[1])[None, :]
    seg = seg - (seg[:, :1] * (1 - ramp) + seg[:, -1:] * ramp)  # each beat on its own baseline
    template = np.median(seg, axis=0)
    out = np.asarray(x, np.float64).copy()
    out[idx] -= template[None, :]  # zero at both ends: no step where a beat is cancelled
    return out - np.median(out)


@lru_cache(maxsize=512)
def _noise(folder: str, name: str) -> F64:
    import scipy.io

    try:
        val = scipy.io.loadmat(str(Path(folder) / f"{name}.mat"))["val"]
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptInputError(f"noise recording {name}: {exc}") from exc
    x = np.asarray(val, np.float64).reshape(-1)  # µV (val / 1000 = mV)
    return strip_qrs(x, NOISE_FS)


def noise_signal(
    env: Mapping[str, str], pool: str, n_samples: int, fs: float, rng: np.random.Generator
) -> F64:
    """``n_samples`` of real noise at ``fs`` Hz (µV, zero median): random recordings of the
    pool, QRS-stripped, resampled and concatenated with short cross-fades."""
    folder = dataset_dir("cinc2017_training", env) / "training2017"
    names = noise_records(env, pool)
    fade = max(1, round(FADE_S * fs))
    out = np.zeros(0)
    while out.size < n_samples:
        piece = resample_signal(_noise(str(folder), str(rng.choice(names))), NOISE_FS, fs)
        piece = piece - np.median(piece)
        if out.size >= fade and piece.size > 2 * fade:
            w = np.linspace(0.0, 1.0, fade)
            out[-fade:] = out[-fade:] * (1 - w) + piece[:fade] * w
            piece = piece[fade:]
        out = np.concatenate([out, piece])
    return out[:n_samples]


def qrs_power(signal: F64, fs: float, r_peaks: npt.NDArray[np.int64]) -> float:
    """``S = pp^2 / 8`` of the median QRS peak-to-peak amplitude (µV^2), NSTDB style."""
    clean = ecg_clean(signal, fs, _BAND)
    half = max(1, round(QRS_HALF_S * fs))
    r = r_peaks[(r_peaks >= half) & (r_peaks < signal.size - half)]
    if r.size == 0:
        raise ValueError("no R peak inside the signal to measure the QRS amplitude")
    seg = clean[r[:, None] + np.arange(-half, half + 1)[None, :]]
    pp = float(np.median(seg.max(axis=1) - seg.min(axis=1)))
    return pp * pp / 8.0


def scaled_noise(noise: F64, signal_power: float, snr_db: float) -> F64:
    """``noise`` scaled so that ``10 log10(signal_power / mean(noise^2)) = snr_db``."""
    power = float(np.mean(noise**2))
    if power <= 0:
        return np.zeros_like(noise)
    out: F64 = noise * np.sqrt(signal_power / (power * 10.0 ** (snr_db / 10.0)))
    return out


def nstdb_mask(n_samples: int, fs: float, start_s: float = 300.0, segment_s: float = 120.0) -> F64:
    """1 where the NSTDB protocol adds noise: from ``start_s`` on, alternate ``segment_s``
    noisy / clean segments (noisy first); 0 elsewhere."""
    t = np.arange(n_samples) / fs
    on = (t >= start_s) & (((t - start_s) // segment_s) % 2 == 0)
    out: F64 = on.astype(np.float64)
    return out
