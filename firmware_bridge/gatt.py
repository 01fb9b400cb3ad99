"""GATT identifiers and wire constants of the Heart Rate Service and Polar Measurement Data.

Pure constants only (no I/O). Sources: Bluetooth SIG Heart Rate Service 1.0; Polar BLE SDK
(``polarofficial/polar-ble-sdk``, ``…/gatt/client/pmd/``), see docs/firmware_bridge.md.
"""

from __future__ import annotations

from enum import IntEnum

# --- Bluetooth SIG Heart Rate Service ---------------------------------------------------------
HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
RR_UNITS_PER_S = 1024  # RR intervals are sent in 1/1024 s

# --- Polar Measurement Data (PMD) -------------------------------------------------------------
PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_POINT_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

# PMD timestamps count ns from 2000-01-01T00:00:00Z; add this to get Unix ns.
PMD_EPOCH_OFFSET_NS = 946_684_800_000_000_000
PMD_FEATURES_MARKER = 0x0F  # first byte of a control-point *read* (feature bitmaps)
PMD_RESPONSE_MARKER = 0xF0  # first byte of a control-point response notification
PMD_COMPRESSED_BIT = 0x80  # in the frame-type byte of a data frame
PMD_MEASUREMENT_MASK = 0x3F  # measurement type bits of byte 0 of a data frame


class MeasurementType(IntEnum):
    """PMD measurement type ids (``PmdMeasurementType.kt``)."""

    ECG = 0
    PPG = 1
    ACC = 2
    PPI = 3
    GYRO = 5
    MAGNETOMETER = 6
    SKIN_TEMP = 7
    SDK_MODE = 9
    LOCATION = 10
    PRESSURE = 11
    TEMPERATURE = 12
    OFFLINE_RECORDING = 13
    OFFLINE_HR = 14


# Feature read: (byte index after the 0x0F marker, bit) for each measurement type.
FEATURE_BITS: dict[MeasurementType, tuple[int, int]] = {
    MeasurementType.ECG: (0, 0),
    MeasurementType.PPG: (0, 1),
    MeasurementType.ACC: (0, 2),
    MeasurementType.PPI: (0, 3),
    MeasurementType.GYRO: (0, 5),
    MeasurementType.MAGNETOMETER: (0, 6),
    MeasurementType.SKIN_TEMP: (0, 7),
    MeasurementType.SDK_MODE: (1, 1),
    MeasurementType.LOCATION: (1, 2),
    MeasurementType.PRESSURE: (1, 3),
    MeasurementType.TEMPERATURE: (1, 4),
    MeasurementType.OFFLINE_RECORDING: (1, 5),
    MeasurementType.OFFLINE_HR: (1, 6),
}


class ControlPointOp(IntEnum):
    """Control-point op codes (``PmdControlPointCommand.kt``)."""

    NULL_ITEM = 0
    GET_MEASUREMENT_SETTINGS = 1
    REQUEST_MEASUREMENT_START = 2
    STOP_MEASUREMENT = 3
    GET_SDK_MODE_MEASUREMENT_SETTINGS = 4
    GET_MEASUREMENT_STATUS = 5
    GET_SDK_MODE_STATUS = 6
    GET_OFFLINE_RECORDING_TRIGGER_STATUS = 7
    SET_OFFLINE_RECORDING_TRIGGER_MODE = 8
    SET_OFFLINE_RECORDING_TRIGGER_SETTINGS = 9


# A notification starting with this byte (not 0xF0) lists streams the sensor stopped itself.
ONLINE_MEASUREMENT_STOPPED = 0x01


class ResponseStatus(IntEnum):
    """Control-point response status codes (``PmdControlPointResponse.kt``)."""

    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13
    DISK_FULL = 14


class SettingType(IntEnum):
    """Settings TLV types (``PmdSetting.kt``)."""

    SAMPLE_RATE = 0  # Hz
    RESOLUTION = 1  # bits
    RANGE = 2  # g (ACC), deg/s (gyro)
    RANGE_MILLIUNIT = 3
    CHANNELS = 4
    FACTOR = 5  # float32, returned by START; multiply ACC/PPG raw values by it
    SECURITY = 6


# Bytes per value of each setting (SECURITY carries a 16-byte key, never parsed here).
SETTING_FIELD_SIZE: dict[SettingType, int] = {
    SettingType.SAMPLE_RATE: 2,
    SettingType.RESOLUTION: 2,
    SettingType.RANGE: 2,
    SettingType.RANGE_MILLIUNIT: 4,
    SettingType.CHANNELS: 1,
    SettingType.FACTOR: 4,
    SettingType.SECURITY: 16,
}

# Polar H10 defaults (documentation/products/PolarH10.md).
H10_ECG_FS_HZ = 130
H10_ECG_RESOLUTION_BITS = 14
H10_ACC_FS_HZ = (25, 50, 100, 200)
H10_ACC_RANGE_G = (2, 4, 8)
