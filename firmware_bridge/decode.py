"""One entry point for every characteristic: ``decode_notification(uuid, bytes) -> frame``.

Characteristics are named by full 128-bit UUID, by the 16-bit short form (``2a37``) or by the
PMD short names (``5c81``/``pmd_cp``, ``5c82``/``pmd_data``).
"""

from __future__ import annotations

from common.errors import MedchainError
from firmware_bridge.frames import Frame
from firmware_bridge.gatt import (
    HEART_RATE_MEASUREMENT_UUID,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
)
from firmware_bridge.hrs import decode_heart_rate
from firmware_bridge.pmd import parse_control_point
from firmware_bridge.pmd_data import decode_pmd_data

_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
_ALIASES = {
    "hrs": HEART_RATE_MEASUREMENT_UUID,
    "hr": HEART_RATE_MEASUREMENT_UUID,
    "5c81": PMD_CONTROL_POINT_UUID,
    "fb005c81": PMD_CONTROL_POINT_UUID,
    "pmd_cp": PMD_CONTROL_POINT_UUID,
    "5c82": PMD_DATA_UUID,
    "fb005c82": PMD_DATA_UUID,
    "pmd_data": PMD_DATA_UUID,
}
DECODABLE = (HEART_RATE_MEASUREMENT_UUID, PMD_CONTROL_POINT_UUID, PMD_DATA_UUID)


class UnknownCharacteristicError(MedchainError):
    """No decoder for this characteristic UUID."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        super().__init__(
            f"no decoder for characteristic {uuid!r}; known: 2a37 (heart rate), "
            "5c81 (PMD control point), 5c82 (PMD data)"
        )


def normalize_uuid(uuid: str) -> str:
    """Full lower-case 128-bit form of a characteristic UUID or alias.

    Raises
    ------
    UnknownCharacteristicError
        If it is neither a UUID nor a known alias.
    """
    text = uuid.strip().lower()
    text = text.removeprefix("0x")
    if text in _ALIASES:
        return _ALIASES[text]
    if len(text) == 4 and all(c in "0123456789abcdef" for c in text):
        return f"0000{text}{_BASE_UUID_TAIL}"
    if len(text) == 36 and text.count("-") == 4:
        return text
    raise UnknownCharacteristicError(uuid)


def decode_notification(uuid: str, data: bytes, *, factor: float = 1.0) -> Frame:
    """Decode a notification (or read) of a known characteristic.

    Parameters
    ----------
    uuid : str
        Characteristic UUID or alias.
    data : bytes
        Untrusted value.
    factor : float
        PMD FACTOR of the stream (compressed ACC/PPG), 1.0 by default.

    Raises
    ------
    UnknownCharacteristicError
        If no decoder handles ``uuid``.
    firmware_bridge.frames.DecodeError
        (a subclass) if the bytes are malformed.
    """
    full = normalize_uuid(uuid)
    if full == HEART_RATE_MEASUREMENT_UUID:
        return decode_heart_rate(data)
    if full == PMD_DATA_UUID:
        return decode_pmd_data(data, factor=factor)
    if full == PMD_CONTROL_POINT_UUID:
        return parse_control_point(data)
    raise UnknownCharacteristicError(uuid)
