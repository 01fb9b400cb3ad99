"""Typed frames produced by the pure decoders, and the typed decode errors.

Every decoder takes untrusted bytes and returns one of these frames or raises a subclass of
:class:`DecodeError` carrying the offending bytes, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError
from common.types import StreamKind
from firmware_bridge.gatt import (
    PMD_EPOCH_OFFSET_NS,
    RR_UNITS_PER_S,
    ControlPointOp,
    MeasurementType,
    ResponseStatus,
    SettingType,
)

_HEX_LIMIT = 64  # bytes of the offending input shown in a message


class DecodeError(CorruptInputError):
    """Bytes that do not decode. ``data`` holds the offending bytes (the whole input).

    Parameters
    ----------
    message : str
        What is wrong.
    data : bytes
        The input that failed.
    """

    def __init__(self, message: str, data: bytes) -> None:
        self.data = bytes(data)
        self.reason = message
        shown = self.data[:_HEX_LIMIT].hex(" ")
        more = "…" if len(self.data) > _HEX_LIMIT else ""
        super().__init__(f"{message} [{len(self.data)} B: {shown}{more}]")


class TruncatedFrameError(DecodeError):
    """The input ends before a field it announces (``needed`` > ``available`` bytes)."""

    def __init__(self, message: str, data: bytes, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(f"{message}: need {needed} bytes, have {available}", data)


class UnsupportedMeasurementError(DecodeError):
    """A PMD measurement type this library does not decode (``measurement`` is the raw id)."""

    def __init__(self, data: bytes, measurement: int) -> None:
        self.measurement = measurement
        super().__init__(f"unsupported PMD measurement type {measurement}", data)


class UnsupportedFrameTypeError(DecodeError):
    """A frame type (raw or delta-compressed) not defined for the measurement."""

    def __init__(self, data: bytes, measurement: int, frame_type: int, compressed: bool) -> None:
        self.measurement = measurement
        self.frame_type = frame_type
        self.compressed = compressed
        kind = "compressed" if compressed else "raw"
        super().__init__(
            f"unsupported {kind} frame type {frame_type} for measurement {measurement}", data
        )


class InvalidFieldError(DecodeError):
    """A field holds a value that is not allowed (bad marker, op code, length, width...)."""


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One Heart Rate Measurement (0x2A37) notification.

    Attributes
    ----------
    hr_bpm : int
        Heart rate in bpm.
    sensor_contact : bool or None
        Skin contact, or None when the sensor does not support contact detection.
    energy_expended_kj : int or None
        Cumulative energy expended in kJ, if present.
    rr_raw : tuple of int
        RR intervals in 1/1024 s, oldest first (several per notification).
    """

    hr_bpm: int
    sensor_contact: bool | None = None
    energy_expended_kj: int | None = None
    rr_raw: tuple[int, ...] = ()

    @property
    def rr_s(self) -> tuple[float, ...]:
        """RR intervals in s."""
        return tuple(r / RR_UNITS_PER_S for r in self.rr_raw)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "type": "hrs",
            "hr_bpm": self.hr_bpm,
            "sensor_contact": self.sensor_contact,
            "energy_expended_kj": self.energy_expended_kj,
            "rr_s": list(self.rr_s),
        }


@dataclass(frozen=True, slots=True, eq=False)
class PmdFrame:
    """A PMD data notification, decoded.

    Attributes
    ----------
    measurement : MeasurementType
        What was measured.
    timestamp_ns : int
        Sensor time of the **last** sample, ns since 2000-01-01T00:00:00Z (as on the wire).
    frame_type : int
        Frame type number (without the compression bit).
    compressed : bool
        True if the frame was delta-compressed.
    samples : ndarray, shape (n_samples, n_channels), float64
        Values in ``unit``.
    """

    unit: ClassVar[str] = ""
    kind: ClassVar[StreamKind | None] = None
    measurement: MeasurementType
    timestamp_ns: int
    frame_type: int
    compressed: bool
    samples: npt.NDArray[np.float64] = field(repr=False)

    @property
    def unix_ns(self) -> int:
        """Time of the last sample, ns since the Unix epoch."""
        return self.timestamp_ns + PMD_EPOCH_OFFSET_NS

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return int(self.samples.shape[0])

    def sample_times_ns(
        self, previous_timestamp_ns: int | None, fs: float
    ) -> npt.NDArray[np.int64]:
        """Unix time of every sample, as the Polar SDK computes it (``PmdTimeStampUtils``).

        Samples are spread evenly between the previous frame's timestamp (exclusive) and this
        frame's (inclusive); for a first frame, or when the previous timestamp is not earlier,
        backwards from this frame's timestamp at the nominal rate.

        Parameters
        ----------
        previous_timestamp_ns : int or None
            The previous frame's ``timestamp_ns`` (sensor clock) of the same stream.
        fs : float
            Nominal sampling rate in Hz.

        Returns
        -------
        ndarray, shape (n_samples,), int64
            ns since the Unix epoch; the last equals ``unix_ns``.
        """
        n = self.n_samples
        if previous_timestamp_ns is not None and 0 < previous_timestamp_ns < self.timestamp_ns:
            step = (self.timestamp_ns - previous_timestamp_ns) / n
        else:
            step = 1e9 / fs
        offsets = np.round(step * np.arange(n - 1, -1, -1)).astype(np.int64)
        return np.int64(self.unix_ns) - offsets

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (samples as nested lists, one row per sample)."""
        return {
            "type": "pmd",
            "measurement": self.measurement.name.lower(),
            "timestamp_ns": self.timestamp_ns,
            "unix_ns": self.unix_ns,
            "frame_type": self.frame_type,
            "compressed": self.compressed,
            "unit": self.unit,
            "n_samples": self.n_samples,
            "samples": self.samples.tolist(),
        }


@dataclass(frozen=True, slots=True, eq=False)
class EcgFrame(PmdFrame):
    """ECG samples in µV, shape (n, 1)."""

    unit: ClassVar[str] = "uV"
    kind: ClassVar[StreamKind | None] = StreamKind.ECG


@dataclass(frozen=True, slots=True, eq=False)
class AccFrame(PmdFrame):
    """Acceleration in mg, shape (n, 3): x, y, z."""

    unit: ClassVar[str] = "mg"
    kind: ClassVar[StreamKind | None] = StreamKind.ACC


@dataclass(frozen=True, slots=True, eq=False)
class PpgFrame(PmdFrame):
    """PPG in raw optical counts (a.u.), shape (n, 4): three PPG channels and ambient."""

    unit: ClassVar[str] = "au"
    kind: ClassVar[StreamKind | None] = StreamKind.PPG


@dataclass(frozen=True, slots=True)
class PmdSettings:
    """Settings TLVs: every offered (or selected) value per setting type.

    Attributes
    ----------
    values : dict
        ``SettingType -> tuple`` of ints (FACTOR: floats), in wire order.
    """

    values: dict[SettingType, tuple[float, ...]] = field(default_factory=dict)

    def get(self, setting: SettingType) -> tuple[float, ...]:
        """Values of one setting (empty if absent)."""
        return self.values.get(setting, ())

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready view keyed by lower-case setting names."""
        return {k.name.lower(): list(v) for k, v in self.values.items()}


@dataclass(frozen=True, slots=True)
class ControlPointResponse:
    """A control-point response ``F0 op type status [more] [params]``.

    Attributes
    ----------
    op : ControlPointOp
        The command answered.
    measurement : int
        Measurement type id the command was about (raw, may be outside ``MeasurementType``).
    status : ResponseStatus
        Result; anything but SUCCESS is a refusal.
    more : bool
        True if further response notifications follow (params continue).
    params : bytes
        Parameters (settings TLVs for GET settings and START).
    """

    op: ControlPointOp
    measurement: int
    status: ResponseStatus
    more: bool = False
    params: bytes = b""

    @property
    def ok(self) -> bool:
        """True on SUCCESS."""
        return self.status is ResponseStatus.SUCCESS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "type": "pmd_response",
            "op": self.op.name.lower(),
            "measurement": self.measurement,
            "status": self.status.name.lower(),
            "more": self.more,
            "params": self.params.hex(),
        }


@dataclass(frozen=True, slots=True)
class MeasurementStopped:
    """The sensor stopped streams on its own (notification ``01 type...``)."""

    measurements: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"type": "pmd_stopped", "measurements": list(self.measurements)}


@dataclass(frozen=True, slots=True)
class PmdFeatures:
    """Feature read (``0F`` bitmaps): the measurement types the device offers."""

    supported: frozenset[MeasurementType]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "type": "pmd_features",
            "supported": sorted(m.name.lower() for m in self.supported),
        }


# Everything a notification or read can decode to.
Frame = HeartRateMeasurement | PmdFrame | ControlPointResponse | MeasurementStopped | PmdFeatures


def frame_dict(frame: Frame | PmdSettings) -> dict[str, Any]:
    """JSON-ready dict of any frame."""
    return frame.as_dict()


__all__ = [
    "AccFrame",
    "ControlPointOp",
    "ControlPointResponse",
    "DecodeError",
    "EcgFrame",
    "Frame",
    "HeartRateMeasurement",
    "InvalidFieldError",
    "MeasurementStopped",
    "MeasurementType",
    "PmdFeatures",
    "PmdFrame",
    "PmdSettings",
    "PpgFrame",
    "ResponseStatus",
    "TruncatedFrameError",
    "UnsupportedFrameTypeError",
    "UnsupportedMeasurementError",
    "frame_dict",
]
