"""Running-median template channel: batch definition and its streaming twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.template import TemplateTracker, template_channel


def test_template_channel_is_zero_for_repeated_beats() -> None:
    # Prepare
    beats = np.tile(np.sin(np.linspace(0, 3, 10)), (5, 1))
    beats[4] += 1.0
    # Execute
    out = template_channel(beats, n_prev=3)
    # Assert
    assert np.allclose(out[:4], 0)
    assert np.allclose(out[4], 1.0)


def test_template_uses_only_the_last_n_prev_windows() -> None:
    # Prepare: 5 old windows at 100, then 3 at 0; the template of beat 8 must forget the 100s
    beats = np.vstack([np.full((5, 4), 100.0), np.zeros((3, 4)), np.ones((1, 4))])
    # Execute
    out = template_channel(beats, n_prev=3)
    # Assert
    assert np.array_equal(out[8], np.ones(4))
    assert np.array_equal(out[5], np.full(4, -100.0))


def test_template_keeps_the_input_dtype() -> None:
    # Prepare
    beats = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
    # Execute / Assert
    assert template_channel(beats).dtype == np.float32


@pytest.mark.parametrize("n_prev", [0, -2])
def test_n_prev_below_one_is_rejected(n_prev: int) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(ValueError, match="n_prev"):
        template_channel(np.zeros((3, 4)), n_prev=n_prev)
    with pytest.raises(ValueError, match="n_prev"):
        TemplateTracker(n_prev)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    n_beats=st.integers(0, 40),
    n_prev=st.integers(1, 20),
    cuts=st.lists(st.integers(0, 40), max_size=8),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_batch_for_any_chunking(
    n_beats: int, n_prev: int, cuts: list[int], seed: int
) -> None:
    # Prepare
    beats = np.random.default_rng(seed).normal(size=(n_beats, 12))
    edges = [0, *sorted(c for c in cuts if c <= n_beats), n_beats]
    tracker = TemplateTracker(n_prev)
    # Execute: in uneven pieces (empty ones too), as a stream delivers them
    pieces = [tracker.push(beats[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    streamed = np.concatenate(pieces) if pieces else np.zeros((0, 12))
    # Assert: bit-identical, not just close
    assert np.array_equal(streamed, template_channel(beats, n_prev))


def test_reset_forgets_the_stream() -> None:
    # Prepare
    beats = np.random.default_rng(2).normal(size=(10, 6))
    tracker = TemplateTracker(4)
    tracker.push(np.full((5, 6), 50.0))
    # Execute
    tracker.reset()
    got = tracker.push(beats)
    # Assert
    assert np.array_equal(got, template_channel(beats, 4))
