"""Streaming beat featurizer: raw ECG chunks -> model inputs per the card's ``BeatSpec`` (pure).

The steps are the ones training uses (``common.signals``), run causally on a stream:

1. ``EcgFilter`` (the card's filter) at the device rate, state kept across chunks;
2. a streaming R-peak detector (``PeakDetector`` port; ``common.signals`` ``QRSDetector``);
3. ``RRTracker`` (RR features; a beat is final once the next R peak is known);
4. ``beat_windows`` once the filtered samples up to ``r + context_after`` exist.

Only the filtered samples still needed are kept (a ring of a few seconds), so memory does not
grow with the stream.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.pred_payloads import MAX_RR_S
from common.signals.beats import BeatSpec, beat_windows
from common.signals.filters import EcgFilter
from common.signals.rr import RRTracker
from common.signals.template import TemplateTracker as TemplateTracker  # bench/ imports it here
from edge_agent.pipeline import BeatBatch, empty_batch

_LOGGER = logging.getLogger(__name__)

# Samples kept behind the newest sample while no beat is pending: covers the detector's own
# look-back (a peak may be confirmed this late), in seconds.
_DETECTOR_SLACK_S = 3.0


class PeakDetector(Protocol):
    """Streaming R-peak detector (``common.signals.peaks.QRSDetector``): consecutive raw
    samples in, confirmed peaks out."""

    def process(self, chunk: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Absolute sample indices (since the detector's start) of newly confirmed R peaks."""
        ...

    def flush(self) -> npt.NDArray[np.int64]:
        """End of stream: the peaks still undecided."""
        ...


DetectorFactory = Callable[[float], PeakDetector]

# Input channels a beat card may ask for (``input_contract.parameters.channels``).
CHANNELS = ("beat_zscore", "beat_minus_running_median_template")


class StreamingBeatFeaturizer:
    """The ``BeatFeaturizer`` of the agent.

    Parameters
    ----------
    spec : BeatSpec
        The model card's contract (``input_contract.parameters``).
    detector_factory : callable
        Sampling rate (Hz) -> a fresh peak detector; called at start and after every reset.
    sampling_rate : float
        Device rate, Hz (the pipeline resets the featurizer when it changes).
    channels : tuple of str
        Input channels of the model (``CHANNELS``); one channel gives windows ``(n, L)``,
        more give ``(n, C, L)``.
    template_beats : int
        Windows in the running-median template channel.
    """

    def __init__(
        self,
        spec: BeatSpec,
        detector_factory: DetectorFactory,
        sampling_rate: float,
        channels: tuple[str, ...] = ("beat_zscore",),
        template_beats: int = 16,
    ) -> None:
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown or not channels or channels[0] != "beat_zscore":
            raise ValueError(f"unsupported input channels {channels}; known: {CHANNELS}")
        self.spec = spec
        self.channels = channels
        self._template_beats = template_beats
        self._factory = detector_factory
        self.dropped = 0  # beats whose context had already left the ring
        self.reset(sampling_rate)

    def reset(self, sampling_rate: float) -> None:
        """Forget everything (stream start, gap) and take the device rate (Hz)."""
        self.fs = float(sampling_rate)
        self._before, self._after = self.spec.context_samples(self.fs)
        self._slack = int(_DETECTOR_SLACK_S * self.fs) + self._before
        self._filter = EcgFilter(self.fs, self.spec.filter)
        self._detector = self._factory(self.fs)
        self._rr = RRTracker(self.fs, self.spec)
        self._origin: int | None = None  # stream index of detector sample 0
        self._buf = np.zeros(0, np.float64)
        self._buf_start = 0  # stream index of _buf[0]
        self._pending: deque[tuple[int, npt.NDArray[np.float64]]] = deque()
        self._last_peak: int | None = None
        self._template = TemplateTracker(self._template_beats)

    def push(self, ecg_uv: npt.NDArray[np.float64], start: int) -> BeatBatch:
        """Consume consecutive samples (µV, shape (n,)) starting at stream index ``start``."""
        if self._origin is None:
            self._origin = start
            self._buf_start = start
        filtered = self._filter.process(ecg_uv)
        self._buf = np.concatenate([self._buf, filtered]) if self._buf.size else filtered
        peaks = self._detector.process(ecg_uv) + self._origin
        if peaks.size:
            done, feats = self._rr.push(peaks)
            self._pending.extend(zip(done.tolist(), feats, strict=True))
        return self._emit(final=False)

    def flush(self) -> BeatBatch:
        """End of stream: the last beat (``rr_post`` = ``rr_pre``), edge-padded if needed."""
        if self._origin is not None:
            last = self._detector.flush() + self._origin
            if last.size:
                done, feats = self._rr.push(last)
                self._pending.extend(zip(done.tolist(), feats, strict=True))
        done, feats = self._rr.flush()
        self._pending.extend(zip(done.tolist(), feats, strict=True))
        return self._emit(final=True)

    def _emit(self, final: bool) -> BeatBatch:
        end = self._buf_start + self._buf.size  # one past the newest stream index
        ready: list[tuple[int, npt.NDArray[np.float64]]] = []
        while self._pending and (final or self._pending[0][0] + self._after <= end):
            ready.append(self._pending.popleft())
        out = self._windows(ready)
        keep_from = self._pending[0][0] - self._before if self._pending else end - self._slack
        self._trim(keep_from)
        return out

    def _windows(self, ready: list[tuple[int, npt.NDArray[np.float64]]]) -> BeatBatch:
        ok = [
            (p, f)
            for p, f in ready
            if p - self._before >= self._buf_start and np.all(np.isfinite(f))
        ]
        self.dropped += len(ready) - len(ok)
        if not ok:
            return empty_batch()
        peaks = np.array([p for p, _ in ok], np.int64)
        feats = np.stack([f for _, f in ok]).astype(np.float32)
        windows = beat_windows(self._buf, self.fs, peaks - self._buf_start, self.spec)
        if len(self.channels) > 1:
            windows = np.stack([windows, self._template.push(windows)], axis=1)
        rr_s = np.empty(peaks.size, np.float64)
        for i, p in enumerate(peaks.tolist()):
            rr_s[i] = np.nan if self._last_peak is None else (p - self._last_peak) / self.fs
            self._last_peak = p
        # past the longest credible RR the beats in between were lost (strap off, flat
        # line): no RR, which the wire would also refuse
        rr_s[rr_s > MAX_RR_S] = np.nan
        return BeatBatch(peaks, windows.astype(np.float32), feats, rr_s)

    def _trim(self, keep_from: int) -> None:
        cut = keep_from - self._buf_start
        if cut > 0:
            self._buf = self._buf[cut:].copy()
            self._buf_start += cut
