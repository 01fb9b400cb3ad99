"""Polar Measurement Data control point: command encoder, response / feature / settings parsers.

Commands are ``[op, measurement type, settings TLVs...]``; a settings TLV is
``[setting type, count, count × value (little-endian, size per type)]``. Responses arrive as
notifications ``F0 op type status [more] [params]``; a control-point *read* returns the feature
bitmaps ``0F b1 b2``; ``01 type...`` reports streams the sensor stopped by itself.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from firmware_bridge.frames import (
    ControlPointResponse,
    InvalidFieldError,
    MeasurementStopped,
    PmdFeatures,
    PmdSettings,
    TruncatedFrameError,
)
from firmware_bridge.gatt import (
    FEATURE_BITS,
    ONLINE_MEASUREMENT_STOPPED,
    PMD_FEATURES_MARKER,
    PMD_RESPONSE_MARKER,
    SETTING_FIELD_SIZE,
    ControlPointOp,
    MeasurementType,
    ResponseStatus,
    SettingType,
)

_RESPONSE_HEAD = struct.Struct("<BBBB")  # marker, op, measurement type, status
_TLV_HEAD = struct.Struct("<BB")  # setting type, count
_FLOAT = struct.Struct("<f")


def encode_command(
    op: ControlPointOp, measurement: MeasurementType | int | None = None, params: bytes = b""
) -> bytes:
    """Encode a control-point write ``[op, measurement, params...]``.

    Parameters
    ----------
    op : ControlPointOp
        The command.
    measurement : MeasurementType or int, optional
        The measurement type it is about (omitted for commands without one).
    params : bytes
        Encoded settings TLVs (see :func:`encode_settings`).
    """
    head = bytes([int(op)]) if measurement is None else bytes([int(op), int(measurement)])
    return head + params


def encode_settings(settings: Mapping[SettingType, int]) -> bytes:
    """Encode selected settings as TLVs ``[type, 1, value LE]`` in the given order.

    ``FACTOR`` is read-only (the sensor returns it in the START response) and is skipped, as
    the Polar SDK does.

    Raises
    ------
    ValueError
        If a value does not fit its field (caller error, not untrusted input).
    """
    out = bytearray()
    for setting, value in settings.items():
        setting = SettingType(setting)
        if setting is SettingType.FACTOR:
            continue
        size = SETTING_FIELD_SIZE[setting]
        if not 0 <= int(value) < 256**size:
            raise ValueError(f"{setting.name} value {value} does not fit {size} bytes")
        out += bytes([int(setting), 1]) + int(value).to_bytes(size, "little")
    return bytes(out)


def encode_get_settings(measurement: MeasurementType) -> bytes:
    """``01 type``: ask which settings a measurement offers."""
    return encode_command(ControlPointOp.GET_MEASUREMENT_SETTINGS, measurement)


def encode_start(measurement: MeasurementType, settings: Mapping[SettingType, int]) -> bytes:
    """``02 type TLVs``: start a stream, e.g. H10 ECG ``02 00 00 01 82 00 01 01 0E 00``."""
    return encode_command(
        ControlPointOp.REQUEST_MEASUREMENT_START, measurement, encode_settings(settings)
    )


def encode_stop(measurement: MeasurementType) -> bytes:
    """``03 type``: stop a stream (always before disconnecting an H10)."""
    return encode_command(ControlPointOp.STOP_MEASUREMENT, measurement)


def parse_settings(params: bytes) -> PmdSettings:
    """Parse settings TLVs (GET settings response parameters or a START response).

    Parameters of at most one byte mean "no settings" (the START response of an H10 carries a
    single ``00``), as in the Polar SDK.

    Raises
    ------
    InvalidFieldError
        On an unknown setting type.
    TruncatedFrameError
        If a TLV announces more values than the bytes hold.
    """
    params = bytes(params)
    values: dict[SettingType, tuple[float, ...]] = {}
    if len(params) <= 1:
        return PmdSettings(values)
    offset = 0
    while offset < len(params):
        if offset + _TLV_HEAD.size > len(params):
            raise TruncatedFrameError("settings TLV header", params, offset + 2, len(params))
        code, count = _TLV_HEAD.unpack_from(params, offset)
        offset += _TLV_HEAD.size
        try:
            setting = SettingType(code)
        except ValueError:
            raise InvalidFieldError(
                f"unknown setting type {code} at byte {offset - 2}", params
            ) from None
        size = SETTING_FIELD_SIZE[setting]
        end = offset + size * count
        if end > len(params):
            raise TruncatedFrameError(f"{setting.name} values", params, end, len(params))
        items: list[float] = []
        for i in range(count):
            pos = offset + i * size
            if setting is SettingType.FACTOR:
                items.append(_FLOAT.unpack_from(params, pos)[0])
            else:
                items.append(int.from_bytes(params[pos : pos + size], "little"))
        values[setting] = values.get(setting, ()) + tuple(items)
        offset = end
    return PmdSettings(values)


def parse_features(data: bytes) -> PmdFeatures:
    """Parse a control-point read ``0F b1 [b2]`` into the supported measurement types.

    Raises
    ------
    TruncatedFrameError, InvalidFieldError
        If shorter than 2 bytes or not starting with ``0F``.
    """
    data = bytes(data)
    if len(data) < 2:
        raise TruncatedFrameError("PMD feature read", data, 2, len(data))
    if data[0] != PMD_FEATURES_MARKER:
        raise InvalidFieldError(f"feature read starts with {data[0]:#04x}, not 0x0f", data)
    bitmaps = data[1:3].ljust(2, b"\x00")  # some firmwares send only the first bitmap
    supported = frozenset(m for m, (i, bit) in FEATURE_BITS.items() if bitmaps[i] >> bit & 1)
    return PmdFeatures(supported)


def parse_control_point(data: bytes) -> ControlPointResponse | MeasurementStopped | PmdFeatures:
    """Parse any control-point value: a response, a stop report or a feature read.

    Raises
    ------
    TruncatedFrameError
        If shorter than its fixed head.
    InvalidFieldError
        On an unknown marker, op code or status.
    """
    data = bytes(data)
    if not data:
        raise TruncatedFrameError("control point", data, 1, 0)
    marker = data[0]
    if marker == PMD_FEATURES_MARKER:
        return parse_features(data)
    if marker == ONLINE_MEASUREMENT_STOPPED:
        return MeasurementStopped(tuple(data[1:]))
    if marker != PMD_RESPONSE_MARKER:
        raise InvalidFieldError(f"unknown control-point marker {marker:#04x}", data)
    if len(data) < _RESPONSE_HEAD.size:
        raise TruncatedFrameError("control-point response", data, _RESPONSE_HEAD.size, len(data))
    _, op_code, measurement, status_code = _RESPONSE_HEAD.unpack_from(data)
    try:
        op = ControlPointOp(op_code)
    except ValueError:
        raise InvalidFieldError(f"unknown control-point op code {op_code}", data) from None
    try:
        status = ResponseStatus(status_code)
    except ValueError:
        raise InvalidFieldError(f"unknown control-point status {status_code}", data) from None
    if status is not ResponseStatus.SUCCESS:
        return ControlPointResponse(op, measurement, status)
    more = len(data) > 4 and data[4] != 0
    return ControlPointResponse(op, measurement, status, more, data[5:])


def join_responses(parts: list[ControlPointResponse]) -> ControlPointResponse:
    """Join a response split over notifications (``more`` set on all but the last).

    The parameters concatenate in order, as the Polar SDK does.
    """
    if not parts:
        raise ValueError("no response parts")
    first = parts[0]
    params = b"".join(p.params for p in parts)
    return ControlPointResponse(first.op, first.measurement, parts[-1].status, False, params)
