"""Live source from a BLE wearable: Polar PMD streams (ECG/ACC/PPG) and/or Heart Rate Service.

Talks to the device only through a :class:`~firmware_bridge.transport.Transport` (bleak in
production, :class:`~firmware_bridge.fake_transport.FakeTransport` in tests). Notification
callbacks only enqueue; a pump task decodes. A supervisor task owns the link: connect, enable
notifications on both PMD characteristics, start streams (settings negotiated with the device
unless given), wait, and on a drop reconnect with exponential back-off. Streams are always
stopped before a disconnect: an H10 left streaming keeps running until its battery is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self

from common.errors import ConfigError
from common.types import SignalChunk
from firmware_bridge.ble_control import PmdControlPoint
from firmware_bridge.ble_policy import (
    STREAM_NAMES,
    TRANSIENT_REFUSALS,
    DeviceUnavailableError,
    ReconnectPolicy,
    StreamRefusedError,
)
from firmware_bridge.capture import CaptureRecord
from firmware_bridge.decode_stream import StreamAssembler
from firmware_bridge.frames import ControlPointResponse, DecodeError, MeasurementStopped
from firmware_bridge.gatt import (
    HEART_RATE_MEASUREMENT_UUID,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    MeasurementType,
    ResponseStatus,
    SettingType,
)
from firmware_bridge.pmd import parse_control_point, parse_features
from firmware_bridge.sources import SourceStats
from firmware_bridge.transport import (
    BleError,
    BluetoothUnavailableError,
    Transport,
    TransportFactory,
)

_LOGGER = logging.getLogger(__name__)

_END = object()


class BleSource:
    """Stream chunks from a BLE wearable (see module docstring).

    Parameters
    ----------
    target : str
        Device address (``AA:BB:…`` or a CoreBluetooth UUID) or (part of) its name.
    streams : sequence of str
        Any of ``ecg``, ``acc``, ``ppg`` (PMD) and ``hr`` (Heart Rate Service).
    settings : dict, optional
        PMD settings per measurement; missing ones are negotiated (GET settings: the default
        if offered, else the highest offered value).
    transport_factory : callable, optional
        Makes one :class:`Transport` per attempt; default bleak (``BleakTransport(target)``).
    policy : ReconnectPolicy
        Back-off and give-up rules.
    recorder : callable, optional
        Receives every raw GATT event (``medchain ble record``).
    clock_ns : callable
        Host clock (Unix ns) for arrival times.
    time_base : str
        Chunk timing, see :class:`~firmware_bridge.decode_stream.StreamAssembler` (``auto``).
    """

    def __init__(
        self,
        target: str,
        *,
        streams: tuple[str, ...] = ("ecg",),
        settings: Mapping[MeasurementType, Mapping[SettingType, int]] | None = None,
        transport_factory: TransportFactory | None = None,
        policy: ReconnectPolicy | None = None,
        recorder: Callable[[CaptureRecord], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        time_base: str = "auto",
    ) -> None:
        unknown = set(streams) - {*STREAM_NAMES, "hr"}
        if unknown or not streams:
            raise ConfigError(f"unknown BLE streams {sorted(unknown)}: use ecg, acc, ppg, hr")
        self.target = target
        self.measurements = [STREAM_NAMES[s] for s in streams if s in STREAM_NAMES]
        self.heart_rate = "hr" in streams
        self._factory = transport_factory or _bleak_factory(target)
        self.policy = policy or ReconnectPolicy()
        self._recorder = recorder
        self._clock_ns = clock_ns
        # Live data: keep the sensor's sample spacing but anchor it to the host clock when the
        # sensor clock is unset (an H10 restarts at 2019-01-01 after ~1 min off the strap).
        self.assembler = StreamAssembler(clock_ns=clock_ns, time_base=time_base)
        self.control = PmdControlPoint(
            self.assembler,
            self.name,
            settings=settings,
            response_timeout_s=self.policy.response_timeout_s,
            on_write=self._record_write,
            clock_ns=clock_ns,
        )
        self.features: frozenset[MeasurementType] | None = None
        self.backoffs: list[float] = []  # delays waited before reconnect attempts, s
        self.streaming = asyncio.Event()
        self._stats = SourceStats()
        self._raw: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
        self._out: asyncio.Queue[object] = asyncio.Queue()
        self._closing = asyncio.Event()
        self._link_down = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_options(cls, target: str, opts: Mapping[str, Any]) -> BleSource:
        """Build from ``open_source`` options (``streams``, ``transport``, ``max_failures``).

        ``ble:fake?capture=PATH[&speed=1]`` plays a capture file through a simulated device
        (the whole BLE path without hardware, for demos).
        """
        transport = opts.get("transport")
        if target == "fake" and transport is None:
            from firmware_bridge.fake_transport import FakeDevice, FakeTransport
            from firmware_bridge.sources import parse_speed

            if not opts.get("capture"):
                raise ConfigError("ble:fake needs ?capture=PATH (a .bin or .jsonl capture)")
            speed = parse_speed(opts.get("speed", 1.0))
            transport = FakeTransport.factory(FakeDevice.from_capture(opts["capture"], speed))
        streams = opts.get("streams", "ecg")
        if isinstance(streams, str):
            streams = tuple(s.strip().lower() for s in streams.split(",") if s.strip())
        max_failures = opts.get("max_failures")
        policy = ReconnectPolicy(
            max_failures=None if max_failures in (None, "") else int(max_failures)
        )
        return cls(target, streams=tuple(streams), transport_factory=transport, policy=policy)

    @property
    def name(self) -> str:
        """Description for logs."""
        kinds = [m.name.lower() for m in self.measurements] + (["hr"] if self.heart_rate else [])
        return f"ble:{self.target} {','.join(kinds)}"

    @property
    def active_settings(self) -> dict[MeasurementType, dict[SettingType, int]]:
        """PMD settings of each started stream."""
        return self.control.active_settings

    @property
    def factors(self) -> dict[MeasurementType, float]:
        """FACTOR (sample scale) the device reported for each started stream."""
        return self.control.factors

    @property
    def stats(self) -> SourceStats:
        """Counters, including decoder rejects, gaps and reconnects."""
        return self.assembler.counters.mirror(self._stats)

    # --- context ------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._closing.clear()
        self._tasks = [
            asyncio.create_task(self._pump(), name="ble-pump"),
            asyncio.create_task(self._supervise(), name="ble-supervisor"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        pump, supervisor = self._tasks
        await supervisor  # stops streams and disconnects
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        _LOGGER.info("%s closed: %s", self.name, self.stats.as_dict())

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """Yield chunks until the source is closed; raises if the device became unusable."""
        while True:
            item = await self._out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, SignalChunk)
            self._stats.count_chunk(item)
            yield item

    # --- notification path: callback enqueues, pump decodes ------------------------------------
    def _on_notify(self, char: str, data: bytes) -> None:
        self._raw.put_nowait((char, bytes(data), self._clock_ns()))

    async def _pump(self) -> None:
        while True:
            char, data, t_ns = await self._raw.get()
            try:
                self._handle(char, data, t_ns)
            except Exception as exc:  # e.g. the recorder's disk is full: end the stream loudly
                _LOGGER.error("%s: cannot process notifications: %r", self.name, exc)
                self._out.put_nowait(exc)
                self._closing.set()
                # Keep pumping without the recorder so the STOP handshake still completes.
                self._recorder = None

    def _handle(self, char: str, data: bytes, t_ns: int) -> None:
        self._dispatch(char, data)
        if self._recorder is not None:
            self._recorder(CaptureRecord(char, data, t_ns))

    def _dispatch(self, char: str, data: bytes) -> None:
        if char == PMD_CONTROL_POINT_UUID:
            try:
                value = parse_control_point(data)
                if isinstance(value, ControlPointResponse):
                    self.control.on_response(value)
            except Exception as exc:  # one bad notification, never the stream
                self.assembler.counters.rejected += 1
                shown = "" if isinstance(exc, DecodeError) else f" [{bytes(data[:64]).hex(' ')}]"
                _LOGGER.warning("bad control-point notification: %s%s", exc, shown)
                return
            if isinstance(value, MeasurementStopped):
                _LOGGER.warning("device stopped streams %s by itself", value.measurements)
                self._link_down.set()  # restart the session
            return
        for chunk in self.assembler.feed(char, data):  # never raises on bad bytes
            self._out.put_nowait(chunk)

    def _record_write(self, command: bytes, t_ns: int) -> None:
        if self._recorder is not None:
            try:  # a failing recorder must never keep a STOP from being written
                self._recorder(CaptureRecord(PMD_CONTROL_POINT_UUID, command, t_ns, "write"))
            except Exception as exc:
                _LOGGER.error("recording a control-point write failed: %r", exc)

    # --- supervision -------------------------------------------------------------------------------
    async def _session(self, transport: Transport, started: list[MeasurementType]) -> None:
        self._link_down.clear()
        self.control.clear_responses()
        await transport.connect(self._link_down.set)
        _LOGGER.info("connected to %s", transport.description)
        if self.measurements:
            await transport.start_notify(PMD_CONTROL_POINT_UUID, self._on_notify)
            await transport.start_notify(PMD_DATA_UUID, self._on_notify)
            try:
                self.features = parse_features(
                    await transport.read(PMD_CONTROL_POINT_UUID)
                ).supported
            except DecodeError as exc:
                _LOGGER.warning("feature read not understood: %s", exc)
        if self.heart_rate:
            await transport.start_notify(HEART_RATE_MEASUREMENT_UUID, self._on_notify)
        for m in self.measurements:
            if self.features is not None and m not in self.features:
                raise StreamRefusedError(m, ResponseStatus.NOT_SUPPORTED)
            started.append(m)  # before START: a lost response must still lead to a STOP
            await self.control.start_stream(transport, m)
        self.streaming.set()
        closing = asyncio.create_task(self._closing.wait())
        down = asyncio.create_task(self._link_down.wait())
        await asyncio.wait([closing, down], return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        down.cancel()

    async def _teardown(self, transport: Transport, started: list[MeasurementType]) -> None:
        self.streaming.clear()
        if not transport.is_connected:
            return
        for m in started:  # always STOP before disconnecting (H10 known issue 2)
            try:
                await self.control.stop_stream(transport, m)
            except (BleError, OSError, TimeoutError) as exc:
                _LOGGER.warning("stop %s failed: %s", m.name, exc)
        try:
            await transport.disconnect()
        except (BleError, OSError) as exc:
            _LOGGER.warning("disconnect failed: %s", exc)

    async def _supervise(self) -> None:
        policy = self.policy
        delay, failures, sessions = policy.initial_s, 0, 0
        try:
            while not self._closing.is_set():
                transport = self._factory()
                started: list[MeasurementType] = []
                try:
                    await self._session(transport, started)
                    sessions += 1
                    if sessions > 1:
                        self._stats.reconnects += 1
                    delay, failures = policy.initial_s, 0
                except BluetoothUnavailableError as exc:
                    if sessions == 0:  # never worked on this host: say so instead of looping
                        self._out.put_nowait(exc)
                        return
                    failures += 1
                    _LOGGER.warning("%s: %s; retrying", self.name, exc)
                except StreamRefusedError as exc:
                    if exc.status not in TRANSIENT_REFUSALS:
                        self._out.put_nowait(exc)
                        return
                    failures += 1
                    _LOGGER.warning("%s; retrying", exc)
                except Exception as exc:  # bleak raises its own types; any failure -> back-off
                    failures += 1
                    _LOGGER.warning(
                        "%s: attempt failed (%d in a row): %r", self.name, failures, exc
                    )
                finally:
                    await self._teardown(transport, started)
                if self._closing.is_set():
                    return
                if policy.max_failures is not None and failures >= policy.max_failures:
                    self._out.put_nowait(
                        DeviceUnavailableError(
                            f"{self.target}: {failures} failed attempts, giving up"
                        )
                    )
                    return
                self.assembler.reset_timing()
                _LOGGER.info("%s: reconnecting in %.2f s", self.name, delay)
                self.backoffs.append(delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * policy.factor, policy.max_s)
        finally:
            # Drain what arrived before the end so no decoded sample is lost.
            try:
                while not self._raw.empty():
                    self._handle(*self._raw.get_nowait())
            except Exception as exc:
                _LOGGER.error("%s: notifications left unprocessed: %r", self.name, exc)
            self._out.put_nowait(_END)


def _bleak_factory(target: str) -> TransportFactory:
    def make() -> Transport:
        from firmware_bridge.ble import BleakTransport

        transport: Transport = BleakTransport(target)
        return transport

    return make


__all__ = [
    "BleSource",
    "DeviceUnavailableError",
    "ReconnectPolicy",
    "StreamRefusedError",
]
