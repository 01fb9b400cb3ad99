"""Wrist streams (PPG + accelerometer) behind the agent's ``AuxMonitor`` port (pure).

Wires WRIST+AF's ``common.signals`` pieces into the agent:

- ACC (mg): ``FallDetector`` -> ``fall`` events, ``InactivityMonitor`` -> ``inactivity`` events,
  ``acc_activity_level`` -> the current activity level (5 s epochs);
- PPG (+ ACC resampled onto the PPG sample times): ``PpgHeartRateTracker`` -> heart rate that
  stays right under motion; confident estimates feed a brady/tachycardia detector (``source``
  ``ppg`` in the event details).
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import numpy.typing as npt

from common.signals.accel import FallDetector, InactivityMonitor, acc_activity_level
from common.signals.ppg import HeartRateEstimate, PpgHeartRateTracker
from common.types import BeatPrediction, Event, SignalChunk, StreamKind, event_id
from edge_agent.events import HeartRateDetector

_LOGGER = logging.getLogger(__name__)
_NS = 1_000_000_000
_ACC_HISTORY_S = 30.0


class WristMonitor:
    """PPG heart rate, activity, falls and inactivity for one device.

    Parameters
    ----------
    client_id : str
    inactivity_alert_s : float
        Stillness that raises an ``inactivity`` event, s.
    min_confidence : float
        PPG estimates below this confidence (0..1) are not used for rate alarms.
    brady_bpm, tachy_bpm, hysteresis_bpm : float
        Rate alarm thresholds (as for ECG), bpm.
    """

    def __init__(
        self,
        client_id: str,
        inactivity_alert_s: float = 7200.0,
        min_confidence: float = 0.3,
        brady_bpm: float = 50.0,
        tachy_bpm: float = 100.0,
        hysteresis_bpm: float = 5.0,
    ) -> None:
        self._cid = client_id
        self._inactivity_s = inactivity_alert_s
        self._min_conf = min_confidence
        self._rate = HeartRateDetector(
            client_id, brady_bpm, tachy_bpm, hysteresis_bpm, window_beats=3, min_duration_s=30.0
        )
        for kind in (StreamKind.ACC, StreamKind.PPG):
            self._reset(kind, 0.0)
        self.hr: list[tuple[int, HeartRateEstimate]] = []  # (t_ns, estimate), newest last
        self.activity_level = ""
        self.enmo_mg = float("nan")

    def _reset(self, kind: StreamKind, fs: float) -> None:
        if kind == StreamKind.ACC:
            self._acc_fs = fs
            self._fall = FallDetector(fs) if fs else None
            self._still = InactivityMonitor(fs, self._inactivity_s) if fs else None
            self._acc_t: deque[npt.NDArray[np.int64]] = deque()
            self._acc_x: deque[npt.NDArray[np.float64]] = deque()
            self._acc_next: int | None = None
            self._acc_epoch = np.zeros((0, 3))
            self._acc_anchor_ns = 0
        else:
            self._ppg_fs = fs
            self._ppg = PpgHeartRateTracker(fs) if fs else None
            self._ppg_next: int | None = None

    def process(self, chunk: SignalChunk) -> list[Event]:
        """Feed a PPG or ACC chunk; returns the events it completed."""
        if chunk.kind == StreamKind.ACC:
            return self._acc(chunk)
        if chunk.kind == StreamKind.PPG:
            return self._ppg_chunk(chunk)
        if chunk.kind == StreamKind.HR:
            return self._hr_chunk(chunk)
        return []

    def _hr_chunk(self, chunk: SignalChunk) -> list[Event]:
        """Heart Rate Service values (bpm) from a strap without an ECG stream: rate alarms."""
        events: list[Event] = []
        for i, bpm in enumerate(chunk.samples[:, 0].tolist()):
            if 20.0 <= bpm <= 250.0:
                t = chunk.t0_ns + round(i * _NS / chunk.fs)
                beat = BeatPrediction(self._cid, t, -1, "N", {}, "hrs", 60.0 / bpm)
                events += self._tag(self._rate.update(beat), "hrs")
        return events

    def flush(self) -> list[Event]:
        """End of stream: close an open rate episode."""
        return self._tag(self._rate.flush())

    @staticmethod
    def _tag(events: list[Event], source: str = "ppg") -> list[Event]:
        return [
            Event(
                e.event_id,
                e.client_id,
                e.kind,
                e.t_start_ns,
                e.t_end_ns,
                {**e.details, "source": source},
            )
            for e in events
        ]

    # -- accelerometer -------------------------------------------------------------------------

    def _acc(self, chunk: SignalChunk) -> list[Event]:
        if chunk.samples.shape[1] != 3:
            _LOGGER.warning("ACC chunk with %d columns ignored", chunk.samples.shape[1])
            return []
        if chunk.fs != self._acc_fs or chunk.seq != self._acc_next:
            self._reset(StreamKind.ACC, chunk.fs)
            self._acc_anchor_ns = chunk.t0_ns
        self._acc_next = chunk.seq + chunk.n_samples
        t = chunk.t0_ns + np.round(np.arange(chunk.n_samples) * _NS / chunk.fs).astype(np.int64)
        self._acc_t.append(t)
        self._acc_x.append(chunk.samples)
        while self._acc_t and self._acc_t[0][-1] < t[-1] - _ACC_HISTORY_S * _NS:
            self._acc_t.popleft()
            self._acc_x.popleft()
        events: list[Event] = []
        assert self._fall is not None and self._still is not None
        for f in self._fall.push(chunk.samples):
            t_ns = self._acc_time(f.sample)
            events.append(
                Event(
                    event_id(self._cid, "fall", t_ns),
                    self._cid,
                    "fall",
                    t_ns,
                    t_ns,
                    {
                        "peak_mg": round(f.peak_mg),
                        "orientation_change_deg": round(f.orientation_change_deg, 1),
                    },
                )
            )
        for s in self._still.push(chunk.samples):
            t_end = self._acc_time(s)
            t_start = t_end - int(self._inactivity_s * _NS)
            events.append(
                Event(
                    event_id(self._cid, "inactivity", t_start),
                    self._cid,
                    "inactivity",
                    t_start,
                    t_end,
                    {"inactive_s": self._inactivity_s},
                )
            )
        self._acc_epoch = np.vstack([self._acc_epoch, chunk.samples])
        enmo, levels = acc_activity_level(self._acc_epoch, chunk.fs)
        if levels:
            self.enmo_mg, self.activity_level = float(enmo[-1]), levels[-1]
            used = round(5.0 * chunk.fs) * len(levels)
            self._acc_epoch = self._acc_epoch[used:]
        return events

    def _acc_time(self, detector_sample: int) -> int:
        """Time of a detector sample index (counted from the last ACC re-anchor), ns."""
        return self._acc_anchor_ns + round(detector_sample * _NS / self._acc_fs)

    # -- PPG -----------------------------------------------------------------------------------

    def _acc_at(self, t_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """ACC (mg) interpolated at the given times; zeros where none was recorded."""
        if not self._acc_t:
            return np.zeros((t_ns.size, 3))
        t = np.concatenate(list(self._acc_t)).astype(np.float64)
        x = np.vstack(list(self._acc_x))
        return np.stack([np.interp(t_ns.astype(np.float64), t, x[:, k]) for k in range(3)], axis=1)

    def _ppg_chunk(self, chunk: SignalChunk) -> list[Event]:
        if chunk.fs != self._ppg_fs or chunk.seq != self._ppg_next:
            self._reset(StreamKind.PPG, chunk.fs)
        self._ppg_next = chunk.seq + chunk.n_samples
        assert self._ppg is not None
        t = chunk.t0_ns + np.round(np.arange(chunk.n_samples) * _NS / chunk.fs).astype(np.int64)
        events: list[Event] = []
        for est in self._ppg.push(chunk.samples, self._acc_at(t)):
            t_est = int(t[-1])
            self.hr.append((t_est, est))
            if est.confidence >= self._min_conf and est.bpm > 0:
                beat = BeatPrediction(self._cid, t_est, -1, "N", {}, "ppg", 60.0 / est.bpm)
                events += self._tag(self._rate.update(beat))
        del self.hr[:-100]
        return events
