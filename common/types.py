"""Typed values that travel between the packages.

Every physical quantity carries its unit in the field name or docstring: µV for ECG, mg for
acceleration, arbitrary units (a.u.) for PPG, Hz for sampling rates, ns since the Unix epoch for
timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class StreamKind(StrEnum):
    """The kind of signal a chunk of samples holds; fixes its unit."""

    ECG = "ecg"  # µV
    PPG = "ppg"  # a.u. (raw optical counts)
    ACC = "acc"  # mg, columns x, y, z
    HR = "hr"  # bpm (1 column), from a Heart Rate Service notification


UNITS: dict[StreamKind, str] = {
    StreamKind.ECG: "uV",
    StreamKind.PPG: "au",
    StreamKind.ACC: "mg",
    StreamKind.HR: "bpm",
}

# µV per physical unit of an ECG signal, as WFDB headers spell them (lower-cased)
MICROVOLTS_PER_UNIT: dict[str, float] = {"uv": 1.0, "µv": 1.0, "mv": 1000.0, "v": 1e6}


def microvolts_per(unit: str) -> float | None:
    """µV per ``unit`` of a voltage (``"mV"`` -> 1000), or None when ``unit`` is no voltage
    (``"mmHg"``, ``"%"``, ``""``): an ECG must not be read from such a signal."""
    return MICROVOLTS_PER_UNIT.get(str(unit).strip().lower())


# Sampling rates a stream may have, Hz, wherever it enters (replay files, raw MQTT chunks, the
# rate a BLE sensor offers):
# the ECG filters' 40 Hz band edge needs more than 80 Hz (wearables record 125-1000 Hz), the
# PPG heart-rate tracker more than 8 Hz; nothing worn on the body is sampled faster than 10 kHz.
RATE_RANGES: dict[StreamKind, tuple[float, float]] = {
    StreamKind.ECG: (100.0, 10_000.0),
    StreamKind.PPG: (10.0, 10_000.0),
    StreamKind.ACC: (1.0, 10_000.0),
    StreamKind.HR: (0.01, 100.0),
}


def rate_problem(kind: StreamKind, fs: float) -> str:
    """Why ``fs`` (Hz) cannot be a sampling rate of a ``kind`` stream ("" when it can)."""
    lo, hi = RATE_RANGES[kind]
    if lo <= fs <= hi:  # False for NaN
        return ""
    return f"sampling rate {fs:g} Hz is outside [{lo:g}, {hi:g}] Hz for {kind}"


@dataclass(frozen=True, slots=True)
class SignalChunk:
    """A block of evenly sampled values from one stream of one device.

    Attributes
    ----------
    kind : StreamKind
        What the samples are; fixes the unit (see ``UNITS``).
    fs : float
        Sampling rate in Hz.
    t0_ns : int
        Time of the first sample, ns since the Unix epoch.
    samples : ndarray, shape (n_samples, n_channels), float64
        The values in the unit of ``kind``.
    seq : int
        Position of the first sample in the stream (sample index), so that consumers detect gaps
        and duplicates.
    """

    kind: StreamKind
    fs: float
    t0_ns: int
    samples: npt.NDArray[np.float64]
    seq: int = 0

    def __post_init__(self) -> None:
        if self.fs <= 0 or not np.isfinite(self.fs):
            raise ValueError(f"sampling rate must be positive, got {self.fs!r}")
        if self.samples.ndim != 2:
            raise ValueError(f"samples must be 2-D (n, channels), got shape {self.samples.shape}")

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        """Duration covered by the chunk in seconds."""
        return self.n_samples / self.fs


@dataclass(frozen=True, slots=True)
class BeatPrediction:
    """One classified heartbeat.

    Attributes
    ----------
    client_id : str
        The device (patient) that produced it.
    t_ns : int
        Time of the R peak, ns since the Unix epoch.
    sample : int
        Index of the R peak in the stream (at the stream's own rate).
    label : str
        Predicted class name (e.g. AAMI ``N``, ``S``, ``V``, ``F``, ``Q``).
    probs : dict[str, float]
        Class probabilities, summing to 1.
    model_version : str
        Version of the model that made the prediction.
    rr_s : float
        RR interval before this beat in seconds (NaN for the first beat).
    in_af : bool
        The device's rhythm monitor called the beat's stretch of signal atrial fibrillation
        (kept on the device for personalisation; not sent).
    """

    client_id: str
    t_ns: int
    sample: int
    label: str
    probs: dict[str, float]
    model_version: str
    rr_s: float = float("nan")
    in_af: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """A clinically relevant episode detected on the edge (runs of VEBs, AF, brady/tachycardia).

    Attributes
    ----------
    event_id : str
        Stable id (idempotent upload).
    client_id : str
        The device (patient).
    kind : str
        e.g. ``vt_run``, ``af_episode``, ``bradycardia``, ``tachycardia``, ``fall``, ``inactivity``.
    t_start_ns, t_end_ns : int
        Start and end, ns since the Unix epoch.
    details : dict
        Kind-specific values (heart rate in bpm, number of beats, probability...).
    """

    event_id: str
    client_id: str
    kind: str
    t_start_ns: int
    t_end_ns: int
    details: dict[str, float | int | str] = field(default_factory=dict)


def event_id(client_id: str, kind: str, t_start_ns: int) -> str:
    """Stable id of an event: the same episode always gets the same id, so re-processing the
    same data re-sends the same ids and the uplink stays idempotent."""
    return f"{client_id}:{kind}:{t_start_ns}"
