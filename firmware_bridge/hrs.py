"""Decoder of the standard Heart Rate Measurement characteristic (0x2A37).

Layout (little-endian): flags u8; heart rate u8 or u16 (flags bit0); energy expended u16 kJ
(bit3); RR intervals u16 in 1/1024 s (bit4), as many as fit. Bit1 = contact detected, bit2 =
contact detection supported.
"""

from __future__ import annotations

import struct

from firmware_bridge.frames import HeartRateMeasurement, InvalidFieldError, TruncatedFrameError

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY_EXPENDED = 0x08
FLAG_RR_PRESENT = 0x10


def decode_heart_rate(data: bytes) -> HeartRateMeasurement:
    """Decode one 0x2A37 notification.

    Parameters
    ----------
    data : bytes
        Untrusted notification value.

    Returns
    -------
    HeartRateMeasurement
        HR in bpm, contact, energy in kJ, RR intervals (1/1024 s; ``rr_s`` in s).

    Raises
    ------
    TruncatedFrameError
        If a field announced by the flags is missing.
    InvalidFieldError
        If the RR part has an odd number of bytes (a torn notification).
    """
    data = bytes(data)
    if len(data) < _U8.size:
        raise TruncatedFrameError("heart rate measurement: flags", data, 1, len(data))
    (flags,) = _U8.unpack_from(data, 0)
    offset = 1
    hr_field = _U16 if flags & FLAG_HR_UINT16 else _U8
    if len(data) < offset + hr_field.size:
        raise TruncatedFrameError(
            "heart rate measurement: heart rate", data, offset + hr_field.size, len(data)
        )
    (hr,) = hr_field.unpack_from(data, offset)
    offset += hr_field.size
    energy: int | None = None
    if flags & FLAG_ENERGY_EXPENDED:
        if len(data) < offset + _U16.size:
            raise TruncatedFrameError(
                "heart rate measurement: energy expended", data, offset + _U16.size, len(data)
            )
        (energy,) = _U16.unpack_from(data, offset)
        offset += _U16.size
    rr: tuple[int, ...] = ()
    if flags & FLAG_RR_PRESENT:
        rest = len(data) - offset
        if rest % _U16.size:
            raise InvalidFieldError(f"heart rate measurement: {rest} RR bytes is odd", data)
        rr = tuple(_U16.unpack_from(data, offset + 2 * i)[0] for i in range(rest // 2))
    contact = bool(flags & FLAG_CONTACT_DETECTED) if flags & FLAG_CONTACT_SUPPORTED else None
    return HeartRateMeasurement(int(hr), contact, energy, rr)
