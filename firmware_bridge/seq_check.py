"""Gap and duplicate detection on ``SignalChunk.seq`` (pure).

Chunks that travel over a network (MQTT replay) can be lost, repeated or re-sent after a
reconnect. Per stream kind, the checker remembers the next expected sample index: a chunk
starting later is a gap (counted, accepted), one entirely before it is a duplicate (dropped),
one overlapping it is trimmed to its new samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from common.types import SignalChunk, StreamKind

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class SeqChecker:
    """Per-kind continuity check.

    Attributes
    ----------
    gaps, missing_samples, duplicates : int
        Gaps seen and samples they skipped; chunks dropped or trimmed as repeats.
    """

    gaps: int = 0
    missing_samples: int = 0
    duplicates: int = 0
    _next: dict[StreamKind, int] = field(default_factory=dict)

    def check(self, chunk: SignalChunk) -> SignalChunk | None:
        """Return the chunk (possibly trimmed) to deliver, or None for a pure duplicate."""
        expected = self._next.get(chunk.kind)
        end = chunk.seq + chunk.n_samples
        if expected is not None:
            if end <= expected:
                self.duplicates += 1
                _LOGGER.debug("duplicate %s chunk seq %d dropped", chunk.kind, chunk.seq)
                return None
            if chunk.seq < expected:
                self.duplicates += 1
                skip = expected - chunk.seq
                chunk = replace(
                    chunk,
                    samples=chunk.samples[skip:],
                    seq=expected,
                    t0_ns=chunk.t0_ns + round(skip * 1e9 / chunk.fs),
                )
            elif chunk.seq > expected:
                self.gaps += 1
                self.missing_samples += chunk.seq - expected
                _LOGGER.warning(
                    "%s gap: %d samples missing before seq %d",
                    chunk.kind,
                    chunk.seq - expected,
                    chunk.seq,
                )
        self._next[chunk.kind] = end
        return chunk
