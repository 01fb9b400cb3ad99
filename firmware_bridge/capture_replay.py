"""Replay a BLE capture (``.bin`` or JSONL) through the same decoders as a live device."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

from common.errors import CorruptInputError, DataNotFoundError
from common.types import SignalChunk
from firmware_bridge.capture import CaptureReader
from firmware_bridge.decode_stream import StreamAssembler
from firmware_bridge.sources import SourceStats

_LOGGER = logging.getLogger(__name__)


class CaptureReplaySource:
    """Play a capture file as a source; chunks keep the sensor's own (converted) timestamps.

    Parameters
    ----------
    path : Path
        ``.bin`` (H10 ECG container) or ``.jsonl`` (``medchain ble record``).
    speed : float or None
        1.0 = real time (paced by the sensor timestamps), None = as fast as possible.
    assembler : StreamAssembler, optional
        Decoder state (tests inject one with chosen rates).
    """

    def __init__(
        self, path: Path, *, speed: float | None = 1.0, assembler: StreamAssembler | None = None
    ) -> None:
        self.path = Path(path)
        self.speed = speed
        self.assembler = assembler or StreamAssembler()
        self.reader = CaptureReader(self.path)
        self._stats = SourceStats()

    @property
    def name(self) -> str:
        """Description for logs."""
        return f"capture:{self.path.name}"

    @property
    def stats(self) -> SourceStats:
        """Counters (frames, rejected, truncated, gaps...)."""
        s = self.assembler.counters.mirror(self._stats, self.reader.rejected)
        s.truncated = self.reader.truncated
        return s

    async def __aenter__(self) -> Self:
        if not self.path.is_file():
            raise DataNotFoundError(f"capture {self.path.name}", str(self.path.parent))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _LOGGER.info("%s: %s", self.name, self.stats.as_dict())

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """Decode every notification record in order and yield the chunks.

        Raises
        ------
        CorruptInputError
            If the file is not a capture, or not one notification in it decodes.
        """
        start_wall: float | None = None
        start_t0 = 0
        for i, record in enumerate(self.reader):
            if record.direction != "notify":
                continue
            for chunk in self.assembler.feed(record.char, record.data):
                if self.speed is not None:
                    end_ns = chunk.t0_ns + round(chunk.duration_s * 1e9)
                    if start_wall is None:
                        start_wall, start_t0 = time.monotonic(), chunk.t0_ns
                    delay = start_wall + (end_ns - start_t0) / 1e9 / self.speed - time.monotonic()
                    await asyncio.sleep(max(0.0, delay))
                elif i % 64 == 0:
                    await asyncio.sleep(0)
                self._stats.count_chunk(chunk)
                yield chunk
        if self.assembler.counters.frames == 0:
            s = self.stats
            raise CorruptInputError(
                f"{self.path.name}: no notification could be decoded "
                f"({s.rejected} rejected, {s.truncated} truncated)"
            )
