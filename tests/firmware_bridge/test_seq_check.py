"""Continuity check on chunk seq: gaps counted, repeats dropped, overlaps trimmed."""

from __future__ import annotations

import numpy as np
import pytest

from common.types import SignalChunk, StreamKind
from firmware_bridge.seq_check import SeqChecker


def _chunk(seq: int, n: int = 10, kind: StreamKind = StreamKind.ECG) -> SignalChunk:
    return SignalChunk(
        kind, 100.0, seq * 10_000_000, np.arange(seq, seq + n, dtype=float)[:, None], seq
    )


@pytest.mark.parametrize(
    ("seqs", "delivered", "gaps", "missing", "duplicates"),
    [
        ([0, 10, 20], [(0, 10), (10, 10), (20, 10)], 0, 0, 0),
        ([0, 30], [(0, 10), (30, 10)], 1, 20, 0),
        ([0, 10, 10], [(0, 10), (10, 10)], 0, 0, 1),
        ([0, 10, 0], [(0, 10), (10, 10)], 0, 0, 1),
        ([0, 5], [(0, 10), (10, 5)], 0, 0, 1),  # overlap trimmed to the 5 new samples
    ],
)
def test_seq_checker(
    seqs: list[int], delivered: list[tuple[int, int]], gaps: int, missing: int, duplicates: int
) -> None:
    # Prepare
    checker = SeqChecker()

    # Execute
    out = [c for c in (checker.check(_chunk(s)) for s in seqs) if c is not None]

    # Assert
    assert [(c.seq, c.n_samples) for c in out] == delivered
    assert (checker.gaps, checker.missing_samples, checker.duplicates) == (
        gaps,
        missing,
        duplicates,
    )
    for c in out:  # values follow the sample index, so trimming kept the right samples
        assert c.samples[0, 0] == c.seq and c.t0_ns == c.seq * 10_000_000


def test_kinds_are_independent() -> None:
    # Prepare
    checker = SeqChecker()

    # Execute
    a = checker.check(_chunk(0))
    b = checker.check(_chunk(0, kind=StreamKind.ACC))

    # Assert
    assert a is not None and b is not None and checker.duplicates == 0
