"""Capture files of BLE notifications: read the H10 ``.bin`` container, read/write our JSONL.

``.bin`` (phdiethelm/h10_ecg): 24-byte ASCII magic ``H10 ECG v1.0 binary data``, then records
``[u32 LE length][length bytes = one raw PMD data notification]``. A record cut off at the end
of the file (recording stopped mid-write) is tolerated and counted in ``truncated``.

JSONL (ours, written by ``medchain ble record``): a header line
``{"format": "medchain-ble-capture", "version": 1, "device": {...}, "started_ns": ...}`` then
one object per GATT event ``{"t_ns": <arrival, Unix ns>, "char": <uuid>, "dir": "notify" |
"write" | "read", "hex": <value>}``. Malformed lines are logged, counted in ``rejected`` and
skipped.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from common.errors import CorruptInputError
from firmware_bridge.gatt import PMD_DATA_UUID

_LOGGER = logging.getLogger(__name__)

H10_BIN_MAGIC = b"H10 ECG v1.0 binary data"
JSONL_FORMAT = "medchain-ble-capture"
JSONL_VERSION = 1
_LEN = struct.Struct("<I")
MAX_RECORD_BYTES = 4096  # a BLE notification is at most 512 B; larger means a corrupt container
MAX_LINE_BYTES = 64 * 1024  # a JSONL event holds one notification (~1 KB of hex)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One recorded GATT event.

    Attributes
    ----------
    char : str
        Characteristic UUID (full form).
    data : bytes
        The value.
    t_ns : int or None
        Arrival time, Unix ns (None in the ``.bin`` container, which has none).
    direction : str
        ``notify``, ``write`` (client -> device) or ``read``.
    """

    char: str
    data: bytes
    t_ns: int | None = None
    direction: str = "notify"


class CaptureReader:
    """Iterate the records of a ``.bin`` or ``.jsonl`` capture, counting what it skips.

    Attributes
    ----------
    header : dict
        JSONL header (empty for ``.bin``).
    truncated, rejected : int
        Records cut off at the end of the file / malformed lines skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.header: dict[str, Any] = {}
        self.truncated = 0
        self.rejected = 0

    def __iter__(self) -> Iterator[CaptureRecord]:
        if not self.path.is_file():
            raise CorruptInputError(f"capture file {self.path} does not exist")
        with self.path.open("rb") as fh:
            head = fh.read(len(H10_BIN_MAGIC))
        if head == H10_BIN_MAGIC:
            yield from self._bin()
        elif head.lstrip()[:1] == b"{":
            yield from self._jsonl()
        else:
            raise CorruptInputError(
                f"{self.path}: neither an H10 .bin capture nor a medchain JSONL capture"
            )

    def _bin(self) -> Iterator[CaptureRecord]:
        # Read record by record: a 2-hour capture is never held in memory (the edge agent's
        # resident-memory budget on a Raspberry Pi counts every megabyte).
        with self.path.open("rb") as fh:
            offset = fh.seek(len(H10_BIN_MAGIC))
            while head := fh.read(_LEN.size):
                if len(head) < _LEN.size:
                    self._cut(offset, len(head), _LEN.size)
                    return
                (length,) = _LEN.unpack(head)
                if length > MAX_RECORD_BYTES:
                    # The length field itself is garbage: no way to find the next record.
                    self.rejected += 1
                    _LOGGER.error(
                        "%s: record length %d at byte %d is corrupt; rest of file skipped",
                        self.path,
                        length,
                        offset,
                    )
                    return
                offset += _LEN.size
                data = fh.read(length)
                if len(data) < length:
                    self._cut(offset, len(data), length)
                    return
                yield CaptureRecord(PMD_DATA_UUID, data)
                offset += length

    def _cut(self, offset: int, have: int, need: int) -> None:
        self.truncated += 1
        _LOGGER.warning(
            "%s: last record truncated at byte %d (%d of %d bytes); tolerated",
            self.path,
            offset,
            have,
            need,
        )

    def _jsonl(self) -> Iterator[CaptureRecord]:
        # Binary lines: records end with "\n" only (a stray "\r" must not split a record).
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(_lines(fh), 1):
                line = raw.decode("utf-8", errors="replace")
                if not line.strip():
                    continue
                try:
                    if len(raw) > MAX_LINE_BYTES:
                        raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
                    obj = json.loads(line)
                    if lineno == 1 and isinstance(obj, dict) and obj.get("format") == JSONL_FORMAT:
                        self.header = obj
                        continue
                    yield _record(obj)
                except (ValueError, TypeError, KeyError, RecursionError) as exc:
                    # RecursionError: JSON nested deeper than the parser's recursion limit
                    why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                    if lineno == 1:
                        raise CorruptInputError(f"{self.path}: bad capture header ({why})") from exc
                    self.rejected += 1
                    _LOGGER.warning("%s:%d: bad capture line skipped (%s)", self.path, lineno, why)


def _lines(fh: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, each cut at ``MAX_LINE_BYTES + 1`` bytes (the rest of a longer line is
    read and dropped, so a file without newlines never sits in memory whole)."""
    while line := fh.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (more := fh.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                pass
        yield line


def _record(obj: Any) -> CaptureRecord:
    if not isinstance(obj, dict):
        raise TypeError("line is not an object")
    char, value, t_ns = obj["char"], obj["hex"], obj.get("t_ns")
    direction = obj.get("dir", "notify")
    if not isinstance(char, str) or not isinstance(value, str):
        raise TypeError("char and hex must be strings")
    if t_ns is not None and (not isinstance(t_ns, int) or isinstance(t_ns, bool)):
        raise TypeError("t_ns must be an integer")
    if direction not in ("notify", "write", "read"):
        raise ValueError(f"bad dir {direction!r}")
    return CaptureRecord(char.lower(), bytes.fromhex(value), t_ns, direction)


class CaptureWriter:
    """Write a JSONL capture, one flushed line per event (a crash loses at most one line).

    Parameters
    ----------
    path : Path
        Output file (created or truncated).
    device : dict
        Device description for the header (address, name, streams, settings).
    started_ns : int
        Unix ns when recording started.
    """

    def __init__(self, path: Path, device: dict[str, Any], started_ns: int) -> None:
        self.path = Path(path)
        self._header = {
            "format": JSONL_FORMAT,
            "version": JSONL_VERSION,
            "device": device,
            "started_ns": started_ns,
        }
        self._fh: IO[str] | None = None
        self.count = 0

    def __enter__(self) -> Self:
        self._fh = self.path.open("w", encoding="utf-8")
        self._line(self._header)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, record: CaptureRecord) -> None:
        """Append one event."""
        self._line(
            {
                "t_ns": record.t_ns,
                "char": record.char,
                "dir": record.direction,
                "hex": record.data.hex(),
            }
        )
        self.count += 1

    def _line(self, obj: dict[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("CaptureWriter used outside 'with'")
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()
