"""A scripted device behind the :class:`~firmware_bridge.transport.Transport` seam.

It answers PMD control-point commands like an H10 / Verity Sense (GET settings, START with an
optional FACTOR, STOP) and, while a stream is started, plays recorded data notifications for it
at a given pace. It can fail connection attempts, drop the link after a number of frames, and
logs every call so tests can check the protocol (e.g. STOP written before disconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.gatt import (
    HEART_RATE_MEASUREMENT_UUID,
    ONLINE_MEASUREMENT_STOPPED,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_RESPONSE_MARKER,
    ControlPointOp,
    MeasurementType,
    ResponseStatus,
)
from firmware_bridge.transport import LinkLostError, NotifyCallback

_LOGGER = logging.getLogger(__name__)


@dataclass
class FakeDevice:
    """State shared by every connection to the fake device (it survives reconnects).

    Attributes
    ----------
    frames : dict
        Recorded PMD data notifications per measurement, played in order (cycled).
    hr_notifications : list of bytes
        Heart Rate Measurement notifications played while HR notifications are enabled.
    features : bytes
        Value returned by a control-point read.
    settings : dict
        GET settings response parameters per measurement.
    start_params : dict
        START response parameters per measurement (e.g. a FACTOR TLV).
    refuse : dict
        Status to answer START of a measurement with (e.g. NOT_SUPPORTED).
    fail_connects : int
        Number of connection attempts that fail before one succeeds.
    drop_after : list of int
        For each successive connection, drop the link after this many data notifications.
    self_stop_after : int or None
        In the first connection, the device stops the stream by itself after this many data
        notifications and reports it (``01 type``), as a sensor taken off the body does.
    interval_s : float
        Pause between data notifications.
    loop : bool
        Replay the frames again when they run out (else the stream goes quiet).
    calls : list of tuple
        Log of every transport call: ``("connect",)``, ``("write", hex)``, ``("disconnect",)``...
    """

    frames: dict[MeasurementType, Sequence[bytes]] = field(default_factory=dict)
    hr_notifications: Sequence[bytes] = ()
    features: bytes = bytes([0x0F, 0x05, 0x00])
    settings: dict[MeasurementType, bytes] = field(default_factory=dict)
    start_params: dict[MeasurementType, bytes] = field(default_factory=dict)
    refuse: dict[MeasurementType, ResponseStatus] = field(default_factory=dict)
    fail_connects: int = 0
    drop_after: list[int] = field(default_factory=list)
    self_stop_after: int | None = None
    interval_s: float = 0.0
    loop: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    streaming: set[MeasurementType] = field(default_factory=set)
    positions: dict[MeasurementType, int] = field(default_factory=dict)
    connections: int = 0

    @classmethod
    def from_capture(cls, path: str | Path, speed: float | None = 1.0) -> FakeDevice:
        """A device that streams the PMD data frames of a capture file (.bin / .jsonl).

        ``speed`` paces the notifications (1.0 = the sensor's own rate, None = at once).
        """
        return _device_from_capture(Path(path), speed)


def _device_from_capture(path: Path, speed: float | None) -> FakeDevice:
    from firmware_bridge.capture import CaptureReader
    from firmware_bridge.decode_stream import DEFAULT_FS
    from firmware_bridge.frames import DecodeError
    from firmware_bridge.pmd_data import decode_pmd_data

    frames: dict[MeasurementType, list[bytes]] = {}
    interval = 0.0
    for record in CaptureReader(path):
        if record.char != PMD_DATA_UUID or record.direction != "notify":
            continue
        try:
            frame = decode_pmd_data(record.data)
        except DecodeError:
            continue
        frames.setdefault(frame.measurement, []).append(record.data)
        if not interval:
            interval = frame.n_samples / DEFAULT_FS.get(frame.measurement, 130.0)
    return FakeDevice(
        frames={m: tuple(f) for m, f in frames.items()},
        interval_s=interval / speed if speed else 0.0,
    )


class FakeTransport:
    """One connection to a :class:`FakeDevice`; build one per attempt with ``device.factory``."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self._connected = False
        self._callbacks: dict[str, NotifyCallback] = {}
        self._on_disconnect: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sent = 0
        self._drop_at: int | None = None

    @property
    def is_connected(self) -> bool:
        """True while connected."""
        return self._connected

    @property
    def description(self) -> str:
        """Fixed fake identity."""
        return "FA:KE:00:00:00:10 Polar H10 FAKE"

    async def connect(self, on_disconnect: Callable[[], None]) -> None:
        """Connect, or fail while ``fail_connects`` remains."""
        dev = self.device
        dev.calls.append(("connect",))
        if dev.fail_connects > 0:
            dev.fail_connects -= 1
            raise LinkLostError("fake: connection attempt failed")
        drops = dev.drop_after
        self._drop_at = drops[dev.connections] if dev.connections < len(drops) else None
        dev.connections += 1
        self._connected = True
        self._on_disconnect = on_disconnect

    async def disconnect(self) -> None:
        """Close; like a real H10, streams keep running unless STOP was written."""
        self.device.calls.append(("disconnect",))
        self._shutdown()

    def _shutdown(self) -> None:
        self._connected = False
        self._callbacks.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    def _require(self) -> None:
        if not self._connected:
            raise LinkLostError("fake: not connected")

    async def start_notify(self, char: str, callback: NotifyCallback) -> None:
        """Register a notification callback."""
        self._require()
        self.device.calls.append(("start_notify", char))
        self._callbacks[char] = callback
        if char == HEART_RATE_MEASUREMENT_UUID and self.device.hr_notifications:
            self._tasks.append(asyncio.create_task(self._play_hr()))

    async def stop_notify(self, char: str) -> None:
        """Unregister a callback."""
        self._require()
        self.device.calls.append(("stop_notify", char))
        self._callbacks.pop(char, None)

    async def read(self, char: str) -> bytes:
        """Control-point read returns the feature bitmaps."""
        self._require()
        self.device.calls.append(("read", char))
        if char == PMD_CONTROL_POINT_UUID:
            return self.device.features
        raise LinkLostError(f"fake: cannot read {char}")

    async def write(self, char: str, data: bytes) -> None:
        """Handle a control-point command and answer with a notification."""
        self._require()
        self.device.calls.append(("write", char, data.hex()))
        if char != PMD_CONTROL_POINT_UUID or len(data) < 2:
            return
        op, code = data[0], data[1]
        status, params = ResponseStatus.SUCCESS, b""
        try:
            measurement = MeasurementType(code)
        except ValueError:
            status, measurement = ResponseStatus.INVALID_MEASUREMENT_TYPE, MeasurementType.ECG
        dev = self.device
        if status is ResponseStatus.SUCCESS:
            if op == ControlPointOp.GET_MEASUREMENT_SETTINGS:
                params = b"\x00" + dev.settings.get(measurement, b"")
            elif op == ControlPointOp.REQUEST_MEASUREMENT_START:
                if measurement in dev.refuse:
                    status = dev.refuse[measurement]
                elif measurement in dev.streaming:
                    status = ResponseStatus.ALREADY_IN_STATE
                else:
                    params = b"\x00" + dev.start_params.get(measurement, b"")
                    dev.streaming.add(measurement)
                    self._tasks.append(asyncio.create_task(self._play(measurement)))
            elif op == ControlPointOp.STOP_MEASUREMENT:
                dev.streaming.discard(measurement)
            else:
                status = ResponseStatus.INVALID_OP_CODE
        self._notify(
            PMD_CONTROL_POINT_UUID, bytes([PMD_RESPONSE_MARKER, op, code, status]) + params
        )

    def _notify(self, char: str, data: bytes) -> None:
        callback = self._callbacks.get(char)
        if callback is not None and self._connected:
            callback(char, data)

    async def _play(self, measurement: MeasurementType) -> None:
        frames = self.device.frames.get(measurement, ())
        while frames and self._connected and measurement in self.device.streaming:
            await asyncio.sleep(self.device.interval_s)
            if not (self._connected and measurement in self.device.streaming):
                return
            pos = self.device.positions.get(measurement, 0)
            if pos >= len(frames) and not self.device.loop:
                return
            self.device.positions[measurement] = pos + 1
            self._notify(PMD_DATA_UUID, frames[pos % len(frames)])
            self._sent += 1
            if self.device.self_stop_after == self._sent and self.device.connections == 1:
                self.device.calls.append(("self_stop",))
                self.device.streaming.discard(measurement)
                self._notify(
                    PMD_CONTROL_POINT_UUID, bytes([ONLINE_MEASUREMENT_STOPPED, measurement])
                )
                return
            if self._drop_at is not None and self._sent >= self._drop_at:
                self._drop()
                return

    async def _play_hr(self) -> None:
        for data in self.device.hr_notifications:
            await asyncio.sleep(self.device.interval_s)
            if not self._connected:
                return
            self._notify(HEART_RATE_MEASUREMENT_UUID, data)

    def _drop(self) -> None:
        _LOGGER.info("fake: link dropped after %d notifications", self._sent)
        self.device.calls.append(("dropped",))
        callback = self._on_disconnect
        self._connected = False
        self._callbacks.clear()
        # A dropped link ends the device's streams too (the H10 stops when the central is gone
        # only after a timeout; the fake models the common case of an immediate stop).
        self.device.streaming.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if callback is not None:
            callback()

    @staticmethod
    def factory(device: FakeDevice) -> Callable[[], FakeTransport]:
        """A transport factory (one fresh transport per connection attempt)."""
        return lambda: FakeTransport(device)
