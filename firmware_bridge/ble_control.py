"""The PMD control-point conversation of :class:`~firmware_bridge.ble_source.BleSource`.

:class:`PmdControlPoint` writes commands to the PMD control point through a
:class:`~firmware_bridge.transport.Transport` and pairs them with the responses the
notification path hands it (``on_response``): one command at a time, multi-part answers joined,
settings negotiated (GET settings, then the default if offered, else the highest offer), and the
sample rate and FACTOR of a started stream configured on the assembler in notification order.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping

from common.types import StreamKind, rate_problem
from firmware_bridge.ble_policy import (
    DEFAULT_SETTINGS,
    StreamRefusedError,
    UnusableRateError,
    choose_settings,
)
from firmware_bridge.decode_stream import DEFAULT_FS, StreamAssembler
from firmware_bridge.frames import ControlPointResponse, DecodeError
from firmware_bridge.gatt import (
    PMD_CONTROL_POINT_UUID,
    ControlPointOp,
    MeasurementType,
    ResponseStatus,
    SettingType,
)
from firmware_bridge.pmd import (
    encode_get_settings,
    encode_start,
    encode_stop,
    join_responses,
    parse_settings,
)
from firmware_bridge.transport import Transport

_LOGGER = logging.getLogger(__name__)
# streams whose rate the edge bounds (common.types.RATE_RANGES)
_KINDS = {
    MeasurementType.ECG: StreamKind.ECG,
    MeasurementType.PPG: StreamKind.PPG,
    MeasurementType.ACC: StreamKind.ACC,
}


class PmdControlPoint:
    """Commands and responses on the PMD control point of one source.

    Parameters
    ----------
    assembler : StreamAssembler
        Configured with each started stream's sample rate (Hz) and FACTOR.
    name : str
        Source description for logs.
    settings : mapping, optional
        PMD settings per measurement; missing ones are negotiated with the device.
    response_timeout_s : float
        Wait for each control-point response (s).
    on_write : callable
        ``(command, t_ns)`` told about every command written (the capture recorder).
    clock_ns : callable
        Host clock (Unix ns) of the writes.
    """

    def __init__(
        self,
        assembler: StreamAssembler,
        name: str,
        *,
        settings: Mapping[MeasurementType, Mapping[SettingType, int]] | None,
        response_timeout_s: float,
        on_write: Callable[[bytes, int], None],
        clock_ns: Callable[[], int],
    ) -> None:
        self.assembler = assembler
        self.name = name
        self.response_timeout_s = response_timeout_s
        self.active_settings: dict[MeasurementType, dict[SettingType, int]] = {}
        self.factors: dict[MeasurementType, float] = {}
        self._settings = {m: dict(v) for m, v in (settings or {}).items()}
        self._pending: dict[MeasurementType, dict[SettingType, int]] = {}
        self._on_write = on_write
        self._clock_ns = clock_ns
        self._responses: asyncio.Queue[ControlPointResponse] = asyncio.Queue()
        self._lock = asyncio.Lock()

    def on_response(self, response: ControlPointResponse) -> None:
        """Take one decoded control-point response from the notification path."""
        self._apply_start(response)
        self._responses.put_nowait(response)

    def clear_responses(self) -> None:
        """Drop responses left over from an earlier session."""
        while not self._responses.empty():
            self._responses.get_nowait()

    def _apply_start(self, response: ControlPointResponse) -> None:
        # Configure rate and FACTOR here, in notification order: data frames may follow the
        # START response immediately, before the requesting coroutine resumes.
        if response.op is not ControlPointOp.REQUEST_MEASUREMENT_START or not response.ok:
            return
        try:
            m = MeasurementType(response.measurement)
            factors = parse_settings(response.params).get(SettingType.FACTOR)
        except (ValueError, DecodeError) as exc:
            _LOGGER.warning("START response not understood: %s", exc)
            return
        # A corrupt FACTOR (0, negative, NaN, inf) falls back to 1.0 rather than poisoning samples.
        factor = float(factors[0]) if factors and 0 < factors[0] < math.inf else 1.0
        rate = self._pending.get(m, {}).get(SettingType.SAMPLE_RATE, 0)
        fs = float(rate or DEFAULT_FS.get(m, 1.0))
        self.assembler.configure(m, fs, factor)
        self.factors[m] = factor

    async def request(self, transport: Transport, command: bytes) -> ControlPointResponse:
        """Write one command and wait for its (joined) response.

        Raises
        ------
        TimeoutError
            No response within ``response_timeout_s``.
        """
        async with self._lock:
            self.clear_responses()
            t_ns = self._clock_ns()
            await transport.write(PMD_CONTROL_POINT_UUID, command)
            self._on_write(command, t_ns)
            parts: list[ControlPointResponse] = []
            while True:
                response = await asyncio.wait_for(self._responses.get(), self.response_timeout_s)
                if response.op != command[0]:
                    _LOGGER.debug("ignoring response to op %s", response.op.name)
                    continue
                parts.append(response)
                if not response.more:
                    return parts[0] if len(parts) == 1 else join_responses(parts)

    async def _negotiate(self, transport: Transport, m: MeasurementType) -> dict[SettingType, int]:
        if m in self._settings:
            return self._settings[m]
        response = await self.request(transport, encode_get_settings(m))
        offered = parse_settings(response.params).values if response.ok else {}
        return choose_settings(DEFAULT_SETTINGS[m], offered)

    async def start_stream(self, transport: Transport, m: MeasurementType) -> None:
        """Negotiate settings and START one measurement (restarting one left streaming).

        Raises
        ------
        StreamRefusedError
            The device answered START with an error status, or (``UnusableRateError``) offers
            the stream only at a rate the edge cannot process.
        """
        settings = await self._negotiate(transport, m)
        kind, rate = _KINDS.get(m), settings.get(SettingType.SAMPLE_RATE)
        if kind is not None and rate and (problem := rate_problem(kind, float(rate))):
            raise UnusableRateError(m, problem)  # the edge would fail on its first chunk
        self._pending[m] = settings
        response = await self.request(transport, encode_start(m, settings))
        if response.status is ResponseStatus.ALREADY_IN_STATE:
            # Left streaming by an earlier session: restart it so our settings apply.
            await self.request(transport, encode_stop(m))
            response = await self.request(transport, encode_start(m, settings))
        if not response.ok:
            raise StreamRefusedError(m, response.status)
        self.active_settings[m] = settings
        _LOGGER.info(
            "%s: %s started %s factor %g", self.name, m.name, settings, self.factors.get(m, 1.0)
        )

    async def stop_stream(self, transport: Transport, m: MeasurementType) -> None:
        """STOP one measurement (always before a disconnect: H10 known issue 2)."""
        await self.request(transport, encode_stop(m))
