"""Policy of the BLE adapter: default stream settings, settings negotiation, reconnect rules.

Pure (no I/O): the adapter in :mod:`firmware_bridge.ble_source` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from firmware_bridge.gatt import MeasurementType, ResponseStatus, SettingType
from firmware_bridge.transport import BleError

S = SettingType
DEFAULT_SETTINGS: dict[MeasurementType, dict[SettingType, int]] = {
    MeasurementType.ECG: {S.SAMPLE_RATE: 130, S.RESOLUTION: 14},
    MeasurementType.ACC: {S.SAMPLE_RATE: 200, S.RESOLUTION: 16, S.RANGE: 8},
    MeasurementType.PPG: {S.SAMPLE_RATE: 55, S.RESOLUTION: 22, S.CHANNELS: 4},
}
STREAM_NAMES = {"ecg": MeasurementType.ECG, "acc": MeasurementType.ACC, "ppg": MeasurementType.PPG}
# Refusals worth retrying later (strap on the charger, sensor busy); others are fatal.
TRANSIENT_REFUSALS = {ResponseStatus.DEVICE_IN_CHARGER, ResponseStatus.INVALID_STATE}


class StreamRefusedError(BleError):
    """The device answered START with an error status."""

    def __init__(self, measurement: MeasurementType, status: ResponseStatus) -> None:
        self.measurement = measurement
        self.status = status
        super().__init__(f"device refused to start {measurement.name}: {status.name}")


class UnusableRateError(StreamRefusedError):
    """The device offers a stream only at a rate the edge cannot process (e.g. ECG at 50 Hz,
    where the ECG filters need more than 80 Hz): refused before START, not retried."""

    def __init__(self, measurement: MeasurementType, problem: str) -> None:
        super().__init__(measurement, ResponseStatus.INVALID_SAMPLE_RATE)
        self.args = (f"{measurement.name}: the device offers a {problem}",)


class DeviceUnavailableError(BleError):
    """Gave up after ``max_failures`` consecutive failed connection attempts."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Supervision parameters.

    Attributes
    ----------
    initial_s, factor, max_s : float
        Exponential back-off between attempts: initial delay (s), multiplier, ceiling (s).
    max_failures : int or None
        Consecutive failed attempts before giving up (None: never, the edge default).
    response_timeout_s : float
        Wait for a control-point response (s).
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    max_failures: int | None = None
    response_timeout_s: float = 5.0


def choose_settings(
    wanted: Mapping[SettingType, int], offered: Mapping[SettingType, tuple[float, ...]]
) -> dict[SettingType, int]:
    """Pick each wanted setting if the device offers it (or lists nothing), else its maximum.

    Parameters
    ----------
    wanted : mapping
        Preferred value per setting (e.g. ``DEFAULT_SETTINGS[ECG]``).
    offered : mapping
        Values the device listed in its GET settings response.
    """
    chosen: dict[SettingType, int] = {}
    for setting, value in wanted.items():
        options = [int(v) for v in offered.get(setting, ())]
        chosen[setting] = value if not options or value in options else max(options)
    return chosen
