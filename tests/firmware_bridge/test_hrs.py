"""Heart Rate Measurement (0x2A37) decoder on spec and captured vectors; values without skin
contact."""

from __future__ import annotations

import logging

import pytest

from firmware_bridge.decode_stream import StreamAssembler
from firmware_bridge.frames import HeartRateMeasurement, InvalidFieldError, TruncatedFrameError
from firmware_bridge.gatt import HEART_RATE_MEASUREMENT_UUID
from firmware_bridge.hrs import decode_heart_rate
from firmware_bridge.sources import SourceStats
from tests.firmware_bridge.vectors import sdk


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (sdk.HRS_SMARTGATTLIB, HeartRateMeasurement(72, True, None, (340, 748))),
        (sdk.HRS_SPEC_UINT16_EE, HeartRateMeasurement(72, None, 1000, (1024,))),
        (sdk.HRS_POLAR_H7, HeartRateMeasurement(60, True, None, (0x0411,))),
        (bytes([0x00, 0x41]), HeartRateMeasurement(65, None, None, ())),
        (bytes([0x04, 0x41]), HeartRateMeasurement(65, False, None, ())),  # contact lost
        (bytes([0x10, 0x41]), HeartRateMeasurement(65, None, None, ())),  # RR flag, no RR yet
    ],
)
def test_decode_heart_rate_vectors(data: bytes, expected: HeartRateMeasurement) -> None:
    # Execute
    frame = decode_heart_rate(data)

    # Assert: whole object
    assert frame == expected


def test_rr_in_seconds() -> None:
    # Execute
    frame = decode_heart_rate(sdk.HRS_SMARTGATTLIB)

    # Assert
    assert frame.rr_s == (0.33203125, 0.73046875)
    assert frame.as_dict() == {
        "type": "hrs",
        "hr_bpm": 72,
        "sensor_contact": True,
        "energy_expended_kj": None,
        "rr_s": [0.33203125, 0.73046875],
    }


@pytest.mark.parametrize(
    ("data", "error", "needed"),
    [
        (b"", TruncatedFrameError, 1),
        (bytes([0x01, 0x48]), TruncatedFrameError, 3),  # uint16 HR cut
        (bytes([0x08, 0x48, 0xE8]), TruncatedFrameError, 4),  # energy cut
    ],
)
def test_truncated_fields(data: bytes, error: type[Exception], needed: int) -> None:
    with pytest.raises(error) as info:
        decode_heart_rate(data)
    assert info.value.needed == needed  # type: ignore[attr-defined]
    assert info.value.data == data  # type: ignore[attr-defined]


def test_odd_rr_bytes_are_invalid() -> None:
    with pytest.raises(InvalidFieldError, match="odd"):
        decode_heart_rate(bytes([0x10, 0x48, 0x54, 0x01, 0xEC]))


def test_values_sent_without_skin_contact_raise_no_alarm(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a chest strap that reports contact (flags bit2 supported, bit1 detected), loses
    # it for two values (a loose strap sends a stale or zero rate) and gets it back; the rate
    # of a strap without contact detection is always used. Before, every value became a chunk
    # and fed the brady/tachy alarms.
    on, off, unsupported = bytes([0b110, 70]), bytes([0b100, 35]), bytes([0b000, 72])
    assembler = StreamAssembler(clock_ns=lambda: 0)
    # Execute
    with caplog.at_level(logging.INFO):
        out = [
            assembler.feed(HEART_RATE_MEASUREMENT_UUID, f) for f in (on, off, off, on, unsupported)
        ]
    # Assert: the two values without contact dropped, counted, logged once; their seconds a gap
    assert [[c.samples[0, 0] for c in chunks] for chunks in out] == [[70.0], [], [], [70.0], [72.0]]
    assert [chunks[0].seq for chunks in out if chunks] == [0, 3, 4]
    assert assembler.counters.no_contact == 2
    assert assembler.counters.mirror(SourceStats()).no_contact == 2
    assert caplog.text.count("skin contact lost") == caplog.text.count("skin contact back") == 1
