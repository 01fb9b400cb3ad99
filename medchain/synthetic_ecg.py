"""Simulated ECG with arrhythmias, for ``medchain demo`` on a machine with no dataset at all.

Every beat is a sum of Gaussian waves (P, Q, R, S, T; McSharry et al. 2003 use the same wave
shapes in their dynamical model) placed on an RR series with respiratory sinus arrhythmia.
Premature ventricular beats (wide QRS, no P wave, compensatory pause), premature atrial beats
(early, abnormal P) and an atrial-fibrillation episode (irregular RR, no P, 6 Hz f-waves) are
mixed in, with baseline wander and noise. The output is clearly labelled *simulated*: the WFDB
header comment says so and the record name starts with ``sim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# (offset from R in s, width in s, amplitude in µV) for sinus beats.
Waves = tuple[tuple[float, float, float], ...]
_SINUS_WAVES: Waves = ((-0.20, 0.025, 150.0), (-0.035, 0.010, -120.0), (0.0, 0.012, 1100.0),
                (0.035, 0.012, -250.0), (0.28, 0.055, 300.0))  # fmt: skip
_PVC_WAVES: Waves = ((0.0, 0.040, 1400.0), (0.08, 0.045, -600.0), (0.32, 0.07, -350.0))
_APC_WAVES: Waves = ((-0.16, 0.020, -90.0),) + _SINUS_WAVES[1:]


@dataclass(frozen=True)
class SimulatedRecord:
    """A simulated single-lead ECG.

    Attributes
    ----------
    signal : ndarray, shape (n,)
        ECG in µV.
    fs : float
        Sampling rate in Hz.
    r_peaks : ndarray of int, shape (n_beats,)
        Sample index of each R peak.
    symbols : list of str
        MIT-BIH beat symbol of each beat (``N``, ``V``, ``A``).
    """

    signal: npt.NDArray[np.float64]
    fs: float
    r_peaks: npt.NDArray[np.int64]
    symbols: list[str]


def simulate_ecg(
    duration_s: float = 600.0,
    fs: float = 360.0,
    hr_bpm: float = 72.0,
    pvc_rate: float = 0.05,
    apc_rate: float = 0.03,
    af_fraction: float = 0.2,
    seed: int = 0,
) -> SimulatedRecord:
    """Simulate a single-lead ECG with PVCs, APCs and one AF episode.

    Parameters
    ----------
    duration_s : float
        Length in s.
    fs : float
        Sampling rate in Hz.
    hr_bpm : float
        Mean sinus heart rate in bpm.
    pvc_rate, apc_rate : float
        Probability that a beat is a PVC / APC (outside AF).
    af_fraction : float
        Fraction of the record (in its middle) spent in atrial fibrillation.
    seed : int
        Random seed.
    """
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    t = np.arange(n) / fs
    sig = np.zeros(n)
    af_start, af_end = duration_s * (0.5 - af_fraction / 2), duration_s * (0.5 + af_fraction / 2)
    rr_mean = 60.0 / hr_bpm
    peaks: list[int] = []
    symbols: list[str] = []
    tr = 0.5
    waves: Waves
    while tr < duration_s - 1.0:
        in_af = af_start <= tr < af_end
        if in_af:
            rr = float(np.clip(rng.gamma(8.0, rr_mean * 0.85 / 8.0), 0.35, 1.6))
            waves, sym = _SINUS_WAVES[1:], "N"
        else:
            rsa = 0.04 * np.sin(2 * np.pi * 0.25 * tr)
            rr = rr_mean * (1 + rsa) + rng.normal(0, 0.015)
            u = rng.random()
            if u < pvc_rate and symbols and symbols[-1] == "N":
                waves, sym, rr = _PVC_WAVES, "V", rr * 0.65
            elif u < pvc_rate + apc_rate and symbols and symbols[-1] == "N":
                waves, sym, rr = _APC_WAVES, "A", rr * 0.72
            else:
                waves, sym = _SINUS_WAVES, "N"
        if sym == "V" or sym == "A":
            tr_beat = peaks[-1] / fs + rr if peaks else tr
        else:
            tr_beat = tr
        lo, hi = int((tr_beat - 0.4) * fs), int((tr_beat + 0.6) * fs)
        lo, hi = max(lo, 0), min(hi, n)
        seg = t[lo:hi]
        for off, width, amp in waves:
            sig[lo:hi] += amp * np.exp(-0.5 * ((seg - tr_beat - off) / width) ** 2)
        peaks.append(int(round(tr_beat * fs)))
        symbols.append(sym)
        # A PVC is followed by a compensatory pause.
        tr = tr_beat + (rr_mean * 1.35 if sym == "V" else rr if sym == "N" else rr_mean)
    af = (t >= af_start) & (t < af_end)
    sig[af] += 40.0 * np.sin(2 * np.pi * 6.0 * t[af] + rng.normal(0, 0.3, af.sum()).cumsum() * 0.05)
    sig += 120.0 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 15.0, n)
    return SimulatedRecord(sig, fs, np.asarray(peaks, dtype=np.int64), symbols)


def write_wfdb(rec: SimulatedRecord, directory: Path, name: str = "sim100") -> Path:
    """Write the record as WFDB (``.hea``, ``.dat``, ``.atr``) and return its path without suffix.

    The header comment marks it as simulated so no one mistakes it for patient data.
    """
    import wfdb

    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=rec.fs,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=(rec.signal / 1000.0).reshape(-1, 1),
        fmt=["16"],
        adc_gain=[1000.0],
        baseline=[0],
        comments=["SIMULATED ECG (medchain demo) - not patient data"],
        write_dir=str(directory),
    )
    wfdb.wrann(
        name, "atr", rec.r_peaks, np.asarray(rec.symbols), write_dir=str(directory), fs=rec.fs
    )
    return directory / name
