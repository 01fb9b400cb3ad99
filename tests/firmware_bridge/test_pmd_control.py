"""PMD control point: command encoding, responses, feature bitmaps, settings TLVs."""

from __future__ import annotations

import pytest

from firmware_bridge.frames import (
    ControlPointResponse,
    InvalidFieldError,
    MeasurementStopped,
    PmdFeatures,
    TruncatedFrameError,
)
from firmware_bridge.gatt import ControlPointOp, MeasurementType, ResponseStatus, SettingType
from firmware_bridge.pmd import (
    encode_command,
    encode_get_settings,
    encode_settings,
    encode_start,
    encode_stop,
    join_responses,
    parse_control_point,
    parse_features,
    parse_settings,
)
from tests.firmware_bridge.vectors import sdk

S = SettingType


def test_encode_start_matches_published_commands() -> None:
    # Execute / Assert
    assert encode_start(MeasurementType.ECG, {S.SAMPLE_RATE: 130, S.RESOLUTION: 14}) == (
        sdk.PMD_CMD_START_ECG_H10
    )
    assert (
        encode_start(MeasurementType.ACC, {S.SAMPLE_RATE: 200, S.RESOLUTION: 16, S.RANGE: 2})
        == sdk.PMD_CMD_START_ACC_200
    )
    assert (
        encode_start(MeasurementType.PPG, {S.SAMPLE_RATE: 176, S.CHANNELS: 4, S.RESOLUTION: 22})
        == sdk.PMD_CMD_START_PPG_VERITY
    )
    assert encode_stop(MeasurementType.ECG) == sdk.PMD_CMD_STOP_ECG
    assert encode_get_settings(MeasurementType.ACC) == bytes([1, 2])
    assert encode_command(ControlPointOp.REQUEST_MEASUREMENT_START, MeasurementType.SDK_MODE) == (
        bytes([2, 9])
    )
    assert encode_command(ControlPointOp.GET_MEASUREMENT_STATUS) == bytes([5])


def test_encode_settings_skips_factor_and_checks_range() -> None:
    assert encode_settings({S.FACTOR: 1, S.CHANNELS: 3}) == bytes([4, 1, 3])
    with pytest.raises(ValueError, match="does not fit"):
        encode_settings({S.CHANNELS: 256})


def test_parse_settings_sdk_vector() -> None:
    # Execute
    settings = parse_settings(sdk.PMD_SETTINGS_PARAMS)

    # Assert
    assert settings.values == {
        S.SAMPLE_RATE: (52,),
        S.RESOLUTION: (16,),
        S.RANGE: (245, 500, 1000, 2000),
        S.CHANNELS: (3,),
    }
    assert settings.as_dict()["range"] == [245, 500, 1000, 2000]


def test_parse_settings_factor_float_and_trivial_params() -> None:
    # Prepare: FACTOR 2.44e-4 as float32 LE
    import struct

    params = bytes([5, 1]) + struct.pack("<f", 2.44e-4)

    # Execute / Assert
    assert parse_settings(params).get(S.FACTOR) == pytest.approx((2.44e-4,), rel=1e-6)
    assert parse_settings(b"\x00").values == {}  # H10 START response params
    assert parse_settings(b"").values == {}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (bytes([0, 2, 0x82, 0x00, 0x04]), TruncatedFrameError),
        (bytes([0, 1, 0x82, 0x00, 1]), TruncatedFrameError),  # TLV head cut
        (bytes([9, 1, 0]), InvalidFieldError),  # unknown setting type
    ],
)
def test_parse_settings_rejects(params: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_settings(params)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            sdk.PMD_CP_GET_ACC_OK,
            ControlPointResponse(
                ControlPointOp.GET_MEASUREMENT_SETTINGS,
                2,
                ResponseStatus.SUCCESS,
                False,
                b"\xff\xff\xff",
            ),
        ),
        (
            sdk.PMD_CP_FAILURE_7,
            ControlPointResponse(
                ControlPointOp.GET_MEASUREMENT_SETTINGS, 6, ResponseStatus.INVALID_RESOLUTION
            ),
        ),
        (
            bytes.fromhex("f0 02 00 00 00 00"),  # ecg2_demo.txt: start ECG, success
            ControlPointResponse(
                ControlPointOp.REQUEST_MEASUREMENT_START, 0, ResponseStatus.SUCCESS, False, b"\x00"
            ),
        ),
        (
            bytes.fromhex("f0 03 00 00 00"),  # ecg2_demo.txt: stop ECG, success
            ControlPointResponse(ControlPointOp.STOP_MEASUREMENT, 0, ResponseStatus.SUCCESS),
        ),
        (
            bytes.fromhex("f0 02 00 06"),  # already streaming, no `more` byte
            ControlPointResponse(
                ControlPointOp.REQUEST_MEASUREMENT_START, 0, ResponseStatus.ALREADY_IN_STATE
            ),
        ),
        (bytes.fromhex("01 00 02"), MeasurementStopped((0, 2))),
    ],
)
def test_parse_control_point_vectors(data: bytes, expected: object) -> None:
    assert parse_control_point(data) == expected


def test_response_params_are_settings() -> None:
    # Execute
    response = parse_control_point(sdk.PMD_CP_GET_ECG_H10)

    # Assert
    assert isinstance(response, ControlPointResponse) and response.ok
    assert parse_settings(response.params).values == {S.SAMPLE_RATE: (130,), S.RESOLUTION: (14,)}


def test_every_status_code_is_named() -> None:
    # Execute
    names = [
        parse_control_point(bytes([0xF0, 2, 0, code, 0])).status.name  # type: ignore[union-attr]
        for code in range(15)
    ]

    # Assert
    assert names == [
        "SUCCESS",
        "INVALID_OP_CODE",
        "INVALID_MEASUREMENT_TYPE",
        "NOT_SUPPORTED",
        "INVALID_LENGTH",
        "INVALID_PARAMETER",
        "ALREADY_IN_STATE",
        "INVALID_RESOLUTION",
        "INVALID_SAMPLE_RATE",
        "INVALID_RANGE",
        "INVALID_MTU",
        "INVALID_NUMBER_OF_CHANNELS",
        "INVALID_STATE",
        "DEVICE_IN_CHARGER",
        "DISK_FULL",
    ]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedFrameError),
        (bytes.fromhex("f0 02 00"), TruncatedFrameError),
        (bytes.fromhex("f0 0c 00 00"), InvalidFieldError),  # op 12 unknown
        (bytes.fromhex("f0 02 00 0f"), InvalidFieldError),  # status 15 unknown
        (bytes.fromhex("aa 02 00 00"), InvalidFieldError),
    ],
)
def test_parse_control_point_rejects(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_control_point(data)


def test_join_multi_part_response() -> None:
    # Prepare
    first = parse_control_point(bytes.fromhex("f0 01 02 00 01 00 01 34 00"))
    last = parse_control_point(bytes.fromhex("f0 01 02 00 00 01 01 10 00"))
    assert isinstance(first, ControlPointResponse) and isinstance(last, ControlPointResponse)

    # Execute
    joined = join_responses([first, last])

    # Assert
    assert first.more and not last.more
    assert parse_settings(joined.params).values == {S.SAMPLE_RATE: (52,), S.RESOLUTION: (16,)}


def test_features_bitmaps() -> None:
    # Prepare: H10 = ECG + ACC (+ PPI? no: 0x05); Verity = PPG ACC PPI GYRO MAG + SDK mode
    h10 = bytes([0x0F, 0x05, 0x00])
    verity = bytes([0x0F, 0x6E, 0x02])

    # Execute / Assert
    assert parse_features(h10) == PmdFeatures(frozenset({MeasurementType.ECG, MeasurementType.ACC}))
    assert parse_control_point(verity) == PmdFeatures(
        frozenset(
            {
                MeasurementType.PPG,
                MeasurementType.ACC,
                MeasurementType.PPI,
                MeasurementType.GYRO,
                MeasurementType.MAGNETOMETER,
                MeasurementType.SDK_MODE,
            }
        )
    )
    assert parse_features(bytes([0x0F, 0x01])).supported == {MeasurementType.ECG}
    with pytest.raises(TruncatedFrameError):
        parse_features(b"\x0f")
    with pytest.raises(InvalidFieldError):
        parse_features(b"\x0e\x01\x00")
