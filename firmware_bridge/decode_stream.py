"""Turn a sequence of notifications into continuous :class:`SignalChunk` streams.

Pure and stateful: per measurement it remembers the previous frame's sensor timestamp (for the
SDK's per-sample timestamps) and the next sample index (``seq``). Lost frames are detected from
the timestamps (``seq`` jumps by the estimated number of missing samples, so consumers see the
gap); repeated frames are dropped. Malformed bytes are logged with their hex, counted and
skipped, never raised: whatever decoding one notification raises ends only that notification.
A frame stamped more than ``MAX_JUMP_S`` before or after the previous one of its stream is held
back as suspect (a corrupted timestamp byte) unless the next frame continues from it (the
sensor's clock really moved).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common.types import SignalChunk, StreamKind
from firmware_bridge.decode import decode_notification, normalize_uuid
from firmware_bridge.frames import (
    ControlPointResponse,
    DecodeError,
    Frame,
    HeartRateMeasurement,
    InvalidFieldError,
    PmdFrame,
)
from firmware_bridge.gatt import PMD_DATA_UUID, MeasurementType
from firmware_bridge.sources import SourceStats

_LOGGER = logging.getLogger(__name__)

# Nominal rates used for the first frame of a stream (Hz); the START settings override them.
DEFAULT_FS: dict[MeasurementType, float] = {
    MeasurementType.ECG: 130.0,
    MeasurementType.ACC: 200.0,
    MeasurementType.PPG: 55.0,
}


MAX_CLOCK_SKEW_S = 5.0  # "auto" time base: trust the sensor clock within this of the host's
MAX_JUMP_S = 10.0  # s; a frame this far from the previous one of its link is suspect
MAX_FS = 10_000.0  # Hz; a stream rate above it (or <= 0) is not a sensor's


@dataclass(slots=True)
class AssemblerCounters:
    """What the assembler saw (mirrored into a source's ``SourceStats``)."""

    frames: int = 0
    rejected: int = 0
    gaps: int = 0
    missing_samples: int = 0
    duplicates: int = 0
    suspect: int = 0  # frames held back for a timestamp far off (also counted in rejected)
    no_contact: int = 0  # heart-rate values sent while the strap reported no skin contact
    by_error: dict[str, int] = field(default_factory=dict)

    def mirror(self, stats: SourceStats, extra_rejected: int = 0) -> SourceStats:
        """Copy these counts into a source's ``stats``.

        Parameters
        ----------
        stats : SourceStats
            The source's counters (updated in place).
        extra_rejected : int
            Rejects counted before the assembler (a capture reader's own).

        Returns
        -------
        SourceStats
            ``stats``.
        """
        stats.frames, stats.rejected, stats.gaps = (
            self.frames,
            self.rejected + extra_rejected,
            self.gaps,
        )
        stats.missing_samples, stats.duplicates = self.missing_samples, self.duplicates
        stats.no_contact = self.no_contact
        return stats


@dataclass(slots=True)
class _Track:
    fs: float
    factor: float = 1.0
    prev_ts: int | None = None
    next_seq: int = 0
    suspect_ts: int | None = None  # a held-back frame's timestamp, confirmed by the next one


class StreamAssembler:
    """Decode notifications and emit chunks with per-sample timing and gap-aware ``seq``.

    Parameters
    ----------
    fs : dict, optional
        Nominal sampling rate (Hz) per measurement; defaults to ``DEFAULT_FS``.
    clock_ns : callable
        Wall clock for Heart Rate notifications (which carry no timestamp).
    time_base : {"sensor", "arrival", "auto"}
        ``sensor``: chunk times are the sensor's PMD timestamps (converted to Unix ns).
        ``arrival``: the sensor's sample spacing anchored to the host clock (offset taken at
        the first frame after each ``reset_timing``). ``auto``: like ``arrival`` only when the
        sensor clock is more than ``MAX_CLOCK_SKEW_S`` off the host clock (an H10 whose time
        was never set restarts at 2019-01-01).
    """

    def __init__(
        self,
        fs: dict[MeasurementType, float] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        time_base: str = "sensor",
    ) -> None:
        if time_base not in ("sensor", "arrival", "auto"):
            raise ValueError(f"time_base must be sensor, arrival or auto, got {time_base!r}")
        self.time_base = time_base
        self._offset_ns: int | None = None
        self._tracks = {m: _Track(f) for m, f in {**DEFAULT_FS, **(fs or {})}.items()}
        self._clock_ns = clock_ns
        self._hr_seq = 0
        self._hr_contact: bool | None = None  # the strap's last skin-contact flag
        self.counters = AssemblerCounters()
        self.responses: list[ControlPointResponse] = []

    def configure(self, measurement: MeasurementType, fs: float, factor: float = 1.0) -> None:
        """Set the rate (Hz) and FACTOR of a stream, e.g. from its START settings.

        Raises
        ------
        ValueError
            If ``fs`` is not in (0, ``MAX_FS``] Hz or ``factor`` is not positive and finite.
        """
        if not (0 < fs <= MAX_FS and 0 < factor < math.inf):
            raise ValueError(f"stream rate {fs!r} Hz / factor {factor!r} out of range")
        track = self._tracks.setdefault(measurement, _Track(fs))
        track.fs, track.factor = fs, factor

    def reset_timing(self) -> None:
        """Forget the previous timestamps (after a reconnect the sensor restarts its frames).

        ``seq`` keeps counting, so consumers see one stream across reconnects.
        """
        for track in self._tracks.values():
            track.prev_ts = track.suspect_ts = None
        self._offset_ns = None

    def feed(self, uuid: str, data: bytes) -> list[SignalChunk]:
        """Decode one notification; return the chunks it produced (zero or one).

        Control-point responses are kept in ``responses``; malformed bytes (whatever decoding
        them raises) are counted, logged with their hex and skipped.
        """
        try:
            full = normalize_uuid(uuid)
            factor = 1.0
            if data and full == PMD_DATA_UUID:
                measurement = _measurement_or_none(data[0] & 0x3F)
                track = self._tracks.get(measurement) if measurement is not None else None
                factor = track.factor if track else 1.0
            frame = decode_notification(full, data, factor=factor)
            if isinstance(frame, PmdFrame) and self._suspect(frame):
                raise InvalidFieldError(
                    f"timestamp more than {MAX_JUMP_S:g} s from the previous frame's",
                    data,
                )
            return self.feed_frame(frame)
        except Exception as exc:  # untrusted bytes: one bad notification, never the stream
            self._reject(type(exc).__name__, uuid, data, exc)
            return []

    def _reject(self, name: str, uuid: str, data: bytes, exc: Exception) -> None:
        self.counters.rejected += 1
        self.counters.by_error[name] = self.counters.by_error.get(name, 0) + 1
        if isinstance(exc, DecodeError):  # its message holds the bytes as hex
            _LOGGER.warning("rejected notification on %s: %s", uuid, exc)
        else:
            _LOGGER.error(
                "rejected notification on %s: %s: %s [%d B: %s]",
                uuid,
                name,
                exc,
                len(data),
                bytes(data[:64]).hex(" "),
            )

    def _suspect(self, frame: PmdFrame) -> bool:
        """True if ``frame`` jumps far from its stream's time (either way) and no next frame has
        confirmed the jump yet."""
        track = self._tracks.get(frame.measurement)
        if track is None or track.prev_ts is None:
            return False
        limit = MAX_JUMP_S * 1e9
        suspect, track.suspect_ts = track.suspect_ts, None
        if abs(frame.timestamp_ns - track.prev_ts) <= limit:
            return False
        if suspect is not None and 0 < frame.timestamp_ns - suspect <= limit:
            _LOGGER.info("%s clock moved: new timing", frame.measurement.name)
            return False  # two frames agree: the sensor's clock moved; the first one is lost
        track.suspect_ts = frame.timestamp_ns
        self.counters.suspect += 1
        return True

    def feed_frame(self, frame: Frame) -> list[SignalChunk]:
        """Turn an already decoded frame into chunks."""
        if isinstance(frame, ControlPointResponse):
            self.responses.append(frame)
            return []
        if isinstance(frame, HeartRateMeasurement):
            self.counters.frames += 1
            if frame.sensor_contact is False and self._hr_contact is not False:
                _LOGGER.warning("heart-rate sensor: skin contact lost: its values are dropped")
            elif frame.sensor_contact and self._hr_contact is False:
                _LOGGER.info("heart-rate sensor: skin contact back")
            if frame.sensor_contact is not None:
                self._hr_contact = frame.sensor_contact
            if frame.sensor_contact is False:  # a loose strap's value is stale or 0: no alarm
                self.counters.no_contact += 1
                self._hr_seq += 1  # the dropped second shows as a gap
                return []
            chunk = SignalChunk(
                StreamKind.HR,
                1.0,
                self._clock_ns(),
                np.array([[float(frame.hr_bpm)]]),
                self._hr_seq,
            )
            self._hr_seq += 1
            return [chunk]
        if isinstance(frame, PmdFrame) and frame.kind is not None:
            return self._pmd(frame)
        return []

    def _pmd(self, frame: PmdFrame) -> list[SignalChunk]:
        track = self._tracks.setdefault(
            frame.measurement, _Track(DEFAULT_FS.get(frame.measurement, 1.0))
        )
        n = frame.n_samples
        prev = track.prev_ts
        if prev is not None and frame.timestamp_ns == prev:
            self.counters.duplicates += 1
            _LOGGER.debug("duplicate %s frame at %d dropped", frame.measurement.name, prev)
            return []
        if prev is not None and frame.timestamp_ns < prev:
            _LOGGER.warning(
                "%s clock went back by %d ns: new timing",
                frame.measurement.name,
                prev - frame.timestamp_ns,
            )
            self.counters.gaps += 1
            prev = None
        if prev is not None:
            expected = (frame.timestamp_ns - prev) * track.fs / 1e9
            missing = round(expected) - n
            if missing >= max(2, n // 4):
                self.counters.gaps += 1
                self.counters.missing_samples += missing
                track.next_seq += missing
                _LOGGER.info("%s gap: about %d samples lost", frame.measurement.name, missing)
                prev = None  # do not spread this frame's samples over the gap
        times = frame.sample_times_ns(prev, track.fs)
        assert frame.kind is not None
        t0 = int(times[0]) + self._clock_offset(frame)
        chunk = SignalChunk(frame.kind, track.fs, t0, frame.samples, track.next_seq)
        track.next_seq += n
        track.prev_ts = frame.timestamp_ns
        self.counters.frames += 1
        return [chunk]

    def _clock_offset(self, frame: PmdFrame) -> int:
        if self.time_base == "sensor":
            return 0
        if self._offset_ns is None:
            offset = self._clock_ns() - frame.unix_ns
            if self.time_base == "auto" and abs(offset) <= MAX_CLOCK_SKEW_S * 1e9:
                offset = 0
            elif offset:
                _LOGGER.info("sensor clock is %.3f s off the host clock: rebased", offset / 1e9)
            self._offset_ns = offset
        return self._offset_ns


def _measurement_or_none(code: int) -> MeasurementType | None:
    try:
        return MeasurementType(code)
    except ValueError:
        return None
